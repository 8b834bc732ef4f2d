"""The hooks a zoo plugin can implement.

A plugin is a module (built-in, or from an entry point in group ``zoo``) with functions
decorated by ``zoo.hookimpl``. Hooks are called once per plugin, each call guarded: a
plugin that raises is reported by ``zoo plugins`` and the others keep working.
Plugins must not import heavy libraries (torch, timm, onnxruntime) at module level or in
these hooks: do it inside ``Source.build`` so that ``zoo --help`` and cache hits stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def zoo_register_sources(register: Callable[[Any], None]) -> None:
    """Register model sources: call ``register(source)`` once per source.

    A source is any object with the ``zoo.Source`` interface: a unique ``name``
    (the prefix in ``name:model``), ``models(pattern)``, ``resolve(name)`` and
    ``build(spec, recipe)``. Registering a name another plugin already took is an error
    reported against this plugin.
    """
