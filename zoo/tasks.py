"""What a model computes (its task) and how its outputs become results people can use.

A record's ``task`` is one of ``TASKS``; ``classification`` is the default, so records
written before tasks existed (schema 1 and 2) read as classifiers. Every other task comes
with a ``TaskOutputs``: which ONNX output holds what (boxes, labels, scores, masks,
keypoints, class scores), the box format and the pixel frame the boxes are in, the
thresholds baked into the graph at export, the default ``zoo run --threshold``, and the
category names (torchvision's detectors use COCO's 91-id list, gaps written ``N/A``).

``Predictor`` turns a model's raw outputs into per-image results in the original image's
pixels: detections (``Detection``), instance masks, keypoints, or a class map with each
class's pixel share. It needs numpy, Pillow and onnxruntime only: never torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

CLASSIFICATION = "classification"
DETECTION = "detection"
INSTANCE_SEGMENTATION = "instance-segmentation"
SEMANTIC_SEGMENTATION = "semantic-segmentation"
KEYPOINTS = "keypoints"
TASKS = (CLASSIFICATION, DETECTION, INSTANCE_SEGMENTATION, SEMANTIC_SEGMENTATION, KEYPOINTS)
# Tasks whose outputs are a list of detected objects (boxes, labels, scores, maybe more).
DETECTING = (DETECTION, INSTANCE_SEGMENTATION, KEYPOINTS)
BOX_FORMATS = ("xyxy",)
# "input": pixels of the network input (zoo scales them to the original image);
# "original": the graph already returns the original image's pixels.
BOX_FRAMES = ("input", "original")
GAP = "N/A"  # a category id with no category (COCO's 91-id list has 11)

# COCO's 91 category ids as torchvision's detectors number them: 0 is the background, and
# the ids the 2017 release dropped are gaps.
COCO_CATEGORIES: tuple[str, ...] = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", GAP, "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", GAP, "backpack", "umbrella", GAP, GAP, "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", GAP, "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", GAP, "dining table", GAP, GAP, "toilet", GAP, "tv", "laptop",
    "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", GAP,
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle",
)
# Pairs of keypoint indices joined when drawn (COCO's person skeleton, 0-based).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
    (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
VOC_CATEGORIES: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def _optional() -> Any:
    return field(default=None, metadata={"omit": True})


@dataclass
class TaskOutputs:
    """How to read a non-classification model's outputs (``zoo.json``'s ``task_outputs``).

    Output fields name ONNX graph outputs. Detection-like tasks: ``boxes`` (N, 4) in
    ``box_format`` (``xyxy``) and ``box_frame`` pixels, ``labels`` (N,) category ids,
    ``scores`` (N,); ``masks`` (N, 1, H, W) probabilities in the input frame, binarised at
    ``mask_threshold``; ``keypoints`` (N, K, 3) as x, y, visibility and ``keypoint_scores``
    (N, K). Semantic segmentation: ``logits`` (B, C, H, W) class scores. ``score_threshold``,
    ``nms_iou`` and ``max_detections`` are baked into the graph; ``threshold`` is the
    default ``zoo run --threshold``. ``categories`` maps ids to names (``N/A`` for gaps);
    ``batch`` is the one batch size the graph takes (``None``: any); ``dynamic_size`` says the
    graph takes any height and width (zoo's own preprocessing still makes the record's size).
    """

    boxes: str | None = _optional()
    box_format: str | None = _optional()
    box_frame: str | None = _optional()
    labels: str | None = _optional()
    scores: str | None = _optional()
    masks: str | None = _optional()
    mask_threshold: float | None = _optional()
    keypoints: str | None = _optional()
    keypoint_scores: str | None = _optional()
    keypoint_names: list[str] | None = _optional()
    skeleton: list[list[int]] | None = _optional()
    logits: str | None = _optional()
    score_threshold: float | None = _optional()
    nms_iou: float | None = _optional()
    max_detections: int | None = _optional()
    threshold: float | None = _optional()
    categories: list[str] | None = _optional()
    background: int | None = _optional()
    batch: int | None = _optional()
    dynamic_size: bool | None = _optional()
    other: dict[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        """The graph outputs this description names."""
        return [n for n in (self.boxes, self.labels, self.scores, self.masks, self.keypoints,
                            self.keypoint_scores, self.logits) if n]

    def category(self, index: int) -> str | None:
        cats = self.categories or []
        return cats[index] if 0 <= index < len(cats) else None


def check(task: str, outputs: TaskOutputs | None, where: str = "record") -> None:
    """``UserError`` when ``task`` and its output description do not fit together."""
    if task not in TASKS:
        raise UserError(f"{where}: unknown task {task!r}: use one of {', '.join(TASKS)}")
    if task == CLASSIFICATION:
        return
    if outputs is None:
        raise UserError(f"{where}: task {task!r} needs task_outputs (which output holds what)")
    needed = {DETECTION: ("boxes", "labels", "scores"), INSTANCE_SEGMENTATION: ("boxes", "labels", "scores", "masks"),
              KEYPOINTS: ("boxes", "labels", "scores", "keypoints"), SEMANTIC_SEGMENTATION: ("logits",)}[task]
    missing = [name for name in needed if not getattr(outputs, name)]
    if missing:
        raise UserError(f"{where}: task {task!r} needs task_outputs.{', task_outputs.'.join(missing)}")
    if task in DETECTING:
        if outputs.box_format not in BOX_FORMATS:
            raise UserError(f"{where}: task_outputs.box_format must be one of {', '.join(BOX_FORMATS)}")
        if outputs.box_frame not in BOX_FRAMES:
            raise UserError(f"{where}: task_outputs.box_frame must be one of {', '.join(BOX_FRAMES)}")


def record_fields(built: Any) -> dict[str, Any]:
    """The record fields of a built model's task: ``task`` and ``task_outputs`` (as JSON data)."""
    from dataclasses import asdict, is_dataclass

    described = built.task_outputs
    if is_dataclass(described) and not isinstance(described, type):
        data = {k: v for k, v in asdict(described).items() if v is not None and k != "other"}
        described = {**data, **described.other}
    return {"task": built.task, **({"task_outputs": described} if described is not None else {})}


