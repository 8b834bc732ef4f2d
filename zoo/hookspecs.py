"""The hooks a zoo plugin can implement.

A plugin is a module (built-in, or from an entry point in group ``zoo``) with functions
decorated by ``zoo.hookimpl``. Hooks are called once per plugin, each call guarded: a
plugin that raises is reported by ``zoo plugins`` and the others keep working.
Plugins import what they need from ``zoo.plugin``, and must not import heavy libraries
(torch, timm, onnxruntime) at module level or in these hooks: do it inside ``Source.build``
so that ``zoo --help`` and cache hits stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def zoo_register_sources(register: Callable[[Any], None]) -> None:
    """Register model sources: call ``register(source)`` once per source.

    A source is a ``zoo.plugin.Source`` (or any object with its interface): a unique
    ``name`` (the prefix in ``name:model``), ``models(pattern)``, ``resolve(name)`` and
    ``build(spec, recipe)`` or ``fetch(...)``. Registering a name another plugin already took
    is an error reported against this plugin.
    """


@hookspec
def zoo_post_export(path: Path, metadata: dict[str, Any], spec: Any, recipe: Any) -> None:
    """Transform an exported model in place, after the export passed the checker and parity.

    ``path`` is the new ``model.onnx`` (in a temporary directory; rewrite it in place, e.g.
    with an ONNX optimizer), ``metadata`` the entry's ``zoo.json`` so far (add your own
    findings under a key named after your plugin), ``spec`` the ``ModelSpec`` and ``recipe``
    the ``Recipe``. Implement only the arguments you need. Afterwards the host checks the
    file again and compares its outputs with PyTorch (float32 recipes; float16 files get
    the checker only). Transforms run on new exports only: not on ready files from
    ``Source.fetch``, and entries already in the store stay as they are until pulled again
    with ``--force``. Import heavy libraries (onnx...) inside the function.

    A transform that raises or breaks the model is undone whole (file and ``metadata``),
    with a one-line warning naming the plugin; ``metadata["post_export"]`` records what
    each plugin did.
    """


@hookspec
def zoo_register_commands(register: Callable[..., None]) -> None:
    """Add commands to the ``zoo`` CLI: call ``register(function, name=None)`` per command.

    ``function`` is a Typer command (parameters annotated with ``typer.Argument`` /
    ``typer.Option``); ``name`` defaults to the function's name with ``_`` as ``-``.
    A name a built-in or another plugin's command already has is an error reported against
    this plugin. Keep the function light at import; it runs only when its command does.
    Every command should take ``--json`` and then print exactly one JSON document.
    """
