"""zoo: a plugin-based model zoo for ONNX.

    import zoo
    result = zoo.pull("resnet18", weights="none")
    print(result.entry.model_path, result.cached)

Importing zoo is cheap: torch, onnx and onnxruntime load only when a model is built,
exported or run. It imports nothing at all until a name is used, so that the ``zoo`` command
installs its Ctrl-C handling (``zoo.launch``) before any import a Ctrl-C could break.
"""

from __future__ import annotations

__version__ = "0.1.0"

# No submodule may share one of these names: importing a submodule sets it on the package.
_API = {"pull", "export", "find", "entries", "remove", "verify", "gc", "available", "plugins",
        "resolve_name", "info", "locate", "run", "bench", "evaluate", "push", "PullResult", "Selection",
        "remote_list", "remote_push", "remote_verify", "remote_gc", "check_plugin"}


# What plugins import from zoo, and the module each comes from.
_PLUGIN_API = {"hookimpl": "hookspecs", "Source": "source", "BuiltModel": "spec", "ModelSpec": "spec",
               "Preprocessing": "spec", "Store": "store"}


def __getattr__(name: str):
    # Everything loads on first use: the library API pulls in the store and plugin host.
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _PLUGIN_API:
        import importlib

        value = getattr(importlib.import_module(f".{_PLUGIN_API[name]}", __name__), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


__all__ = ["BuiltModel", "ModelSpec", "Preprocessing", "Source", "hookimpl", "Store",
           *sorted(_API)]
