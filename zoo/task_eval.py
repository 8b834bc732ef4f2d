"""``zoo eval`` for detectors and semantic segmenters (classifiers: ``zoo.accuracy``).

Detection (and the boxes of instance-segmentation and keypoint models): ``--data DIR`` holds
the images, ``--annotations FILE`` is a COCO instances file whose ``file_name``s name them
(relative to DIR, or bare names); the score is COCO box mAP (``zoo.task_metrics``). Every
detection the graph returns is scored (the score threshold baked in at export applies, not
``zoo run``'s display threshold), as COCO's protocol expects. Annotation categories are
matched to the model's categories by name (torchvision's detectors and COCO's files agree on
names and ids), or through ``--labels-map``; a model without category names is matched by id.

Semantic segmentation: ``DIR/images/<image>`` with ``DIR/masks/<image>.png`` class-index masks
(255 = not scored) of the same size; the score is mean IoU. The predicted class map is taken
at the original image's size (``zoo.tasks.decode`` resizes it, nearest neighbour).

``--compare torch|KEY|FILE`` runs the other model on the same images: its own score, and how
far it agrees with this one (detection: the mAP of its detections taking this model's
detections above its run threshold as ground truth; segmentation: the share of pixels both
give the same class).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import UserError
from .imageset import directory, fingerprint, image_files, spread
from .runtime import ProviderOptions, Target, open_session
from .task_metrics import (
    CocoAnnotations,
    ConfusionMatrix,
    coco_box,
    detection_map,
    mask_pairs,
    read_coco,
    read_mask,
)
from .tasks import DETECTING, GAP, SEMANTIC_SEGMENTATION, TaskOutputs, check, decode, task_of

AGREEMENT_THRESHOLD = 0.5  # detections below this score (when the record names none) do not count as found
MAX_BATCH = 8  # a segmenter's per-pixel scores are large: 8 images of 520x520 and 21 classes are 180 MB


def evaluate(target: Target, data: str | Path, *, annotations: str | Path | None = None,
             labels_map: str | Path | None = None, limit: int | None = None, batch: int = 8,
             provider: str = "cpu", options: ProviderOptions | None = None, compare: str | None = None,
             against: Target | Callable[[], tuple[Any, Any]] | None = None, bars: bool = False) -> dict[str, Any]:
    """Score ``target`` (a detector or segmenter) on ``data``; see the module docstring."""
    from .accuracy import _bar

    task = task_of(target.record)
    if task in DETECTING:
        if annotations is None:
            raise UserError(f"{target.path.name} is a {task} model: give its ground truth with --annotations "
                            "FILE (COCO instances JSON) for the images in --data DIR")
    elif task == SEMANTIC_SEGMENTATION:
        if annotations is not None:
            raise UserError(f"{target.path.name} is a semantic-segmentation model: --annotations is for detectors; "
                            "give DIR/images and DIR/masks (class-index PNGs) as --data DIR")
        if labels_map is not None:
            raise UserError("--labels-map is for classifiers and detectors; a segmentation mask holds the "
                            "model's own class indices")
    else:
        raise UserError(f"zoo eval does not score {task} models yet")
    root = directory(data, "--data")
    if task in DETECTING:  # the data set first: its faults are found in a moment, before any session opens
        truth: CocoAnnotations | None = read_coco(annotations)  # type: ignore[arg-type]
        items, missing = annotated_images(root, truth)  # type: ignore[arg-type]
    else:
        items, missing, truth = mask_pairs(root), 0, None
    model = _Model.onnx(target, provider, options, batch)
    categories = category_map(model.categories, truth, labels_map)
    items = spread(items, limit)
    dataset = _dataset(root, items, truth, missing, limit)
    other = _Model.other(compare, against, target, model, provider, options) if compare and against else None

    score = _Score(task, model, truth, categories)
    theirs = _Score(task, other, truth, category_map(other.categories, truth, labels_map) if truth else {},
                    threshold=score.threshold) if other else None
    start = time.perf_counter()
    failed: list[dict[str, str]] = []
    with _bar(bars, len(items)) as advance:
        for offset in range(0, len(items), model.batch):
            part = items[offset:offset + model.batch]
            images, kept, broken = _load(part)
            failed += broken
            if images:
                found = model.predict(images)
                score.add(kept, found)
                if other and theirs:
                    theirs.add(kept, other.predict(images), against=found)
            advance(len(part))
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"model": target.summary(), "task": task, **score.result(), "failed_images": failed,
                              "dataset": dataset, "provider": model.provider, "batch": model.batch,
                              "seconds": round(seconds, 3), "compare": None}
    if other and theirs:
        result["compare"] = {"against": compare, "model": other.summary, **theirs.result(agreement=True),
                             "seconds": round(other.seconds, 3)}
    return result


# -- data ------------------------------------------------------------------------------------------
def annotated_images(root: Path, truth: CocoAnnotations) -> tuple[list[tuple[Path, Any]], int]:
    """``(image, image id)`` for every image under ``root``, and how many annotated images are not
    there (they are left out of the score). An image the file does not list is an error."""
    items, unlisted = [], []
    for path in image_files(root):
        relative = path.relative_to(root).as_posix()
        number = truth.image_id(relative)
        if number is None:
            unlisted.append(relative)
        else:
            items.append((path, number))
    if unlisted:
        shown = ", ".join(unlisted[:5]) + (f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else "")
        raise UserError(f"--data {root}: {shown} not in --annotations {truth.path.name}; give the folder of the "
                        "annotated images only")
    if not items:
        raise UserError(f"--data {root}: no images (the annotations name {len(truth.files)})")
    if len({number for _path, number in items}) != len(items):
        raise UserError(f"--data {root}: two images match one file_name of --annotations {truth.path.name}; "
                        "keep one folder of images")
    return items, len(truth.files) - len(items)


def category_map(names: Sequence[str] | None, truth: CocoAnnotations | None,
                 labels_map: str | Path | None = None) -> dict[int, int]:
    """Model category index -> annotation category id. By name (case, ``_`` and spaces aside),
    else as ``--labels-map`` says (``{annotation category name or id: model index or name}``);
    a model without names is matched by id."""
    from .accuracy import _normal, read_labels_map

    if truth is None:
        return {}
    mapping = read_labels_map(labels_map) if labels_map else {}
    known = {_normal(n): i for i, n in enumerate(names or []) if n and n not in (GAP, "__background__")}
    result: dict[int, int] = {}
    unknown = []
    for number, name in truth.categories.items():
        value = mapping.get(name, mapping.get(str(number), name if names else number))
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        index = value if isinstance(value, int) and not isinstance(value, bool) else known.get(_normal(str(value)))
        if index is None or index < 0 or (names and index >= len(names)):
            unknown.append(name)
        elif index in result:
            raise UserError(f"--annotations: categories {truth.categories[result[index]]!r} and {name!r} both map "
                            f"to the model's category {index}; map them apart with --labels-map")
        else:
            result[index] = number
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:6]) + (f" and {len(unknown) - 6} more" if len(unknown) > 6 else "")
        raise UserError(f"--annotations {truth.path.name}: the model has no category {shown}; map the annotation "
                        "categories to the model's with --labels-map FILE ({\"name or id\": model index or name})")
    return result


def _dataset(root: Path, items: Sequence[tuple[Path, Any]], truth: CocoAnnotations | None, missing: int,
             limit: int | None) -> dict[str, Any]:
    files = [path for path, _ in items]
    if truth is not None:  # the same images with other annotations are another data set
        digest = hashlib.sha256(fingerprint(root, files).encode() + truth.path.read_bytes()).hexdigest()[:20]
        return {"root": str(root), "images": len(items), "fingerprint": digest,
                "annotations": str(truth.path), "categories": len(truth.categories),
                **({"annotated_missing": missing} if missing else {}), **({"limit": limit} if limit else {})}
    masks = [mask for _image, mask in items]
    return {"root": str(root), "images": len(items), "fingerprint": fingerprint(root, files + masks),
            **({"limit": limit} if limit else {})}


def _load(part: Sequence[tuple[Path, Any]]) -> tuple[list[Any], list[Any], list[dict[str, str]]]:
    """The readable images of ``part`` (PIL), their items, and the unreadable ones, named."""
    from . import images as image_io
    from .errors import one_line

    loaded, kept, broken = [], [], []
    for path, extra in part:
        try:
            loaded.append(image_io.load(path))
            kept.append((path, extra))
        except Exception as exc:  # undecodable, truncated, over Pillow's pixel cap: counted, not fatal
            broken.append({"path": str(path), "error": one_line(exc, limit=300)})
    return loaded, kept, broken


# -- models ----------------------------------------------------------------------------------------
class _Model:
    """A model that turns images into ``zoo.tasks.ImageResult``s: an ONNX session, or for
    ``--compare torch`` the PyTorch module the file was exported from (same graph outputs)."""

    def __init__(self, run: Callable[[Any], list[Any]], names: list[str], task: str, outputs: TaskOutputs,
                 preprocessing: Any, batch: int, static: bool, dtype: str, provider: str,
                 summary: dict[str, Any], classes: int = 0) -> None:
        self.run, self.names, self.task, self.outputs = run, names, task, outputs
        self.preprocessing, self.batch, self.static, self.dtype = preprocessing, batch, static, dtype
        self.provider, self.summary, self.seconds = provider, summary, 0.0
        self.classes = len(self.categories or []) or classes

    @property
    def categories(self) -> list[str] | None:
        return list(self.outputs.categories) if self.outputs.categories else None

    @classmethod
    def onnx(cls, target: Target, provider: str, options: ProviderOptions | None, batch: int = 8) -> _Model:
        record = target.record
        if record is None or record.preprocessing is None:
            raise UserError(f"{target.path.name} carries no zoo record, so zoo cannot read images or outputs for "
                            "it: export it with zoo")
        task, outputs = task_of(record), record.task_outputs or TaskOutputs()
        check(task, outputs, target.path.name)
        session = open_session(target.path, provider, options or ProviderOptions(), checked=target.verified)
        spec = session.inputs[0]
        fixed = spec["shape"][0] if isinstance(spec["shape"][0], int) and spec["shape"][0] > 0 else None
        # a detector's outputs are one image's detections: one image a run, as zoo.tasks.Predictor feeds it
        size = 1 if task in DETECTING else outputs.batch or fixed or min(batch, MAX_BATCH)
        name = spec["name"]
        # a segmenter's class count: its category names, else the class axis of its logits (B, C, H, W)
        logits = next((o["shape"] for o in session.outputs if o["name"] == outputs.logits), None)
        classes = logits[1] if logits and len(logits) == 4 and isinstance(logits[1], int) else 0
        if task == SEMANTIC_SEGMENTATION and not (outputs.categories or classes):
            raise UserError(f"{target.path.name}: its record names no categories and its logits no class count")
        return cls(lambda feed: list(session.run({name: feed})), [o["name"] for o in session.outputs], task,
                   outputs, record.preprocessing, size, fixed is not None, spec["dtype"], session.provider,
                   {"kind": "onnx", **target.summary()}, classes)

    @classmethod
    def other(cls, compare: str, against: Target | Callable[[], tuple[Any, Any]], target: Target, mine: _Model,
              provider: str, options: ProviderOptions | None) -> _Model:
        if isinstance(against, Target):
            other = cls.onnx(against, provider, options, mine.batch)
            if other.task != mine.task:
                raise UserError(f"--compare {compare}: a {other.task} model cannot be compared with a {mine.task} "
                                "model")
            tags = {t.record.weights_tag if t.record else None for t in (target, against)}
            if "none" in tags and against.path != target.path:
                other.summary["note"] = ("weights none: every pull draws new random weights, so these two models "
                                         "need not agree; compare pulls of one checkpoint or of pretrained weights")
            return other
        module = against()[0].float()  # float32: the reference the export started from

        def run_torch(feed: Any) -> list[Any]:
            import torch

            with torch.inference_mode():
                output = module(torch.from_numpy(feed.astype("float32")))
            if isinstance(output, dict):
                output = list(output.values())
            elif not isinstance(output, (list, tuple)):
                output = [output]
            return [value.numpy() for value in output]

        return cls(run_torch, mine.names, mine.task, mine.outputs, mine.preprocessing, mine.batch, mine.static,
                   "float32", "torch", {"kind": "torch", "module": type(module).__name__}, mine.classes)

    def predict(self, images: Sequence[Any]) -> list[Any]:
        """One ``ImageResult`` per PIL image, every detection the graph returns (threshold 0)."""
        import numpy as np

        from . import images as image_io
        from .quantize import batches

        tensors = np.stack([image_io.preprocess(image, self.preprocessing) for image in images])
        results = []
        start = time.perf_counter()
        for offset, (feed, rows) in zip(range(0, len(tensors), self.batch),
                                        batches(tensors, self.batch, self.static), strict=True):
            values = self.run(feed.astype(self.dtype))
            input_hw = (int(feed.shape[2]), int(feed.shape[3]))
            for row in range(rows):
                results.append(decode(self.task, self.outputs, self.names, values, row, input_hw,
                                      images[offset + row].size, 0.0))
        self.seconds += time.perf_counter() - start
        return results


# -- scores ----------------------------------------------------------------------------------------
class _Score:
    """One model's results over the data set: its score and, compared, its agreement with the first's."""

    def __init__(self, task: str, model: _Model, truth: CocoAnnotations | None, categories: dict[int, int],
                 threshold: float | None = None) -> None:
        self.task, self.truth, self.categories, self.names = task, truth, categories, model.categories
        self.classes = model.classes
        # the first model's run threshold picks the objects the compared one should find (``reference``)
        own = model.outputs.threshold if model.outputs.threshold is not None else AGREEMENT_THRESHOLD
        self.threshold = own if threshold is None else threshold
        self.found: list[dict[str, Any]] = []  # every detection, by model category index
        self.reference: list[dict[str, Any]] = []  # the first model's detections above the threshold
        self.images: list[Any] = []
        self.matrix = ConfusionMatrix(self.classes) if task == SEMANTIC_SEGMENTATION else None
        self.same = self.pixels = 0

    def add(self, items: Sequence[tuple[Path, Any]], results: Sequence[Any],
            against: Sequence[Any] | None = None) -> None:
        import numpy as np

        for number, ((path, extra), result) in enumerate(zip(items, results, strict=True)):
            self.images.append(extra)
            if self.matrix is None:  # detections: extra is the image id
                self.found += [{"image_id": extra, "category_id": d.index, "bbox": coco_box(d.box), "score": d.score}
                               for d in result.detections]
                if against is not None:
                    self.reference += [{"image_id": extra, "category_id": d.index, "bbox": coco_box(d.box)}
                                       for d in against[number].detections if d.score >= self.threshold]
                continue
            predicted = np.asarray(result.class_map)  # extra is the mask's path
            self.matrix.add(read_mask(extra), predicted, where=f"{path.name} and its mask {extra.name}")
            if against is not None:
                self.same += int((predicted == np.asarray(against[number].class_map)).sum())
                self.pixels += int(predicted.size)

    def result(self, agreement: bool = False) -> dict[str, Any]:
        if self.matrix is not None:
            scored = self.matrix.result(self.names)
            out: dict[str, Any] = {"miou": scored["miou"], "pixel_accuracy": scored["pixel_accuracy"],
                                   "images": len(self.images), "per_class": scored["per_class"]}
            if agreement:
                out["agreement"] = {"pixels": self.same / self.pixels if self.pixels else None}
            return out
        assert self.truth is not None
        mapped = [{**d, "category_id": self.categories[d["category_id"]]} for d in self.found
                  if d["category_id"] in self.categories]
        scored = detection_map(self.truth, mapped, self.images)
        out = {"map": scored["map"], "map_50": scored["map_50"], "map_75": scored["map_75"],
               "images": len(self.images), "detections": len(self.found), "per_category": scored["per_category"]}
        if agreement:
            out["agreement"] = {**agreement_map(self.reference, self.found, self.images),
                                "threshold": self.threshold}
        return out


def agreement_map(reference: Sequence[dict[str, Any]], detections: Sequence[dict[str, Any]],
                  images: Sequence[int]) -> dict[str, Any]:
    """COCO mAP of ``detections`` taking ``reference`` (``image_id``, ``category_id``, ``bbox``
    ``[x, y, w, h]``) as the ground truth on ``images``: 1.0 when they find the same objects."""
    kinds = sorted({r["category_id"] for r in reference} | {d["category_id"] for d in detections})
    document = {"images": [{"id": i, "file_name": str(i)} for i in sorted(set(images))],
                "categories": [{"id": c, "name": str(c)} for c in kinds],
                "annotations": [{**r, "id": n + 1, "iscrowd": 0, "area": r["bbox"][2] * r["bbox"][3]}
                                for n, r in enumerate(reference)]}
    if not kinds:  # neither model found anything: nothing to agree or disagree on
        return {"map": None, "map_50": None, "objects": 0}
    truth = CocoAnnotations(Path("reference"), document, {c: str(c) for c in kinds},
                            {str(i): i for i in set(images)})
    scored = detection_map(truth, detections, images)
    return {"map": scored["map"], "map_50": scored["map_50"], "objects": len(reference)}