def task_of(record: Any) -> str:
    """A record's task (``classification`` for a file or record without one)."""
    return getattr(record, "task", None) or CLASSIFICATION


# -- results ------------------------------------------------------------------------------------
@dataclass
class Detection:
    """One detected object in the original image's pixels."""

    box: tuple[float, float, float, float]
    index: int
    label: str | None
    score: float
    keypoints: list[tuple[float, float, float]] | None = None  # x, y, score per keypoint
    mask: Any = None  # (H, W) bool array in the original image's pixels, instance segmentation only

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"box": [round(float(v), 2) for v in self.box], "label": self.label,
                                "index": self.index, "score": round(float(self.score), 5)}
        if self.keypoints is not None:
            data["keypoints"] = [[round(x, 2), round(y, 2), round(s, 4)] for x, y, s in self.keypoints]
        if self.mask is not None:
            data["mask_pixels"] = int(self.mask.sum())
        return data


@dataclass
class ImageResult:
    """What a model found in one image. ``size`` is the image's (width, height)."""

    size: tuple[int, int]
    task: str
    detections: list[Detection] = field(default_factory=list)
    class_map: Any = None  # (H, W) class index per pixel, semantic segmentation
    categories: list[str] | None = None
    top: list[dict[str, Any]] | None = None  # classification: the best classes

    def shares(self) -> list[dict[str, Any]]:
        """Semantic segmentation: each class present with its share of the pixels, largest first."""
        import numpy as np

        if self.class_map is None:
            return []
        counts = np.bincount(self.class_map.ravel().astype(np.int64))
        total = max(int(self.class_map.size), 1)
        rows = [{"index": int(i), "label": _name(self.categories, int(i)), "share": round(int(c) / total, 5)}
                for i, c in enumerate(counts) if c]
        return sorted(rows, key=lambda r: (-r["share"], r["index"]))

    def to_json(self) -> Any:
        if self.task == SEMANTIC_SEGMENTATION:
            return self.shares()
        if self.task == CLASSIFICATION:
            return self.top or []
        return [d.to_json() for d in self.detections]


def _name(categories: Sequence[str] | None, index: int) -> str | None:
    return categories[index] if categories and 0 <= index < len(categories) else None


