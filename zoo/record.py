"""The entry record: what ``zoo.json`` holds, typed, checked and bounded.

``Record.from_json`` is the only way zoo reads a record (a store entry's ``zoo.json``, the
copy an ``.onnx`` file carries, a Hub repo's pushed ``zoo.json``): every field is checked
for its type and its bounds before anything uses it, so a hostile or damaged record is
one ``RecordError`` naming the field (exit 3), never a crash or a 22 GB resize later on.
``Record.to_json`` writes it back; a record read and written again is unchanged, keys the
current zoo does not know included (kept under ``other``, bounded like the rest).

Schema 1 (zoo 0.1), 2 and 3 read; a record from a newer zoo is refused with advice to
upgrade. Schema 2 added the load report under ``weights`` and keeps machine-local facts
(times, durations, paths) out of the ``.onnx`` copy (see ``Record.portable``). Schema 3
is written for models of a task other than classification (``task`` and its
``task_outputs``, see ``zoo.tasks``), so a zoo that predates tasks refuses a detector
instead of running it as a classifier; classifiers stay schema 2, and records without a
``task`` read as classification.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Union

from .errors import IntegrityError, UserError, one_line
from .files import FileRefused, MiB, read_capped
from .images import INTERPOLATIONS
from .spec import Preprocessing
from .tasks import CLASSIFICATION, TASKS, TaskOutputs
from .tasks import check as check_task

SCHEMA = 2
TASK_SCHEMA = 3  # the schema of records whose task is not classification
READABLE_SCHEMAS = (1, 2, 3)
MAX_RECORD_BYTES = 64 * MiB  # 100,000 labels and room to spare
MAX_DEPTH = 32  # nesting of free-form values (a record's own nesting is 4)
MAX_SIDE = 4096  # pixels: resize, crop and input size (``--size`` stops there too)
MAX_LABELS = 100_000
MAX_STRING = 4096
MAX_ITEMS = 1024
MAX_BYTES = 1 << 50  # a file size beyond a petabyte is damage, not a model
_HEX64 = re.compile(r"[0-9a-f]{64}")
ONNX_METADATA_KEY = "zoo.metadata"  # the metadata_props key of the record an .onnx file carries


class RecordError(IntegrityError):
    """A record (``zoo.json`` or the metadata an ``.onnx`` carries) that fails its check."""


@dataclass(frozen=True)
class Limit:
    """Bounds of a field: numbers in [low, high], strings up to ``length`` characters
    (from ``choices`` when given), lists and maps up to ``items`` entries. A list's
    bounds apply to its elements too."""

    low: float | None = None
    high: float | None = None
    length: int = MAX_STRING
    items: int = MAX_ITEMS
    choices: tuple[str, ...] = ()


_DEFAULT = Limit()
_COUNT = Limit(low=0, high=MAX_BYTES)
_SIDE = Limit(low=1, high=MAX_SIDE)
_KEYS = Limit(items=MAX_LABELS, length=1024)
# Every bound in one place: "Class.field" -> Limit.
LIMITS: dict[str, Limit] = {
    "Record.schema": Limit(low=1, high=1000),
    "Record.labels": _KEYS,
    "Record.files": Limit(items=100_000, length=1024),
    "Record.export_seconds": Limit(low=0, high=1e9),
    "Record.fetch_seconds": Limit(low=0, high=1e9),
    "Record.opset": Limit(low=1, high=1000),
    "FileRecord.size": _COUNT,
    "FileRecord.path": Limit(length=1024),
    "TensorInfo.shape": Limit(low=-1, high=2**31 - 1, items=32, length=128),  # -1: "unknown" in some files
    "TensorInfo.name": Limit(length=1024),
    "Weights.tensors_loaded": _COUNT,
    "Weights.missing_keys": _KEYS,
    "Weights.unexpected_keys": _KEYS,
    "Stats.params": _COUNT,
    "Stats.onnx_nodes": _COUNT,
    "Stats.gflops": Limit(low=0, high=1e12),
    "Validation.max_abs_diff": Limit(low=0),
    "Validation.max_rel_diff": Limit(low=0),
    "Record.evaluations": Limit(items=MAX_LABELS),
    "Evaluation.images": _COUNT,
    "Evaluation.failed": _COUNT,
    "Evaluation.failed_images": Limit(items=MAX_LABELS, length=64 * 1024),
    "RecordedRecipe.opset": Limit(low=1, high=1000),
    "RecordedRecipe.batch": Limit(low=1, high=1_000_000),
    "RecordedRecipe.size": _SIDE,
    "RecordedRecipe.calibration_size": _COUNT,
    "RecordedRecipe.input_names": Limit(items=64, length=128),
    "RecordedRecipe.output_names": Limit(items=64, length=128),
    "Int8Validation.images": _COUNT,
    "Int8Validation.confident_images": _COUNT,
    "Int8Validation.top1_agreement": Limit(low=0, high=1),
    "Int8Validation.confident_agreement": Limit(low=0, high=1),
    "Int8Validation.top5_containment": Limit(low=0, high=1),
    "Int8Validation.mean_tv_distance": Limit(low=0, high=1),
    "Int8Validation.max_abs_diff": Limit(low=0),
    "Int8Validation.judged": Limit(items=16, length=64),
    "CpuRecord.flags": Limit(items=64, length=64),
    "Preprocessing.input_size": Limit(low=1, high=MAX_SIDE),
    "Preprocessing.resize": Limit(low=1, high=2 * MAX_SIDE),  # --size 4096 resizes to 4681 before its crop
    "Preprocessing.crop": _SIDE,
    "Preprocessing.crop_mode": Limit(choices=("center", "squash")),
    "Preprocessing.interpolation": Limit(choices=INTERPOLATIONS),
    "Preprocessing.mean": Limit(low=-1e6, high=1e6, items=16),
    "Preprocessing.std": Limit(low=-1e6, high=1e6, items=16),
    "Preprocessing.channel_order": Limit(choices=("RGB", "BGR", "rgb", "bgr")),
    "Preprocessing.layout": Limit(choices=("NCHW", "NHWC", "nchw", "nhwc")),
    "Record.task": Limit(choices=TASKS),
    "TaskOutputs.categories": _KEYS,
    "TaskOutputs.keypoint_names": Limit(items=1024, length=256),
    "TaskOutputs.skeleton": Limit(low=0, high=1023, items=4096),
    "TaskOutputs.mask_threshold": Limit(low=0, high=1),
    "TaskOutputs.score_threshold": Limit(low=0, high=1),
    "TaskOutputs.nms_iou": Limit(low=0, high=1),
    "TaskOutputs.threshold": Limit(low=0, high=1),
    "TaskOutputs.max_detections": Limit(low=0, high=1_000_000),
    "TaskOutputs.background": Limit(low=0, high=MAX_LABELS),
    "TaskOutputs.batch": Limit(low=1, high=1_000_000),
}


def _optional() -> Any:
    """A field left out of the JSON while it is ``None`` (added by later versions or some sources)."""
    return field(default=None, metadata={"omit": True})


@dataclass
class FileRecord:
    """One file of an entry, as hashed when it was stored."""

    path: str
    size: int
    sha256: str


@dataclass
class TensorInfo:
    """A graph input or output: symbolic dimensions are names (``"batch"``)."""

    name: str
    shape: list[int | str]
    dtype: str


@dataclass
class SourceInfo:
    """The source that made the model, and the plugin that registered it."""

    name: str
    plugin: str | None = None
    distribution: str | None = None
    version: str | None = None


@dataclass
class Weights:
    """Where the weights came from. ``tag`` as asked; the rest as the source knows it
    (``url``, ``hub_id``, ``file`` and its ``sha256``...); the load report of a checkpoint
    (``tensors_loaded``, ``missing_keys``, ``unexpected_keys``) when one was loaded."""

    tag: str
    file: str | None = _optional()
    sha256: str | None = _optional()
    url: str | None = _optional()
    hub_id: str | None = _optional()
    arch: str | None = _optional()
    tensors_loaded: int | None = _optional()
    missing_keys: list[str] | None = _optional()
    unexpected_keys: list[str] | None = _optional()
    other: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attempt:
    """One exporter tried: ``error`` is empty for the one that worked."""

    exporter: str
    error: str = ""


@dataclass
class CpuRecord:
    """The CPU int8 figures were measured on: its int8 ``kind`` (``zoo.cpu.KINDS``), model name and
    deciding flags; ``detected`` when ``ZOO_CPU_KIND`` chose another kind than the flags give."""

    kind: str
    name: str | None = _optional()
    flags: list[str] = field(default_factory=list)
    detected: str | None = _optional()
    other: dict[str, Any] = field(default_factory=dict)


@dataclass
class Int8Validation:
    """``validation.int8``: how the int8 file was made and what it loses against its float32 parent.

    The figures compare the two on calibration images held out from calibration (``images`` of
    them): ``confident_agreement`` (top-1 agreement on the ``confident_images`` where float32's
    top-1 probability is at least ``threshold.confidence``), ``top5_containment`` (float32's top-1
    in int8's top 5), ``mean_tv_distance`` (of the probability vectors), and ``labelled`` (top-1 of
    both against the labels of a ``DIR/<class>/<image>`` folder). ``judged`` names the checks that
    had enough images to decide ``passed``. Records from before zoo measured this way hold
    ``top1_agreement`` on all calibration images and ``threshold.min_top1_agreement``.
    """

    dtype: str | None = _optional()
    quantizer: str | None = _optional()
    onnxruntime: str | None = _optional()
    format: str | None = _optional()
    weights: str | None = _optional()
    activations: str | None = _optional()
    reduce_range: bool | None = _optional()
    calibration_method: str | None = _optional()
    pre_process: str | None = _optional()
    cpu: CpuRecord | None = _optional()
    calibration: dict[str, Any] | None = _optional()
    against: str | None = _optional()
    images: int | None = _optional()
    top1_agreement: float | None = _optional()
    confident_images: int | None = _optional()
    confident_agreement: float | None = _optional()
    top5_containment: float | None = _optional()
    mean_tv_distance: float | None = _optional()
    max_abs_diff: float | None = _optional()
    labelled: dict[str, Any] | None = _optional()
    threshold: dict[str, float] | None = _optional()
    judged: list[str] | None = _optional()
    passed: bool | None = _optional()
    warning: str | None = _optional()
    other: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordedRecipe:
    """``recipe``: the export settings the file was made with (``zoo.recipe.Recipe.to_dict``), or
    none at all (``{}``) for a source's ready file. Keys keep the order they were written in, and
    a ``null`` written stays (``"size": null``: the model's own size), so the record and the key
    it names read and write back unchanged; keys this zoo does not know are kept under ``other``."""

    _keeps_order = True

    opset: int | None = _optional()
    batch: int | None = _optional()
    dynamic_batch: bool | None = _optional()
    size: int | None = _optional()
    dtype: str | None = _optional()
    exporter: str | None = _optional()
    reparameterize: bool | None = _optional()
    input_names: list[str] | None = _optional()
    output_names: list[str] | None = _optional()
    calibration: str | None = _optional()
    calibration_size: int | None = _optional()
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str = "recipe") -> RecordedRecipe:
        return _parse_record(cls, data, where, 0)

    def to_dict(self) -> dict[str, Any]:
        """As ``zoo.json`` holds it (what ``zoo.recipe.Recipe(**...)`` takes back)."""
        return _dump(self)


@dataclass
class Evaluation:
    """One ``zoo eval`` run kept under ``evaluations`` (by data set fingerprint): ``top1``/``top5``
    for a classifier, ``map``/``map_50``/``map_75`` for a detector, ``miou`` for a segmenter, on
    ``images`` images of ``dataset``; what else the run reported (per class figures, timing, the
    comparison) is kept as written under ``other``. Keys keep the order they were written in,
    and a ``null`` written stays (``zoo.json`` reads and writes back unchanged)."""

    _keeps_order = True

    task: str | None = _optional()
    top1: float | None = _optional()
    top5: float | None = _optional()
    map: float | None = _optional()
    map_50: float | None = _optional()
    map_75: float | None = _optional()
    miou: float | None = _optional()
    images: int | None = _optional()
    dataset: dict[str, Any] | None = _optional()
    provider: str | None = _optional()
    created: str | None = _optional()
    failed: int | None = _optional()
    failed_images: list[str] | None = _optional()
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str = "evaluation") -> Evaluation:
        """The run in ``data`` (what ``zoo eval`` returned, less the model), checked like a record."""
        return _parse_record(cls, data, where, 0)

    @property
    def scores(self) -> dict[str, float | None]:
        """The task's headline figures, by name: mAP for a detector, mean IoU for a segmenter,
        else top-1/top-5."""
        named = {k: getattr(self, k) for k in ("map", "map_50", "map_75", "miou")
                 if k in self.given or getattr(self, k) is not None}
        return named or {"top1": self.top1, "top5": self.top5}

    @property
    def given(self) -> tuple[str, ...]:
        """The keys the run was written with, in their order."""
        return getattr(self, "_keys", ())


@dataclass
class Validation:
    """How the file was checked: the checker, and parity with PyTorch where there was one."""

    checker: str | None = _optional()
    input: Any = _optional()
    max_abs_diff: float | None = _optional()
    max_rel_diff: float | None = _optional()
    tolerance: dict[str, float] | None = _optional()
    parity: str | None = _optional()
    passed: bool | None = _optional()
    int8: Int8Validation | None = _optional()
    other: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stats:
    """Figures about the model: ``params`` counted by zoo, the rest as the source reports."""

    params: int | None = _optional()
    onnx_nodes: int | None = _optional()
    gflops: float | None = _optional()
    other: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Record:
    """One entry's ``zoo.json``. ``files`` is empty in the copy an ``.onnx`` carries.

    What leaves this machine is one view each: ``for_onnx`` (the reproducible file's
    ``metadata_props``, from ``portable``), ``for_remote`` (a remote's manifest) and ``for_hub``
    (the pushed ``zoo.json`` and the model card)."""

    schema: int = SCHEMA
    name: str
    ref: str
    task: str | None = _optional()  # None (records before tasks): classification
    task_outputs: TaskOutputs | None = _optional()
    alias: str | None = None
    description: str | None = _optional()  # one line from the source (a fetched file's catalogue)
    key: str | None = None
    source: SourceInfo | None = None
    weights: Weights | None = None
    options: dict[str, Any] = field(default_factory=dict)
    recipe: RecordedRecipe = field(default_factory=RecordedRecipe)
    exporter: str | None = None  # "dynamo", "torchscript"; "fetched" for a source's ready file
    opset: int | None = _optional()  # a fetched file's own opset, read from it (an export's: recipe.opset)
    export_attempts: list[Attempt] | None = _optional()
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    preprocessing: Preprocessing | None = None
    preprocessing_from: str | None = _optional()
    labels: list[str] | None = None
    validation: Validation | None = _optional()
    stats: Stats = field(default_factory=Stats)
    license: str | None = None
    toolchain: dict[str, str | None] = field(default_factory=dict)
    created: str | None = _optional()
    export_seconds: float | None = _optional()
    fetch_seconds: float | None = _optional()
    extra: dict[str, Any] | None = _optional()
    post_export: list[dict[str, Any]] | None = _optional()
    evaluations: dict[str, Evaluation] | None = _optional()  # `zoo eval` results, by data set fingerprint
    hub_files: dict[str, str] | None = _optional()
    origin: dict[str, Any] | None = _optional()
    files: list[FileRecord] = field(default_factory=list)
    other: dict[str, Any] = field(default_factory=dict)

    # -- reading and writing ------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Any, where: str = "zoo.json") -> Record:
        """The record in ``data`` (parsed JSON), or ``RecordError`` naming the bad field."""
        if isinstance(data, dict) and "schema" in data:
            schema = data["schema"]
            if isinstance(schema, int) and not isinstance(schema, bool) and schema > max(READABLE_SCHEMAS):
                raise RecordError(f"invalid {where}: schema {schema} is from a newer zoo (this one reads "
                                  f"{', '.join(map(str, READABLE_SCHEMAS))}): upgrade zoo")
        try:
            record = _parse_record(cls, data, "", 0)
        except RecordError as exc:
            raise RecordError(f"invalid {where}: {exc}") from None
        if record.schema not in READABLE_SCHEMAS:
            raise RecordError(f"invalid {where}: schema: unknown version {record.schema}")
        return record

    @classmethod
    def loads(cls, text: str | bytes, where: str = "zoo.json") -> Record:
        """The record in JSON ``text``: invalid or absurdly nested JSON is a ``RecordError`` too."""
        return cls.from_json(parse_json(text, where), where)

    @classmethod
    def load(cls, path: str | Path) -> Record:
        """The record in the file ``path`` (a regular file, at most ``MAX_RECORD_BYTES``).

        ``FileNotFoundError`` propagates (a missing record is the caller's case).
        """
        try:
            text = read_capped(path, MAX_RECORD_BYTES)
        except FileRefused as exc:
            raise RecordError(f"unreadable {Path(path).name}: {exc}") from None
        return cls.loads(text, Path(path).name)

    def to_json(self) -> dict[str, Any]:
        return _dump(self)

    def portable(self) -> dict[str, Any]:
        """What the ``.onnx`` file carries: the record less machine-local facts.

        Times, durations, export attempts, parity measured on this machine and absolute
        paths stay in ``zoo.json``, so the same spec, recipe and toolchain give the same
        bytes on any machine. The file hashes cannot be carried (a file cannot hash itself).
        """
        data = self.to_json()
        for local in ("created", "export_seconds", "fetch_seconds", "export_attempts", "validation", "files",
                      "evaluations"):
            data.pop(local, None)
        weights = data.get("weights") or {}
        if isinstance(weights.get("file"), str):
            weights["file"] = Path(weights["file"]).name  # its sha256 still identifies it
        recipe = data.get("recipe") or {}
        if isinstance(recipe.get("calibration"), str):
            recipe["calibration"] = Path(recipe["calibration"]).name  # the key holds its fingerprint
        if self.source is not None and self.source.name and Path(self.ref.partition(":")[2]).is_absolute():
            # local:/home/alice/ckpt.pth -> local:ckpt.pth (the name part of a path-named source)
            short = f"{self.source.name}:{Path(self.ref.partition(':')[2]).name}"
            data["name"] = short if data.get("name") == self.ref else data.get("name")
            data["ref"] = short
        return data

    # -- what leaves this machine: one view per destination ------------------------------------
    def for_onnx(self) -> dict[str, str]:
        """The ``metadata_props`` zoo writes into the reproducible ``.onnx`` file: the portable
        record (sorted keys, so equal records give equal bytes), the labels again on their own
        (readable without parsing the record), and the ref."""
        carried = self.portable()
        props = {ONNX_METADATA_KEY: json.dumps(carried, sort_keys=True)}
        if self.labels:
            props["zoo.labels"] = json.dumps(self.labels)
        props["zoo.ref"] = carried["ref"]
        return props

    def for_remote(self) -> dict[str, Any]:
        """The record as a remote's manifest holds it: all of ``zoo.json`` less ``files`` (the
        manifest lists the files with their blobs)."""
        return {k: v for k, v in self.to_json().items() if k != "files"}

    def for_hub(self) -> dict[str, Any]:
        """``zoo.json`` as it goes to the Hub (the pushed file, and the model card's figures): a
        local weights file is named, not located (``/home/alice/ckpt.pth`` -> ``ckpt.pth``; its
        sha256 still identifies it)."""
        data = self.to_json()
        if self.weights is not None and self.weights.file:
            data["weights"]["file"] = Path(self.weights.file).name
        return data

    # -- what other modules ask ---------------------------------------------------------------
    @property
    def weights_tag(self) -> str | None:
        return self.weights.tag if self.weights else None

    @property
    def kind(self) -> str:
        """The model's task: ``task``, or ``classification`` for a record without one."""
        return self.task or CLASSIFICATION

    @property
    def dtype(self) -> str | None:
        return self.recipe.dtype

    def file(self, path: str) -> FileRecord | None:
        return next((f for f in self.files if f.path == path), None)


def parse_json(text: str | bytes, where: str = "zoo.json") -> Any:
    """JSON ``text`` parsed, or a ``RecordError``: invalid, not UTF-8, or nested past recursion."""
    try:
        return json.loads(text)
    except RecursionError:
        raise RecordError(f"unreadable {where}: nested too deeply to be a zoo record") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"unreadable {where}: invalid JSON ({one_line(exc)})") from None


# -- the checker --------------------------------------------------------------------------------
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _parse_record(cls: type, data: Any, where: str, depth: int) -> Any:
    if not isinstance(data, dict):
        raise RecordError(f"{where or 'the record'}: expected an object, got {_kind(data)}")
    hints, known = _hints(cls), {f.name: f for f in fields(cls) if f.name != "other"}
    values: dict[str, Any] = {}
    for name, spec in known.items():
        here = _at(where, name)
        if name in data:
            limit = LIMITS.get(f"{cls.__name__}.{name}", _DEFAULT)
            values[name] = _parse(hints[name], data[name], here, limit, depth + 1)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise RecordError(f"{here}: missing")
    unknown = {k: v for k, v in data.items() if k not in known}
    if unknown:
        if "other" not in {f.name for f in fields(cls)}:
            raise RecordError(f"{_at(where, sorted(unknown, key=str)[0])}: unknown field")
        values["other"] = _parse(dict[str, Any], unknown, where, _DEFAULT, depth)
    record = cls(**values)
    if getattr(cls, "_keeps_order", False):
        object.__setattr__(record, "_keys", tuple(data))  # written back in this order, nulls included
    check = _CHECKS.get(cls)
    if check is not None:
        check(record, where)
    return record


def _at(where: str, name: Any) -> str:
    return f"{where}.{name}" if where else str(name)


def _parse(hint: Any, value: Any, where: str, limit: Limit, depth: int) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return _free(value, where, depth)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            if _matches(option, value):
                return _parse(option, value, where, limit, depth)
        wanted = " or ".join(_name(a) for a in args)
        raise RecordError(f"{where}: expected {wanted}, got {_kind(value)}")
    if is_dataclass(hint):
        if depth > MAX_DEPTH:
            raise RecordError(f"{where}: nested too deeply")
        return _parse_record(hint, value, where, depth)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {_kind(value)}")
        fixed = origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)
        if fixed and len(value) != len(args):
            raise RecordError(f"{where}: expected {len(args)} values, got {len(value)}")
        if len(value) > limit.items:
            raise RecordError(f"{where}: {len(value)} items, more than {limit.items}")
        if args == (str,) and not limit.choices and all(type(s) is str and len(s) <= limit.length for s in value):
            return list(value)  # labels, key lists: the common case, checked at once
        items = [_parse(args[i] if fixed else args[0], item, f"{where}[{i}]", limit, depth + 1)
                 for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {_kind(value)}")
        if len(value) > limit.items:
            raise RecordError(f"{where}: {len(value)} keys, more than {limit.items}")
        return {_string(key, f"{where} key", _DEFAULT): _parse(args[1], item, _at(where, key), limit, depth + 1)
                for key, item in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise RecordError(f"{where}: expected true or false, got {_kind(value)}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise RecordError(f"{where}: expected an integer, got {_kind(value)}")
        return _bounded(value, where, limit)
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise RecordError(f"{where}: expected a number, got {_kind(value)}")
        return float(_bounded(value, where, limit))
    if hint is str:
        return _string(value, where, limit)
    raise TypeError(f"record field type {hint!r} has no checker")  # a zoo bug, found by the tests


def _matches(hint: Any, value: Any) -> bool:
    """Whether ``value`` is of ``hint``'s JSON kind (which union member to check it against)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if is_dataclass(hint) or origin is dict:
        return isinstance(value, dict)
    if origin in (list, tuple):
        return isinstance(value, list)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else False


def _bounded(value: float, where: str, limit: Limit) -> float:
    if (limit.low is not None and value < limit.low) or (limit.high is not None and value > limit.high):
        low = "" if limit.low is None else f"{limit.low:g}"
        high = "" if limit.high is None else f"{limit.high:g}"
        raise RecordError(f"{where}: {value} is outside [{low}, {high}]")
    return value


def _string(value: Any, where: str, limit: Limit) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{where}: expected a string, got {_kind(value)}")
    if len(value) > limit.length:
        raise RecordError(f"{where}: a string of {len(value)} characters, more than {limit.length}")
    if limit.choices and value not in limit.choices:
        raise RecordError(f"{where}: {value[:40]!r} is not one of {', '.join(limit.choices)}")
    return value


def _free(value: Any, where: str, depth: int) -> Any:
    """A free-form JSON value (a plugin's findings, unknown keys): JSON kinds, bounded nesting."""
    if depth > MAX_DEPTH:
        raise RecordError(f"{where}: nested too deeply")
    if isinstance(value, dict):
        if len(value) > MAX_LABELS:
            raise RecordError(f"{where}: {len(value)} keys, more than {MAX_LABELS}")
        return {_string(k, f"{where} key", _DEFAULT): _free(v, _at(where, k), depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > MAX_LABELS:
            raise RecordError(f"{where}: {len(value)} items, more than {MAX_LABELS}")
        return [_free(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"{where}: {value} is not a finite number")
    if isinstance(value, str) and len(value) > 64 * 1024:
        raise RecordError(f"{where}: a string of {len(value)} characters, more than {64 * 1024}")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise RecordError(f"{where}: {_kind(value)} is not JSON")


def _check_file(record: FileRecord, where: str) -> None:
    if not _HEX64.fullmatch(record.sha256):
        raise RecordError(f"{_at(where, 'sha256')}: expected 64 lowercase hex digits")
    parts = PurePosixPath(record.path).parts
    if not parts or record.path.startswith("/") or "\\" in record.path or ".." in parts:
        raise RecordError(f"{_at(where, 'path')}: {record.path!r} is not a file inside the entry")


def _check_preprocessing(pre: Preprocessing, where: str) -> None:
    channels = pre.input_size[0]
    if channels > 16:
        raise RecordError(f"{_at(where, 'input_size')}: {channels} channels, more than 16")
    for name in ("mean", "std"):
        values = getattr(pre, name)
        if len(values) not in (1, channels):
            raise RecordError(f"{_at(where, name)}: {len(values)} values for {channels} channels")
    if any(value == 0 for value in pre.std):
        raise RecordError(f"{_at(where, 'std')}: a zero would divide by zero")


def _check_record(record: Record, where: str) -> None:
    if ":" not in record.ref:
        raise RecordError(f"{_at(where, 'ref')}: expected SOURCE:NAME, got {record.ref[:60]!r}")
    for group, settings in (("options", record.options), ("recipe", record.recipe.other)):
        for name, value in settings.items():  # flat settings: a value, or a list of values
            _free(value, _at(_at(where, group), name), MAX_DEPTH - 1)
    try:
        check_task(record.kind, record.task_outputs, where or "record")
    except UserError as exc:
        raise RecordError(str(exc)) from None
    if record.kind != CLASSIFICATION:
        record.schema = max(record.schema, TASK_SCHEMA)


_CHECKS: dict[type, Any] = {FileRecord: _check_file, Preprocessing: _check_preprocessing, Record: _check_record}


# -- writing ------------------------------------------------------------------------------------
def label_preview(labels: list[str], count: int) -> str:
    """The first ``count`` labels, quoted, so that a comma inside a label stays inside it."""
    shown = ", ".join(json.dumps(label, ensure_ascii=False) for label in labels[:count])
    return shown + (", ..." if len(labels) > count else "")


def as_json(value: Any) -> Any:
    """A record or any part of it as JSON data (what ``zoo.json`` holds for it)."""
    return _dump(value)


def _dump(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        given: tuple[str, ...] = getattr(value, "_keys", ())
        out: dict[str, Any] = {}
        for spec in fields(value):
            item = getattr(value, spec.name)
            if spec.name == "other":
                out.update({k: _dump(v) for k, v in item.items() if k not in out})
            elif item is not None or not spec.metadata.get("omit") or spec.name in given:
                out[spec.name] = _dump(item)
        if given:  # the order it was read in; fields set since then after them
            out = {**{k: out[k] for k in given if k in out}, **out}
        return out
    if isinstance(value, (list, tuple)):
        return [_dump(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _dump(v) for k, v in value.items()}
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return "a list"
    if origin is dict or is_dataclass(hint):
        return "an object"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(hint, str(hint))
