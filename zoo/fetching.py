"""A source's ready ONNX file (``Source.fetch``) made into a record, checked as an export is.

The host, not the plugin, says what a fetched file is: its opset, inputs and outputs are
read from the file; the labels must fit its output width and the preprocessing its input
shape; the record says ``exporter: "fetched"`` and holds no recipe (recipe flags cannot
change a ready file, so ``refuse_recipe`` refuses them when the name is resolved). The store
and the conformance kit call the same ``fetched_record``, so a kit PASS means a pull works.

The file is stored byte for byte as fetched (its sha256 stays the catalogue's); ``zoo
export`` writes the record into the copy's ``metadata_props``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import IntegrityError, PluginError, UserError
from .exporting import MODEL_FILE, Progress
from .spec import FetchedModel, Preprocessing

if TYPE_CHECKING:
    from .host import PluginHost
    from .record import Record
    from .resolve import Resolved

__all__ = ["FETCHED", "fetched_record", "refuse_recipe"]

FETCHED = "fetched"  # the record's ``exporter`` for a source's ready file
NO_PARITY = "not run: a fetched file has no PyTorch reference here"


def refuse_recipe(ref: str, *settings: Mapping[str, Any]) -> None:
    """``UserError`` for recipe settings (flags, an alias's recipe; ``None`` = not given) for a ready file.

    The host calls it for every source that fetches, so no plugin has to compare its recipe
    against the defaults, and no record claims an opset or size the file does not have.
    """
    given = sorted({k for layer in settings for k, v in layer.items() if v is not None})
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UserError(f"{ref} is a ready ONNX file: {flags} cannot apply; drop "
                        f"{'it' if len(given) == 1 else 'them'} (only a source that builds takes a recipe)")


def fetched_record(resolved: Resolved, host: PluginHost, source: Any, directory: Path,
                   progress: Progress | None = None) -> Record:
    """Fetch ``resolved`` into ``directory`` with ``source`` and describe the file as it is.

    A ``PluginError`` naming the plugin when the source describes the file wrongly (labels
    for another output width, an input size the file does not take, a field of the wrong
    type); an ``IntegrityError`` when the file is not the one its catalogue's sha256 names.
    """
    from .exporting import check, describe
    from .metadata import new_record
    from .recipe import file_sha256

    spec = resolved.spec
    start = time.perf_counter()
    if progress:
        progress(f"fetching {spec.ref}")
    returned = source.fetch(spec, resolved.recipe, directory, progress)
    wrong = _Wrong(host, spec)
    path = directory / MODEL_FILE
    if isinstance(returned, FetchedModel):
        described = _from_fetched(returned, path, wrong)
    elif isinstance(returned, dict):  # what fetch returned before FetchedModel: the same fields
        described = _from_dict(returned, wrong)
    else:
        raise wrong(f"fetch() returned {type(returned).__name__}, not a zoo.plugin.FetchedModel")
    if not path.is_file():
        raise wrong(f"fetch() wrote no {MODEL_FILE} and named no file")
    sha256 = file_sha256(path)
    expected = described.pop("expected_sha256", None)
    if expected is not None and expected != sha256:
        path.unlink()
        raise IntegrityError(f"{spec.ref}: the fetched file has sha256 {sha256}, but source {spec.source}'s "
                             f"catalogue says {expected}; refused (fetch it again, or fix the catalogue)")
    if progress:
        progress("checking the ONNX file")
    check(path)
    inputs, outputs, nodes = describe(path)
    _check_labels(described.get("labels"), outputs, wrong)
    _check_input(described.get("preprocessing"), inputs, wrong)
    version = described.pop("source_version", None)
    weights = described.get("weights")
    if isinstance(weights, dict):
        described["weights"] = {"tag": spec.weights, **weights}
        described["weights"].setdefault("sha256", sha256)  # what was fetched, before any copy carries props
    stats = described.get("stats")
    described.update({
        "exporter": FETCHED,
        "opset": _opset(path),
        "recipe": {},  # none applied: the file is as published (see refuse_recipe)
        "inputs": inputs,
        "outputs": outputs,
        "stats": {**(stats if isinstance(stats, dict) else {}), "onnx_nodes": nodes},
    })
    described.setdefault("validation", {"checker": "onnx.checker full_check", "parity": NO_PARITY, "passed": True})
    record = new_record(resolved, host, version, described)
    record.fetch_seconds = round(time.perf_counter() - start, 3)
    return record


class _Wrong:
    """The one error for a source that describes its file wrongly, naming the plugin."""

    def __init__(self, host: PluginHost, spec: Any) -> None:
        who = host.source_plugin(spec.source).describe()
        self.prefix = f"source {spec.source} ({who}) described {spec.ref} wrongly"

    def __call__(self, what: str) -> PluginError:
        return PluginError(f"{self.prefix}: {what}")


def _from_fetched(fetched: FetchedModel, path: Path, wrong: _Wrong) -> dict[str, Any]:
    """A ``FetchedModel``'s fields as record data; its file put at ``path``."""
    if fetched.data is not None:
        if not isinstance(fetched.data, bytes):
            raise wrong(f"FetchedModel.data is {type(fetched.data).__name__}, not bytes")
        path.write_bytes(fetched.data)
    elif fetched.path is not None:
        given = Path(fetched.path)
        if not given.is_file():
            raise wrong(f"FetchedModel.path {str(given)!r} is not a file")
        if given.resolve() != path.resolve():
            shutil.copyfile(given, path)
    if fetched.preprocessing is not None and not isinstance(fetched.preprocessing, Preprocessing):
        raise wrong(f"FetchedModel.preprocessing is {type(fetched.preprocessing).__name__}, "
                    "not a zoo.plugin.Preprocessing or None")
    for name in ("weights", "stats", "extra"):
        if not isinstance(getattr(fetched, name), dict):
            raise wrong(f"FetchedModel.{name} is {type(getattr(fetched, name)).__name__}, not a dict")
    described: dict[str, Any] = {
        "weights": dict(fetched.weights),
        "preprocessing": fetched.preprocessing.to_dict() if fetched.preprocessing else None,
        "labels": fetched.labels,
        "stats": dict(fetched.stats),
        "license": fetched.license,
        "source_version": fetched.source_version,
        "expected_sha256": fetched.sha256,
    }
    if fetched.sha256 is not None:
        described["weights"].setdefault("sha256", fetched.sha256)
    if fetched.description is not None:
        described["description"] = fetched.description
    if fetched.extra:
        described["extra"] = dict(fetched.extra)
    return described


def _from_dict(returned: dict[str, Any], wrong: _Wrong) -> dict[str, Any]:
    """A metadata dict (the earlier form of ``fetch``'s answer): ``Preprocessing`` objects taken,
    ``weights`` defaulted; what the host reads from the file itself is its own."""
    described = {k: v for k, v in returned.items() if k not in ("inputs", "outputs", "exporter", "opset", "recipe")}
    described.setdefault("weights", {})
    if isinstance(described.get("preprocessing"), Preprocessing):
        described["preprocessing"] = described["preprocessing"].to_dict()
    if "sha256" in described:
        described["expected_sha256"] = described.pop("sha256")
    return described


def _check_labels(labels: Any, outputs: list[dict[str, Any]], wrong: _Wrong) -> None:
    if not isinstance(labels, list) or not outputs:
        return  # no labels, or not a list (the record check names that)
    width = outputs[0]["shape"][-1] if outputs[0]["shape"] else None
    if isinstance(width, int) and width > 0 and width != len(labels):
        raise wrong(f"{len(labels)} labels for output {outputs[0]['name']!r} of width {width} "
                    f"(shape {outputs[0]['shape']}): give one label per output value, or none")


def _check_input(preprocessing: Any, inputs: list[dict[str, Any]], wrong: _Wrong) -> None:
    """The preprocessing's ``input_size`` (C, H, W) is what the file's first input takes."""
    if not isinstance(preprocessing, dict) or not inputs:
        return
    size = preprocessing.get("input_size")
    layout = str(preprocessing.get("layout", "NCHW")).upper()
    if not isinstance(size, (list, tuple)) or len(size) != 3:
        return  # the record check names a malformed input_size
    first = inputs[0]
    shape = first["shape"]
    wanted = list(size) if layout == "NCHW" else [size[1], size[2], size[0]]
    fits = len(shape) == 4 and all(not isinstance(d, int) or d <= 0 or d == w
                                   for d, w in zip(shape[1:], wanted, strict=True))
    if not fits:
        raise wrong(f"preprocessing.input_size {list(size)} ({layout}) does not fit input {first['name']!r} "
                    f"of shape {shape}: give the size the file takes")


def _opset(path: Path) -> int | None:
    """The file's default-domain opset."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
