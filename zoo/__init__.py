"""zoo: a plugin-based model zoo for ONNX.

    import zoo
    result = zoo.pull("resnet18", weights="none")
    print(result.entry.model_path, result.cached)

Importing zoo is cheap: torch, onnx and onnxruntime load only when a model is built,
exported or run.
"""

from __future__ import annotations

from .hookspecs import hookimpl
from .source import Source
from .spec import BuiltModel, ModelSpec, Preprocessing

__version__ = "0.1.0"

# No submodule may share one of these names: importing a submodule sets it on the package.
_API = {"pull", "export", "find", "entries", "remove", "verify", "gc", "available", "plugins",
        "resolve_name", "info", "locate", "run", "bench", "evaluate", "push", "PullResult", "Selection",
        "remote_list", "remote_push", "remote_verify", "remote_gc", "check_plugin"}


def __getattr__(name: str):
    # The library API pulls in the store and plugin host; load it on first use.
    if name in _API:
        from . import api

        return getattr(api, name)
    if name == "Store":
        from .store import Store

        return Store
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


__all__ = ["BuiltModel", "ModelSpec", "Preprocessing", "Source", "hookimpl", "Store",
           *sorted(_API)]
