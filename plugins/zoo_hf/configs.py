"""Preprocessing and labels from the config files a Hub repo may carry.

``zoo.json`` (a repo made by ``zoo push``) is read by the source itself; this module reads
the others: transformers' ``preprocessor_config.json`` (image processors) and the
``config.json`` of timm (``pretrained_cfg``, ``label_names``) or transformers (``id2label``).
"""

from __future__ import annotations

import math
from typing import Any

from zoo.plugin import Preprocessing

# PIL's resampling codes, as image processors store them.
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def from_image_processor(config: dict[str, Any]) -> Preprocessing | None:
    """transformers' ``preprocessor_config.json``; None when it describes no image input."""
    if "image_mean" not in config and "size" not in config and "crop_size" not in config:
        return None
    height, width, shortest = _size(config.get("size"))
    crop_h, crop_w, _ = _size(config.get("crop_size"))
    if config.get("do_center_crop", crop_h is not None) and crop_h and crop_w:
        crop, mode = (crop_h, crop_w), "center"
        resize = shortest or min(height or crop_h, width or crop_w)
    elif height and width:
        crop, mode, resize = (height, width), "squash", max(height, width)
    elif shortest:
        crop, mode, resize = (shortest, shortest), "center", shortest
    else:
        return None
    normalise = config.get("do_normalize", True)
    mean = tuple(config.get("image_mean") or (0.5, 0.5, 0.5)) if normalise else (0.0, 0.0, 0.0)
    std = tuple(config.get("image_std") or (0.5, 0.5, 0.5)) if normalise else (1.0, 1.0, 1.0)
    return Preprocessing(
        input_size=(len(mean), crop[0], crop[1]),
        resize=int(resize),
        crop=crop,
        crop_mode=mode,
        interpolation=_RESAMPLE.get(config.get("resample", 2), "bilinear"),
        mean=mean,
        std=std,
    )


def _size(value: Any) -> tuple[int | None, int | None, int | None]:
    """``(height, width, shortest_edge)`` from an image processor's size field."""
    if isinstance(value, int):
        return value, value, value
    if isinstance(value, dict):
        return value.get("height"), value.get("width"), value.get("shortest_edge")
    return None, None, None


def from_timm_config(config: dict[str, Any]) -> Preprocessing | None:
    """timm's ``config.json`` (``pretrained_cfg``); None when it is not timm's."""
    cfg = config.get("pretrained_cfg")
    if not isinstance(cfg, dict) or "input_size" not in cfg:
        return None
    channels, height, width = (int(v) for v in cfg["input_size"])
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    mode = cfg.get("crop_mode") or "center"
    return Preprocessing(
        input_size=(channels, height, width),
        # timm's eval transform: resize to floor(size / crop_pct), then crop.
        resize=math.floor(max(height, width) / crop_pct) if mode != "squash" else max(height, width),
        crop=(height, width),
        crop_mode="squash" if mode == "squash" else "center",
        interpolation=cfg.get("interpolation") or "bicubic",
        mean=tuple(cfg.get("mean") or (0.485, 0.456, 0.406)),
        std=tuple(cfg.get("std") or (0.229, 0.224, 0.225)),
    )


def labels_from_config(config: dict[str, Any]) -> list[str] | None:
    """timm's ``label_names`` or transformers' ``id2label``, in class-index order."""
    names = config.get("label_names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return list(names)
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            ordered = sorted((int(k), str(v)) for k, v in id2label.items())
        except ValueError:
            return None
        if [i for i, _ in ordered] == list(range(len(ordered))):
            return [name for _, name in ordered]
    return None


def for_input(shape: list[Any]) -> Preprocessing:
    """ImageNet defaults fitted to an NCHW input's static spatial size, when nothing better is known."""
    default = Preprocessing()
    if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[2:]) and shape[2] == shape[3]:
        return default.resized_to(int(shape[2]))
    return default
