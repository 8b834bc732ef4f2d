"""The record inside an ONNX file's ``metadata_props``, and the facts zoo records about a build.

The ONNX file carries the portable part of the record (``Record.portable``: no file
hashes, times or local paths), so ``zoo run some/file.onnx`` works outside the store and
the same spec, recipe and toolchain give the same bytes.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from .files import MiB, check_regular
from .record import SCHEMA, Record, RecordError

__all__ = ["SCHEMA", "METADATA_KEY", "toolchain", "now", "write_props", "read_props"]

METADATA_KEY = "zoo.metadata"
MAX_PROP_CHARS = 64 * MiB  # what zoo parses of one property (its labels included)
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


def write_props(path: Path, record: Record) -> None:
    """Store ``record.portable()`` in the ONNX file's ``metadata_props``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    carried = record.portable()
    props = {p.key: p.value for p in model.metadata_props}
    props[METADATA_KEY] = json.dumps(carried, sort_keys=True)
    if record.labels:
        props["zoo.labels"] = json.dumps(record.labels)
    props["zoo.ref"] = carried["ref"]
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "zoo"
    model.producer_version = record.toolchain.get("zoo") or ""
    # External data (if any) stays where it is: only the graph file is rewritten.
    onnx.save(model, str(path))


def read_props(path: Path) -> Record | None:
    """The record an ONNX file carries, or ``None`` for a file without one.

    ``RecordError`` for a carried record that fails its check (the caller decides whose
    problem that is); ``FileRefused`` for anything but a regular file.
    """
    import onnx

    check_regular(path)  # onnx.load of a FIFO would block forever
    model = onnx.load(str(path), load_external_data=False)
    text = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
    if text is None:
        return None
    if len(text) > MAX_PROP_CHARS:
        raise RecordError(f"{path.name}: {METADATA_KEY}: {len(text)} characters, more than zoo reads")
    return Record.loads(text, f"{path.name} ({METADATA_KEY})")
