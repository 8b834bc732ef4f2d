"""``zoo eval``: top-1 and top-5 accuracy of a model on a labelled image folder.

Layout ``DIR/<class>/<image>``. A class folder is named by a class index (``281``), an ImageNet
WordNet id (``n02123045``, mapped with timm's ImageNet info for a model with as many classes
as one of its subsets) or a label as the model's ``labels`` spell it (the whole label or one
of its comma-separated names, case and ``_``/space ignored); ``--labels-map FILE`` maps any
other folder name. Images are read with the model's own preprocessing; one that cannot be
read is counted and named, not fatal.

A stored entry keeps the result in its record under ``evaluations``, keyed by the fingerprint
of the evaluated files, rewritten atomically under the entry's lock; the model files are
untouched, so ``zoo verify`` still passes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError
from .imageset import directory, fingerprint, image_files, spread
from .runtime import ProviderOptions, Target, open_session

DEFAULT_BATCH = 32
TOPK = 5
RECORDED_FAILURES = 20  # the record names this many failed images; the JSON output names all
_WNID = re.compile(r"n\d{8}")


def evaluate(
    target: Target,
    data: str | Path,
    labels_map: str | Path | None = None,
    limit: int | None = None,
    batch: int = DEFAULT_BATCH,
    provider: str = "cpu",
    options: ProviderOptions | None = None,
    compare: str | None = None,
    against: Target | Callable[[], tuple[Any, Any]] | None = None,
    per_class: bool = False,
    bars: bool = False,
    annotations: str | Path | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 of ``target`` on the folder ``data``, and of what ``compare`` names on the same
    images: ``against`` is that model, located (a ``Target``) or, for ``torch``, a function that
    builds the PyTorch module and its dtype.

    A detector or segmenter (the record's ``task``) is scored by ``zoo.task_eval`` instead: COCO
    box mAP against ``annotations``, or mean IoU on ``data/images`` + ``data/masks``."""
    import numpy as np

    from .tasks import CLASSIFICATION, task_of

    task = task_of(target.record)
    if task != CLASSIFICATION:
        from . import task_eval

        if batch < 1:
            raise UserError(f"--batch must be at least 1, not {batch}")
        if limit is not None and limit < 1:
            raise UserError(f"--limit must be at least 1, not {limit}")
        return task_eval.evaluate(target, data, annotations=annotations, labels_map=labels_map, limit=limit,
                                  batch=batch, provider=provider, options=options, compare=compare,
                                  against=against, bars=bars)
    if annotations is not None:
        raise UserError(f"--annotations is for detectors; {target.path.name} is a classifier: evaluate it on "
                        "DIR/<class>/<image> without --annotations")
    if batch < 1:
        raise UserError(f"--batch must be at least 1, not {batch}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, not {limit}")
    if not target.preprocessing:
        raise UserError(f"{target.path.name} carries no zoo preprocessing metadata, so zoo cannot read images "
                        "for it: export it with zoo")
    root = directory(data, "--data")
    session = open_session(target.path, provider, options or ProviderOptions(), checked=target.verified)
    spec = session.inputs[0]
    classes = _classes(session.outputs[0])
    items = labelled_images(root, target.labels, classes, labels_map)
    items = spread(items, limit)
    files = [path for path, _ in items]
    dataset = {"root": str(root), "images": len(items), "fingerprint": fingerprint(root, files),
               "classes": len({label for _, label in items}), **({"limit": limit} if limit else {})}
    static = spec["shape"][0] if isinstance(spec["shape"][0], int) and spec["shape"][0] > 0 else None
    chunk = static or batch
    other = _Other.open(compare, against, target, provider, options) if compare and against else None

    start = time.perf_counter()
    ranks: list[Any] = []
    truth: list[int] = []
    failed: list[dict[str, str]] = []
    with _bar(bars, len(items)) as advance:
        for offset in range(0, len(items), chunk):
            part = items[offset:offset + chunk]
            tensors, labels, broken = _read(part, target.preprocessing)
            failed += broken
            if len(tensors):
                logits = _run(session, tensors, static)
                ranks.append(_top(logits))
                truth += labels
                if other:
                    other.step(part, tensors, logits, broken)
            advance(len(part))
    seconds = time.perf_counter() - start
    top = np.concatenate(ranks) if ranks else np.zeros((0, TOPK), dtype=np.int64)
    labels = np.asarray(truth, dtype=np.int64)
    result: dict[str, Any] = {
        "model": target.summary(),
        **_scores(top, labels),
        "images": len(labels),
        "failed_images": failed,
        "dataset": dataset,
        "provider": session.provider,
        "batch": chunk,
        "seconds": round(seconds, 3),
        "compare": other.result(labels) if other else None,
    }
    if per_class:
        result["per_class"] = _per_class(top, labels, items, target.labels)
    return result


