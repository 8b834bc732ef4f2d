"""The record inside an ONNX file's ``metadata_props``, and the facts zoo records about a build.

The ONNX file carries the portable part of the record (``Record.portable``: no file
hashes, times or local paths), so ``zoo run some/file.onnx`` works outside the store and
the same spec, recipe and toolchain give the same bytes.
"""

from __future__ import annotations

import importlib.metadata
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import MiB, check_regular
from .record import ONNX_METADATA_KEY, SCHEMA, Record, RecordError

if TYPE_CHECKING:
    from .host import PluginHost
    from .resolve import Resolved

__all__ = ["SCHEMA", "METADATA_KEY", "toolchain", "now", "write_props", "read_props", "model_props", "new_record"]

METADATA_KEY = ONNX_METADATA_KEY
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
    """Store ``record.for_onnx()`` (its portable part) in the ONNX file's ``metadata_props``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    props.update(record.for_onnx())
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "zoo"
    model.producer_version = record.toolchain.get("zoo") or ""
    # External data (if any) stays where it is: only the graph file is rewritten.
    onnx.save(model, str(path))


def read_props(path: Path) -> Record | None:
    """The record an ONNX file carries, or ``None`` for a file without one.

    Reads only the file's top-level protobuf fields, skipping the graph unparsed: no onnx
    import, and a property larger than ``MAX_PROP_CHARS`` is refused before it is read.
    ``RecordError`` for a carried record that fails its check; ``FileRefused`` for anything
    but a regular file; ``ValueError`` for a file that is not an ONNX model.
    """
    check_regular(path)  # opening a FIFO would block forever
    text = model_props(path, METADATA_KEY).get(METADATA_KEY)
    return None if text is None else Record.loads(text, f"{path.name} ({METADATA_KEY})")


# ModelProto's field numbers (onnx.proto): the graph, and the repeated metadata_props.
_GRAPH, _METADATA_PROPS = 7, 14


def model_props(path: Path, *wanted: str) -> dict[str, str]:
    """The ``metadata_props`` named ``wanted`` of the ONNX model at ``path``, read from its
    protobuf wire format without parsing the rest."""
    found: dict[str, str] = {}
    seen_graph = False
    size = path.stat().st_size
    with open(path, "rb") as handle:
        while handle.tell() < size:
            field, kind = _divmod_tag(_varint(handle))
            if kind == 0:
                _varint(handle)
            elif kind in (1, 5):
                handle.seek(8 if kind == 1 else 4, 1)
            elif kind == 2:
                length = _varint(handle)
                if handle.tell() + length > size:
                    raise ValueError("truncated (a field runs past the end of the file)")
                if field == _METADATA_PROPS:
                    if length > MAX_PROP_CHARS:
                        raise RecordError(f"{path.name}: a metadata property of {length} bytes, more than zoo reads")
                    key, value = _entry(handle.read(length))
                    if key in wanted:
                        found[key] = value
                else:
                    seen_graph |= field == _GRAPH
                    handle.seek(length, 1)
            else:
                raise ValueError(f"not a protobuf message (wire type {kind})")
    if not seen_graph:
        raise ValueError("not an ONNX model (no graph)")
    return found


def _divmod_tag(tag: int) -> tuple[int, int]:
    return tag >> 3, tag & 7


def _varint(handle: Any) -> int:
    value = shift = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise ValueError("truncated (the file ends inside a number)")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("not a protobuf message (a number longer than 10 bytes)")


def _entry(data: bytes) -> tuple[str, str]:
    """A ``StringStringEntryProto`` (1: key, 2: value)."""
    import io

    handle, parts = io.BytesIO(data), {1: b"", 2: b""}
    while handle.tell() < len(data):
        field, kind = _divmod_tag(_varint(handle))
        if kind != 2:
            raise ValueError("not an ONNX metadata property")
        length = _varint(handle)
        parts[field] = handle.read(length)
    try:
        return parts[1].decode("utf-8"), parts[2].decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("a metadata property that is not UTF-8") from None


def new_record(resolved: Resolved, host: PluginHost, source_version: str | None,
               described: dict[str, Any]) -> Record:
    """The record of a new entry: what zoo knows of ``resolved``, plus what the source ``described``.

    It goes through the same check as a record read from disk, so a source that describes
    its model out of bounds (a resize of a million pixels, a label list of the wrong kind)
    is refused here, naming the field, before anything is stored.
    """
    from .errors import PluginError

    spec = resolved.spec
    plugin = host.source_plugin(spec.source)
    data = {
        "schema": SCHEMA,
        "name": resolved.name,
        "alias": resolved.alias.alias if resolved.alias else None,
        "ref": spec.ref,
        "key": resolved.key,
        "source": {"name": spec.source, "plugin": plugin.name, "distribution": plugin.distribution,
                   "version": source_version or plugin.version},
        "options": dict(spec.options),
        "recipe": resolved.recipe.to_dict(),
        **described,
        "toolchain": toolchain(),
        "created": now(),
    }
    try:
        return Record.from_json(data, "record")
    except RecordError as exc:
        raise PluginError(f"source {spec.source} (plugin {plugin.name}) described the model wrongly: {exc}") from None
