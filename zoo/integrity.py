"""Checks on files zoo did not write itself, made before anything loads them.

ONNX external data: an initializer may say its bytes live in another file
(``location``). ONNX Runtime and ``onnx.load`` open that path relative to the model's
folder without asking, so a hostile ``model.onnx`` could read ``/etc/shadow`` or
``../../secret`` into a tensor. ``check_external_data`` refuses absolute locations, ``..``
components, drive paths, and symlinks that leave the model's folder.

Weights pinning: a registry alias may pin ``weights_sha256``; ``check_weights_file``
compares a weights file with it before the file is opened for loading.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .errors import IntegrityError, one_line

# The key of an external-data entry, stored verbatim in the protobuf bytes.
_LOCATION_KEY = b"location"
SHA256 = re.compile(r"[0-9a-f]{64}")
PIN_OPTION = "weights_sha256"


def external_data_problems(model_path: str | Path) -> list[str]:
    """Why the external-data references of an ONNX file are unsafe (empty when safe)."""
    path = Path(model_path)
    if not _mentions_location(path):
        return []  # no tensor can reference external data: skip parsing the graph
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        return [f"{path.name}: not a readable ONNX file ({one_line(exc)})"]
    folder = path.parent.resolve()
    problems = []
    for tensor in model_tensors(model):
        location = external_location(tensor)
        if location is None:
            continue
        reason = unsafe_location(location, folder)
        if reason:
            problems.append(f"{path.name}: tensor {tensor.name!r} external data {location!r} {reason}")
    return problems


def model_tensors(model: Any) -> Iterator[Any]:
    """Every tensor of an ONNX model that may keep its bytes in external data: initializers,
    sparse initializers (values and indices), tensor attributes of nodes (``Constant``...),
    in the main graph, every subgraph (``If``, ``Loop``, ``Scan``) and every local function.

    The one walker zoo uses wherever external data is checked (onnx's own is private and
    skipped sparse tensors). Iterative, so no nesting depth can exhaust the stack.
    """
    pending: list[Any] = [model.graph]  # graphs and functions still to walk
    while pending:
        owner = pending.pop()
        nodes = owner.node
        if hasattr(owner, "initializer"):  # a GraphProto
            yield from owner.initializer
            for sparse in owner.sparse_initializer:
                yield from (sparse.values, sparse.indices)
        else:  # a FunctionProto: its default attribute values
            yield from _attribute_tensors(owner.attribute_proto, pending)
        for node in nodes:
            yield from _attribute_tensors(node.attribute, pending)
        if owner is model.graph:
            pending.extend(model.functions)


def _attribute_tensors(attributes: Any, pending: list[Any]) -> Iterator[Any]:
    for attribute in attributes:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        for sparse in ([attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []):
            yield from (sparse.values, sparse.indices)
        for sparse in attribute.sparse_tensors:
            yield from (sparse.values, sparse.indices)
        if attribute.HasField("g"):
            pending.append(attribute.g)
        pending.extend(attribute.graphs)


def external_location(tensor: Any) -> str | None:
    """The ``location`` a tensor's bytes are read from, or None when they are inside the model."""
    if tensor.data_location != 1:  # TensorProto.EXTERNAL
        return None
    return next((entry.value for entry in tensor.external_data if entry.key == "location"), "")


def check_external_data(model_path: str | Path) -> None:
    """Raise ``IntegrityError`` when the ONNX file references data outside its folder."""
    problems = external_data_problems(model_path)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IntegrityError(f"refusing {model_path}: {problems[0]}{more}; "
                             "external data must be a plain file next to the model")


def unsafe_location(location: str, folder: Path) -> str | None:
    """Why ``location`` must not be opened from ``folder``, or None when it is safe."""
    if not location:
        return "is empty"
    if "\x00" in location:
        return "contains a NUL character"
    posix, windows = PurePosixPath(location), PureWindowsPath(location)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or location.startswith(("/", "\\")):
        return "is an absolute path"
    if ".." in posix.parts or ".." in windows.parts:
        return "contains '..'"
    target = folder / location
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return "cannot be resolved"
    if resolved != folder and folder not in resolved.parents:
        return "is a symlink leaving the model's folder"
    return None


def check_weights_file(path: str | Path, expected: str | None, what: str = "weights file") -> None:
    """Compare a weights file with its pinned sha256 before anything loads it."""
    if not expected:
        return
    from .recipe import file_sha256

    actual = file_sha256(path)
    if actual != expected.lower():
        raise IntegrityError(
            f"{what} {path} has sha256 {actual}, but the registry pins {expected}; "
            "refusing to load it (delete the file to download it again, or fix the pin)"
        )


def pinned_sha256(spec: Any) -> str | None:
    """The sha256 a registry alias pinned for ``spec``'s weights, if any."""
    return dict(getattr(spec, "options", ()) or ()).get(PIN_OPTION)


def _mentions_location(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            if path.stat().st_size == 0:
                return False
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return data.find(_LOCATION_KEY) != -1
    except (OSError, ValueError):
        return True  # let the full parse report it


def check_pinned_path(spec: Any) -> None:
    """For a spec whose weights are a local file: compare it with the alias's pin, if any."""
    from .recipe import looks_like_path

    pin = pinned_sha256(spec)
    if pin and looks_like_path(spec.weights):
        check_weights_file(Path(spec.weights).expanduser(), pin)


def check_built_weights(spec: Any, weights: dict[str, Any]) -> None:
    """After a build: a pin is never silently ignored, whichever source made the model.

    Sources should check the pin before loading (``check_weights_file``); this catches a
    source that did not, and one that cannot report the sha256 of what it loaded.
    """
    pin = pinned_sha256(spec)
    if not pin:
        return
    actual = weights.get("sha256")
    if not actual:
        raise IntegrityError(f"{spec.ref}: the registry pins weights_sha256, but source {spec.source!r} does not "
                             "report the sha256 of the weights it loaded; remove the pin or pin a weights file")
    if actual != pin:
        raise IntegrityError(f"{spec.ref}: weights loaded have sha256 {actual}, but the registry pins {pin}; "
                             "refusing to export them")