# -- labels -------------------------------------------------------------------------------------
def labelled_images(root: Path, labels: Sequence[str] | None, classes: int | None,
                    labels_map: str | Path | None = None) -> list[tuple[Path, int]]:
    """``(image, class index)`` for every image under ``root/<class>/``, sorted by path."""
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UserError(f"--data {root}: no class folders; lay the images out as DIR/<class>/<image>")
    mapping = read_labels_map(labels_map) if labels_map else {}
    names = label_names(labels)
    indices: dict[str, int] = {}
    unknown = []
    for folder in folders:
        index = class_index(mapping.get(folder, folder), names, classes)
        if index is None:
            unknown.append(folder)
        else:
            indices[folder] = index
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        raise UserError(f"--data {root}: unknown class folders {shown}: name each by a class index (0-"
                        f"{(classes or 1) - 1}), an ImageNet WordNet id or one of the model's labels, "
                        "or map them with --labels-map FILE")
    items = [(path, indices[folder]) for folder in folders for path in image_files(root / folder)]
    if not items:
        raise UserError(f"--data {root}: the class folders hold no images")
    return items


def read_labels_map(path: str | Path) -> dict[str, Any]:
    """``{folder: index or label}`` from a JSON object, or from lines ``FOLDER INDEX|LABEL``."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"--labels-map {path}: no such file")
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"--labels-map {path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise UserError(f"--labels-map {path}: give a JSON object {{\"folder\": index or label}}")
        return {str(k): v for k, v in data.items()}
    mapping: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = re.split(r"[\t,]|\s+", line.strip(), maxsplit=1)
        if len(parts) != 2 or not parts[1].strip():
            raise UserError(f"--labels-map {path}:{number}: write FOLDER INDEX or FOLDER LABEL on each line")
        folder, value = parts[0], parts[1].strip()
        mapping[folder] = int(value) if value.isdigit() else value
    return mapping


def class_index(name: Any, names: dict[str, int | None], classes: int | None) -> int | None:
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        index = int(name)
        return index if classes is None or 0 <= index < classes else None
    if _WNID.fullmatch(name):
        return _wordnet_ids(classes).get(name)
    return names.get(_normal(name))  # None: unknown, or a name two labels share


def label_names(labels: Sequence[str] | None) -> dict[str, int | None]:
    """Normalised label -> index, for whole labels and each comma-separated name (None when shared)."""
    names: dict[str, int | None] = {}
    for index, label in enumerate(labels or []):
        for name in {label, *label.split(",")}:
            key = _normal(name)
            if key:
                names[key] = index if names.get(key, index) == index else None
    for index, label in enumerate(labels or []):  # a whole label always wins
        names[_normal(label)] = index
    return names


def _normal(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


_SYNSETS: dict[int | None, dict[str, int]] = {}


def _wordnet_ids(classes: int | None) -> dict[str, int]:
    """WordNet id -> index for the ImageNet subset with ``classes`` classes (timm's ImageNetInfo)."""
    if classes not in _SYNSETS:
        from timm.data import ImageNetInfo

        _SYNSETS[classes] = {}
        for subset in ("imagenet-1k", "imagenet-22k", "imagenet-21k", "imagenet-12k"):
            try:
                info = ImageNetInfo(subset)
            except Exception:  # a subset this timm does not ship
                continue
            if info.num_classes() == classes:
                _SYNSETS[classes] = {wnid: i for i, wnid in enumerate(info.label_names())}
                break
    return _SYNSETS[classes]


# -- running --------------------------------------------------------------------------------------
def _classes(output: dict[str, Any]) -> int | None:
    shape = output["shape"]
    if len(shape) != 2:
        raise UserError(f"zoo eval needs a classifier (one output of shape [batch, classes]); this model's "
                        f"first output {output['name']!r} has shape {shape}")
    return shape[1] if isinstance(shape[1], int) else None


def _read(part: Sequence[tuple[Path, int]], preprocessing: dict[str, Any]) -> tuple[Any, list[int], list[dict]]:
    from .quantize import read_tensors

    tensors, broken = read_tensors([path for path, _ in part], preprocessing)
    bad = {item["path"] for item in broken}
    labels = [label for path, label in part if str(path) not in bad]
    return tensors, labels, broken


def _run(session: Any, tensors: Any, static: int | None) -> Any:
    import numpy as np

    from .quantize import batches

    name, dtype = session.inputs[0]["name"], session.inputs[0]["dtype"]
    parts = [session.run({name: part.astype(dtype)})[0][:rows] for part, rows in
             batches(tensors, static or len(tensors), static is not None)]
    return np.concatenate(parts).astype(np.float64)


def _top(logits: Any) -> Any:
    import numpy as np

    k = min(TOPK, logits.shape[1])
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def _scores(top: Any, labels: Any) -> dict[str, float | None]:
    if not len(labels):
        return {"top1": None, "top5": None}
    return {"top1": float((top[:, 0] == labels).mean()), "top5": float((top == labels[:, None]).any(1).mean())}


def _per_class(top: Any, labels: Any, items: Sequence[tuple[Path, int]], names: Sequence[str] | None) -> dict:
    """Per class index: its label, the folders filed under it, image count, top-1 and top-5."""
    import numpy as np

    folders: dict[int, set[str]] = {}
    for path, label in items:
        folders.setdefault(label, set()).add(path.parent.name)
    rows = {}
    for label in sorted(set(labels.tolist())):
        mask = labels == label
        rows[str(label)] = {
            "label": names[label] if names and label < len(names) else None,
            "folders": sorted(folders.get(label, ())), "images": int(np.sum(mask)), **_scores(top[mask], labels[mask])}
    return rows


class _Other:
    """The model compared side by side: PyTorch (``torch``) or another ONNX model, same images."""

    def __init__(self, what: str, run: Any, preprocessing: dict[str, Any] | None, summary: dict[str, Any]) -> None:
        self.what, self._run, self.preprocessing, self.summary = what, run, preprocessing, summary
        self.ranks: list[Any] = []
        self.agree = 0
        self.count = 0
        self.max_abs: float | None = 0.0
        self.seconds = 0.0

    @classmethod
    def open(cls, compare: str, against: Target | Callable[[], tuple[Any, Any]], target: Target, provider: str,
             options: ProviderOptions | None) -> _Other:
        if not isinstance(against, Target):
            module = against()[0].float()  # float32: the reference the export started from

            def run_torch(tensors: Any) -> Any:
                import torch

                with torch.inference_mode():
                    output = module(torch.from_numpy(tensors))
                output = output[0] if isinstance(output, (list, tuple)) else output
                return output.double().numpy()

            summary = {"kind": "torch", "module": type(module).__name__}
            return cls("torch", run_torch, None, summary)
        other = against
        session = open_session(other.path, provider, options or ProviderOptions())
        spec = session.inputs[0]
        static = spec["shape"][0] if isinstance(spec["shape"][0], int) and spec["shape"][0] > 0 else None
        same = other.preprocessing == target.preprocessing
        summary = {"kind": "onnx", **other.summary()}
        tags = {t.record.weights_tag if t.record else None for t in (target, other)}
        if "none" in tags and other.path != target.path:
            summary["note"] = ("weights none: every pull draws new random weights, so these two models need not "
                               "agree; compare pulls of one checkpoint or of pretrained weights")
        return cls(compare, lambda tensors: _run(session, tensors, static),
                   None if same else other.preprocessing, summary)

    def step(self, part: Sequence[tuple[Path, int]], tensors: Any, logits: Any, broken: list[dict]) -> None:
        import numpy as np

        if self.preprocessing is not None:  # its own preprocessing: read the same images its way
            bad = {item["path"] for item in broken}
            tensors, _labels, more = _read([item for item in part if str(item[0]) not in bad], self.preprocessing)
            if more:
                raise UserError(f"--compare {self.what}: cannot read {more[0]['path']} with its preprocessing "
                                f"({more[0]['error']})")
        start = time.perf_counter()
        theirs = np.asarray(self._run(tensors), dtype=np.float64)
        self.seconds += time.perf_counter() - start
        self.ranks.append(_top(theirs))
        self.agree += int((theirs.argmax(1) == logits.argmax(1)).sum())
        self.count += len(theirs)
        if self.max_abs is not None and theirs.shape == logits.shape:
            self.max_abs = max(self.max_abs, float(np.abs(theirs - logits).max(initial=0.0)))
        else:
            self.max_abs = None

    def result(self, labels: Any) -> dict[str, Any]:
        import numpy as np

        top = np.concatenate(self.ranks) if self.ranks else np.zeros((0, TOPK), dtype=np.int64)
        return {"against": self.what, "model": self.summary, **_scores(top, labels), "images": self.count,
                "top1_agreement": self.agree / self.count if self.count else None,
                "max_abs_diff": self.max_abs, "seconds": round(self.seconds, 3)}


@contextmanager
def _bar(enabled: bool, total: int) -> Iterator[Any]:
    """A progress bar on stderr (only when asked: the CLI asks on a terminal)."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("eval", total=total)
        yield lambda n: progress.advance(task, n)
