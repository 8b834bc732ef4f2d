"""Export wrappers for torchvision's detectors and segmenters (imports torch: load inside ``build`` only)."""

from __future__ import annotations

import types
from typing import Any

import torch


class Detector(torch.nn.Module):
    """One image (a (1, 3, H, W) tensor in [0, 1]) in; its detections as plain tensors out."""

    def __init__(self, model: Any, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.keys = model, keys
        from torchvision.models.detection.ssd import SSD

        if isinstance(model, SSD):
            model.postprocess_detections = types.MethodType(ssd_postprocess_per_class, model)

    def forward(self, images: Any) -> Any:
        found = self.model(images)[0]
        renamed = {"keypoint_scores": "keypoints_scores"}  # torchvision's key
        return tuple(found[renamed.get(key, key)] for key in self.keys)


class Segmenter(torch.nn.Module):
    """Normalised images in; the ``out`` head's class scores at the input's size out."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Any) -> Any:
        return self.model(images)["out"]


def ssd_postprocess_per_class(self: Any, head_outputs: dict, image_anchors: list, image_shapes: list) -> list[dict]:
    """torchvision's SSD post-processing with one NMS per class instead of ``batched_nms``.

    The same detections (per-class NMS either way), but traced, ``batched_nms`` takes its
    "coordinate trick": one NMS over up to 90 x 300 offset candidates, which ONNX Runtime runs
    in about 210 ms where 90 NMS of at most 300 boxes take a few (docs/benchmarks.md).
    """
    from torchvision.models.detection import _utils as det_utils
    from torchvision.ops import boxes as box_ops

    detections = []
    pred_scores = torch.nn.functional.softmax(head_outputs["cls_logits"], dim=-1)
    per_image = zip(head_outputs["bbox_regression"], pred_scores, image_anchors, image_shapes, strict=True)
    for boxes, scores, anchors, image_shape in per_image:
        boxes = box_ops.clip_boxes_to_image(self.box_coder.decode_single(boxes, anchors), image_shape)
        kept_boxes, kept_scores, kept_labels = [], [], []
        for label in range(1, scores.size(-1)):
            score = scores[:, label]
            above = score > self.score_thresh
            score, box = score[above], boxes[above]
            score, order = score.topk(det_utils._topk_min(score, self.topk_candidates, 0))
            box = box[order]
            keep = box_ops.nms(box, score, self.nms_thresh)
            kept_boxes.append(box[keep])
            kept_scores.append(score[keep])
            kept_labels.append(torch.full_like(score[keep], label, dtype=torch.int64))
        all_scores = torch.cat(kept_scores)
        all_scores, order = all_scores.topk(det_utils._topk_min(all_scores, self.detections_per_img, 0))
        detections.append(
            {"boxes": torch.cat(kept_boxes)[order], "scores": all_scores, "labels": torch.cat(kept_labels)[order]}
        )
    return detections