# -- decoding -------------------------------------------------------------------------------------
def decode(task: str, outputs: TaskOutputs, names: Sequence[str], values: Sequence[Any], row: int,
           input_hw: tuple[int, int], image_size: tuple[int, int], threshold: float | None) -> ImageResult:
    """Image ``row`` of one run's ``values`` (named ``names``) as an ``ImageResult``.

    ``input_hw`` is the network input's height and width; ``image_size`` the original
    image's (width, height), which boxes, masks and keypoints are scaled to.
    """
    import numpy as np

    by_name = dict(zip(names, values, strict=True))
    width, height = image_size
    categories = list(outputs.categories) if outputs.categories else None
    if task == SEMANTIC_SEGMENTATION:
        logits = np.asarray(by_name[outputs.logits])[row]
        classes = logits.argmax(axis=0).astype(np.uint8 if logits.shape[0] <= 256 else np.int32)
        return ImageResult(size=image_size, task=task, class_map=_resize_map(classes, width, height),
                           categories=categories)
    if task not in DETECTING:
        raise UserError(f"zoo cannot decode task {task!r}")
    cut = outputs.threshold if threshold is None else threshold
    boxes = np.asarray(by_name[outputs.boxes], dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(by_name[outputs.labels]).reshape(-1).astype(np.int64)
    scores = np.asarray(by_name[outputs.scores], dtype=np.float64).reshape(-1)
    keep = np.flatnonzero(scores >= (cut or 0.0))
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    in_h, in_w = input_hw
    sx, sy = (width / in_w, height / in_h) if outputs.box_frame == "input" else (1.0, 1.0)
    scale = np.array([sx, sy, sx, sy])
    masks = np.asarray(by_name[outputs.masks]) if outputs.masks else None
    points = np.asarray(by_name[outputs.keypoints], dtype=np.float64) if outputs.keypoints else None
    point_scores = np.asarray(by_name[outputs.keypoint_scores]) if outputs.keypoint_scores else None
    found = []
    for i in keep:
        box = np.clip(boxes[i] * scale, 0, [width, height, width, height])
        detection = Detection(box=tuple(float(v) for v in box), index=int(labels[i]),
                              label=_name(categories, int(labels[i])), score=float(scores[i]))
        if points is not None:
            visible = point_scores[i] if point_scores is not None else points[i, :, 2]
            detection.keypoints = [(float(x * sx), float(y * sy), float(s))
                                   for (x, y, _v), s in zip(points[i], visible, strict=True)]
        if masks is not None:
            probability = masks[i].reshape(masks.shape[-2], masks.shape[-1])
            detection.mask = _resize_map(probability >= (outputs.mask_threshold or 0.5), width, height)
        found.append(detection)
    return ImageResult(size=image_size, task=task, detections=found, categories=categories)


def _resize_map(values: Any, width: int, height: int) -> Any:
    """A (h, w) map of class ids or booleans resized to (height, width), nearest neighbour."""
    import numpy as np
    from PIL import Image

    if values.shape == (height, width):
        return values
    kind = values.dtype
    small = kind in (np.dtype(bool), np.dtype(np.uint8))
    image = Image.fromarray(values.astype(np.uint8) if small else values.astype(np.int32))
    return np.asarray(image.resize((width, height), Image.Resampling.NEAREST)).astype(kind)


# -- parity: detections, not tensors ----------------------------------------------------------------
def box_iou(a: Any, b: Any) -> Any:
    """Pairwise IoU of two (N, 4) and (M, 4) xyxy box arrays."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def pair_detections(want: Sequence[Any], got: Sequence[Any], iou: float = 0.99,
                    score_atol: float = 1e-3, box_atol: float = 0.05) -> list[tuple[int, int]]:
    """Pair PyTorch's detections (``want``: boxes, labels, scores) with ONNX Runtime's (``got``).

    Each expected detection, best score first, takes the unpaired one of the same label
    whose box overlaps it most (IoU at least ``iou``, or every coordinate within
    ``box_atol`` pixels: boxes clipped flat at the border have no area to overlap) and
    whose score is within ``score_atol``. Returns (want index, got index) pairs.
    """
    import numpy as np

    boxes_w, boxes_g = np.asarray(want[0]).reshape(-1, 4), np.asarray(got[0]).reshape(-1, 4)
    labels_w, labels_g = np.asarray(want[1]).reshape(-1), np.asarray(got[1]).reshape(-1)
    scores_w, scores_g = np.asarray(want[2]).reshape(-1), np.asarray(got[2]).reshape(-1)
    overlaps = box_iou(boxes_w, boxes_g)
    close = np.abs(boxes_w[:, None, :] - boxes_g[None, :, :]).max(axis=2, initial=0.0) <= box_atol
    overlaps = np.where(close, np.maximum(overlaps, 1.0), overlaps)
    taken = np.zeros(len(boxes_g), dtype=bool)
    pairs: list[tuple[int, int]] = []
    for i in np.argsort(-scores_w, kind="stable"):
        fits = (~taken) & (labels_g == labels_w[i]) & (overlaps[i] >= iou) \
            & (np.abs(scores_g - scores_w[i]) <= score_atol)
        if fits.any():
            j = int(np.argmax(np.where(fits, overlaps[i], -1)))
            taken[j] = True
            pairs.append((int(i), j))
    return pairs


def match_detections(want: Sequence[Any], got: Sequence[Any], iou: float = 0.99,
                     score_atol: float = 1e-3, box_atol: float = 0.05) -> dict[str, Any]:
    """``pair_detections`` summarised: counts, the largest box and score differences of the
    pairs, and PyTorch's detections left unpaired. Lists of different lengths are compared
    this way, never as tensors."""
    import numpy as np

    pairs = pair_detections(want, got, iou, score_atol, box_atol)
    boxes_w, boxes_g = np.asarray(want[0]).reshape(-1, 4), np.asarray(got[0]).reshape(-1, 4)
    scores_w, scores_g = np.asarray(want[2]).reshape(-1), np.asarray(got[2]).reshape(-1)
    box_diff = max((float(np.abs(boxes_w[i] - boxes_g[j]).max()) for i, j in pairs), default=0.0)
    score_diff = max((float(abs(scores_w[i] - scores_g[j])) for i, j in pairs), default=0.0)
    return {"expected": int(len(boxes_w)), "got": int(len(boxes_g)), "matched": len(pairs),
            "max_box_diff": box_diff, "max_score_diff": score_diff,
            "unmatched": sorted(set(range(len(boxes_w))) - {i for i, _ in pairs}), "pairs": pairs}


# -- running ------------------------------------------------------------------------------------------
class Predictor:
    """A model run on images, its results decoded per image in original-image pixels.

        predictor = Predictor(zoo.locate("ssdlite320_mobilenet_v3_large"))
        for result in predictor.predict(["street.jpg"], threshold=0.5):
            print([d.to_json() for d in result.detections])

    ``target`` is a ``zoo.runtime.Target`` (``zoo.locate``, ``zoo.info``) or a path to an
    ``.onnx`` file zoo made. Models whose record fixes the batch (R-CNN exports take one
    image) are fed one image at a time; others in batches of ``batch``.
    """

    def __init__(self, target: Any, provider: str = "cpu", options: Any = None, batch: int = 8,
                 session: Any = None) -> None:
        from .runtime import Target, open_session, read_file

        self.target = target if isinstance(target, Target) else read_file(str(target))
        record = self.target.record
        if record is None or record.preprocessing is None:
            raise UserError(f"{self.target.path.name} carries no zoo record: zoo cannot prepare its images")
        self.task = task_of(record)
        self.outputs = getattr(record, "task_outputs", None) or TaskOutputs()
        if self.task != CLASSIFICATION:
            check(self.task, self.outputs, self.target.path.name)
        self.session = session or open_session(self.target.path, provider, options, checked=self.target.verified)
        self.batch = self.outputs.batch or _fixed_batch(self.session.inputs) or max(1, batch)
        if self.task in DETECTING:  # their outputs are one image's detections
            self.batch = 1
        self.labels = record.labels
        self.last: list[Any] = []  # the raw outputs of the last run
        self.runs = 0

    def predict(self, images: Sequence[str | Path], threshold: float | None = None,
                topk: int = 5) -> list[ImageResult]:
        """One ``ImageResult`` per image, in order; detections at or above ``threshold``
        (default: the record's ``task_outputs.threshold``)."""
        import numpy as np

        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise UserError(f"--threshold must be between 0 and 1, not {threshold}")
        from . import images as image_io
        from .runtime import top_k

        pre = self.target.record.preprocessing
        name = self.session.inputs[0]["name"]
        dtype = self.session.inputs[0]["dtype"]
        results: list[ImageResult] = []
        for start in range(0, len(images), self.batch):
            chunk = [image_io.load(path) for path in images[start:start + self.batch]]
            feed = np.stack([image_io.preprocess(image, pre) for image in chunk]).astype(dtype)
            values = self.session.run({name: feed})
            self.last, self.runs = values, self.runs + 1
            if self.task == CLASSIFICATION:
                tops = top_k(values[0], self.labels, topk)
                results += [ImageResult(size=image.size, task=self.task, top=top) for image, top in
                            zip(chunk, tops, strict=True)]
                continue
            names = [o["name"] for o in self.session.outputs]
            input_hw = (int(feed.shape[2]), int(feed.shape[3]))
            for row, image in enumerate(chunk):
                results.append(decode(self.task, self.outputs, names, values, row, input_hw, image.size,
                                      threshold))
        return results


def _fixed_batch(inputs: Sequence[dict[str, Any]]) -> int | None:
    first = inputs[0]["shape"][0] if inputs and inputs[0]["shape"] else None
    return first if isinstance(first, int) else None
