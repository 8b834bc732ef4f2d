"""What ``zoo.json`` holds, and the same data inside the ONNX file's ``metadata_props``.

The ONNX file carries everything but the file hashes (it cannot hash itself), so
``zoo run some/file.onnx`` works outside the store.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = 1
METADATA_KEY = "zoo.metadata"
TOOLCHAIN = ("torch", "torchvision", "timm", "onnx", "onnxscript", "onnxruntime",
             "onnxruntime-gpu", "numpy")


def toolchain() -> dict[str, str | None]:
    """Versions of the libraries that made the file (read from metadata, not imported)."""
    from . import __version__

    versions: dict[str, str | None] = {"python": platform.python_version(), "zoo": __version__}
    for dist in TOOLCHAIN:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_props(path: Path, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` (without ``files``) in the ONNX file's ``metadata_props``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    carried = {k: v for k, v in metadata.items() if k != "files"}
    props = {p.key: p.value for p in model.metadata_props}
    props[METADATA_KEY] = json.dumps(carried, sort_keys=True)
    if metadata.get("labels"):
        props["zoo.labels"] = json.dumps(metadata["labels"])
    props["zoo.ref"] = metadata.get("ref", "")
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "zoo"
    model.producer_version = metadata.get("toolchain", {}).get("zoo") or ""
    # External data (if any) stays where it is: only the graph file is rewritten.
    onnx.save(model, str(path))


def read_props(path: Path) -> dict[str, Any]:
    """The zoo metadata carried by an ONNX file, or ``{}`` for a foreign file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        return {}
    return json.loads(props[METADATA_KEY])
