"""torchvision's detection and semantic segmentation models, made exportable.

Each model is wrapped so the graph takes one batch tensor of images and returns plain
tensors: detectors ``boxes``, ``labels``, ``scores`` (plus ``masks`` for Mask R-CNN,
``keypoints`` and ``keypoint_scores`` for Keypoint R-CNN) of the one image they take;
segmenters the ``logits`` of the ``out`` head (the auxiliary head is dropped).

Exporters: the TorchScript exporter at batch 1 for every detector, as torchvision's own
ONNX tests export them (torch.export's dynamo exporter fails on several detectors: the
data-dependent shapes of NMS and the RoI heads); the segmenters export with either, and
TorchScript first since it is about 5x faster (LR-ASPP: 2.5 s against 12.6 s on two cores)
and both pass parity. Segmenters take any batch size and any input height and width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.plugin import (
    BuiltModel,
    ModelSpec,
    Preprocessing,
    Recipe,
    TaskOutputs,
    check_weights_file,
    file_sha256,
    load_into,
    load_state_dict,
    looks_like_path,
    pinned_sha256,
)

DETECTORS = {
    # name: (task, input side: the model's own resize target)
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("detection", 320),
    "fasterrcnn_mobilenet_v3_large_fpn": ("detection", 800),
    "fasterrcnn_resnet50_fpn": ("detection", 800),
    "fasterrcnn_resnet50_fpn_v2": ("detection", 800),
    "retinanet_resnet50_fpn": ("detection", 800),
    "retinanet_resnet50_fpn_v2": ("detection", 800),
    "fcos_resnet50_fpn": ("detection", 800),
    "ssd300_vgg16": ("detection", 300),
    "ssdlite320_mobilenet_v3_large": ("detection", 320),
    "maskrcnn_resnet50_fpn": ("instance-segmentation", 800),
    "maskrcnn_resnet50_fpn_v2": ("instance-segmentation", 800),
    "keypointrcnn_resnet50_fpn": ("keypoints", 800),
}
SEGMENTERS = ("deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "deeplabv3_resnet101", "fcn_resnet50",
              "fcn_resnet101", "lraspp_mobilenet_v3_large")
SEGMENTATION_SIDE = 520  # torchvision's SemanticSegmentation transform resizes to 520
DETECTOR_EXPORTERS = ("torchscript",)
DETECTOR_REASON = ("torchvision's detectors export with the TorchScript exporter at batch 1, as torchvision's "
                   "ONNX tests do; the dynamo exporter fails on several of them (NMS and RoI heads)")
SEGMENTER_EXPORTERS = ("torchscript", "dynamo")
SEGMENTER_REASON = "TorchScript exports torchvision's segmenters about 5x faster than dynamo; both pass parity"
RUN_THRESHOLD = 0.5  # torchvision's detection demos draw detections above 0.5


def task(name: str) -> str | None:
    """The task of a torchvision detection or segmentation model, None for others."""
    if name in DETECTORS:
        return DETECTORS[name][0]
    return "semantic-segmentation" if name in SEGMENTERS else None


def names() -> list[str]:
    return [*DETECTORS, *SEGMENTERS]


def build(spec: ModelSpec, recipe: Recipe, weights_enum: Any, fetch: Any) -> BuiltModel:
    """``spec`` built and wrapped for export. ``weights_enum(enum, tag)`` and ``fetch(weights)``
    are the classification source's helpers (one way to name and download weights)."""
    import torchvision
    from torchvision.models import get_model, get_model_weights

    from .wrappers import Detector, Segmenter

    kind = task(spec.name)
    side = recipe.size or (DETECTORS[spec.name][1] if spec.name in DETECTORS else SEGMENTATION_SIDE)
    settings: dict[str, Any] = {"weights_backbone": None}
    if spec.name in DETECTORS and not spec.name.startswith("ssd"):
        # The model's own transform resizes to min_size/max_size: at the input's side it keeps the input as it is.
        settings.update(min_size=side, max_size=side)
    enum = get_model_weights(spec.name)
    tag = spec.weights
    weights_info: dict[str, Any] = {}
    if tag.lower() == "none" or looks_like_path(tag):
        reference = enum.DEFAULT  # its categories describe the outputs
        model = get_model(spec.name, weights=None, **settings)
        if tag.lower() != "none":
            path = Path(tag).expanduser()
            weights_info = {"file": str(path.resolve()), "sha256": file_sha256(path),
                            **load_into(model, load_state_dict(tag), tag, strict=bool(spec.option("strict", True)),
                                        hint="give a state_dict of this architecture, or --no-strict")}
    else:
        reference = weights_enum(enum, tag)
        file = fetch(reference)
        check_weights_file(file, pinned_sha256(spec))
        model = get_model(spec.name, weights=reference, **settings)
        weights_info = {"resolved": reference.name, "url": reference.url, "file": str(file),
                        "sha256": file_sha256(file)}
    meta = reference.meta
    categories = list(meta.get("categories") or []) or None
    stats = {"gflops": meta.get("_ops"), "file_size_mb": meta.get("_file_size")}
    if tag.lower() != "none" and not looks_like_path(tag):
        stats["accuracy"] = meta.get("_metrics")
    common = dict(weights=weights_info, stats={k: v for k, v in stats.items() if v is not None},
                  license="BSD-3-Clause (torchvision code); see the weights' upstream terms",
                  source_version=torchvision.__version__)
    if kind == "semantic-segmentation":
        model.aux_classifier = None  # training-only head: the graph computes `out` alone
        return BuiltModel(
            module=Segmenter(model).eval(),
            preprocessing=Preprocessing(input_size=(3, side, side), resize=side, crop=(side, side),
                                        crop_mode="squash", interpolation="bilinear"),
            output_names=("logits",), task=kind,
            task_outputs=TaskOutputs(logits="logits", categories=categories, background=0, dynamic_size=True),
            exporters=SEGMENTER_EXPORTERS, exporter_reason=SEGMENTER_REASON, dynamic_size=True, **common)
    heads = getattr(model, "roi_heads", model)  # R-CNNs keep their thresholds in the RoI heads
    outputs = ["boxes", "labels", "scores"]
    described = TaskOutputs(boxes="boxes", box_format="xyxy", box_frame="input", labels="labels", scores="scores",
                            score_threshold=float(heads.score_thresh), nms_iou=float(heads.nms_thresh),
                            max_detections=int(heads.detections_per_img), threshold=RUN_THRESHOLD,
                            categories=categories, background=0, batch=1)
    if kind == "instance-segmentation":
        outputs.append("masks")
        described.masks, described.mask_threshold = "masks", 0.5
    if kind == "keypoints":
        outputs += ["keypoints", "keypoint_scores"]
        from zoo.plugin import COCO_KEYPOINTS, COCO_SKELETON

        described.keypoints, described.keypoint_scores = "keypoints", "keypoint_scores"
        described.keypoint_names = list(meta.get("keypoint_names") or COCO_KEYPOINTS)
        described.skeleton = [list(pair) for pair in COCO_SKELETON]
    return BuiltModel(
        module=Detector(model, tuple(outputs)).eval(),
        preprocessing=Preprocessing(input_size=(3, side, side), resize=side, crop=(side, side), crop_mode="squash",
                                    interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        output_names=tuple(outputs), task=kind, task_outputs=described,
        exporters=DETECTOR_EXPORTERS, exporter_reason=DETECTOR_REASON, fixed_batch=1, **common)
