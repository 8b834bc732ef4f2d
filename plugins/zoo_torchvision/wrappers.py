"""Export wrappers for torchvision's detectors and segmenters (imports torch: load inside ``build`` only)."""

from __future__ import annotations

from typing import Any

import torch


class Detector(torch.nn.Module):
    """One image (a (1, 3, H, W) tensor in [0, 1]) in; its detections as plain tensors out."""

    def __init__(self, model: Any, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

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
