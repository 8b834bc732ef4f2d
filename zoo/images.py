"""Images to input tensors, exactly as the model's source preprocesses them.

The recipe is the record's ``zoo.spec.Preprocessing`` (its defaults are the only defaults):
resize the shorter side to ``resize`` with ``interpolation``, crop ``crop`` at the centre
(``crop_mode`` "squash": resize both sides to ``resize`` instead, then crop), scale to
[0, 1], normalise with ``mean``/``std``, lay out as NCHW. Resizing and cropping follow
torchvision's PIL path step for step (same output size rounding, same crop offsets, same
zero padding for small images), so the result equals ``weights.transforms()(image)``.
Needs Pillow and numpy only. Images are decoded under a pixel cap (``MAX_PIXELS``), and no
resize may make one larger: a decompression bomb or a hostile record is a one-line refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import UserError, one_line
from .files import FileRefused, check_regular
from .spec import Preprocessing

# Pillow's own threshold for its decompression-bomb warning (89.5 megapixels): zoo refuses there.
MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)

# torchvision's InterpolationMode values (and timm's names) -> Pillow filters.
_FILTERS = {
    "nearest": "NEAREST",
    "nearest-exact": "NEAREST",
    "bilinear": "BILINEAR",
    "bicubic": "BICUBIC",
    "box": "BOX",
    "hamming": "HAMMING",
    "lanczos": "LANCZOS",
}
INTERPOLATIONS = tuple(_FILTERS)


def load(path: str | Path) -> Any:
    """An RGB ``PIL.Image`` from ``path``, or a one-line ``UserError``."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    file = Path(path).expanduser()
    try:
        check_regular(file)  # a FIFO would block the decoder forever
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except (FileRefused, OSError) as exc:
        raise UserError(f"cannot read image {path}: {one_line(exc)}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{width}x{height} pixels")
                image.load()
                return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(f"refusing image {path}: {one_line(exc).split(' could be')[0]}, more than zoo "
                        f"decodes ({MAX_PIXELS} pixels); give a smaller image") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"cannot read image {path}: {one_line(exc)}; give a JPEG, PNG or other "
                        "Pillow-readable file") from None


def preprocess(image: Any, preprocessing: Preprocessing) -> Any:
    """One image (``PIL.Image``) as a float32 array of shape (C, H, W)."""
    import numpy as np

    resize, crop = preprocessing.resize, tuple(preprocessing.crop)
    interpolation = _filter(preprocessing.interpolation)
    if preprocessing.crop_mode == "squash":
        size = (resize, resize) if resize else crop
        image = _resize_to(image, size[0], size[1], interpolation)
    elif resize:
        image = _resize_shorter(image, int(resize), interpolation)
    image = _center_crop(image, crop)
    array = np.asarray(image, dtype=np.uint8)
    if preprocessing.channel_order.upper() == "BGR":
        array = array[..., ::-1]
    tensor = array.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    tensor = (tensor - mean) / std
    if preprocessing.layout.upper() == "NHWC":
        return np.ascontiguousarray(tensor)
    return np.ascontiguousarray(tensor.transpose(2, 0, 1))


def batch(paths: Sequence[str | Path], preprocessing: Preprocessing | None) -> Any:
    """Images from ``paths`` stacked into one float32 batch (N, C, H, W)."""
    import numpy as np

    if preprocessing is None:
        raise UserError("this model carries no preprocessing metadata, so zoo cannot prepare images for it; "
                        "give a tensor with --input FILE.npy instead")
    return np.stack([preprocess(load(path), preprocessing) for path in paths])


def _filter(name: str) -> Any:
    from PIL import Image

    try:
        return getattr(Image.Resampling, _FILTERS[str(name).lower()])
    except KeyError:
        raise UserError(f"unknown interpolation {name!r} in the model's preprocessing; "
                        f"zoo knows {', '.join(_FILTERS)}") from None


def _resize_shorter(image: Any, size: int, interpolation: Any) -> Any:
    # torchvision's rule: the shorter side becomes `size`, the longer is truncated.
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return _resize_to(image, new_h, new_w, interpolation)


def _resize_to(image: Any, height: int, width: int, interpolation: Any) -> Any:
    if width * height > MAX_PIXELS:  # a thin image resized by its shorter side grows without bound
        raise UserError(f"refusing to resize an image of {image.size[0]}x{image.size[1]} to {width}x{height}: "
                        f"more than {MAX_PIXELS} pixels; give an image closer to square")
    if image.size == (width, height):
        return image  # torchvision returns the image untouched too
    return image.resize((width, height), interpolation)


def _center_crop(image: Any, crop: Sequence[int]) -> Any:
    crop_h, crop_w = int(crop[0]), int(crop[1])
    width, height = image.size
    if crop_w > width or crop_h > height:
        # Zero padding, split as torchvision splits it (the extra pixel goes right/bottom).
        left, top = max(crop_w - width, 0) // 2, max(crop_h - height, 0) // 2
        canvas = _pad(image, left, top, max(width, crop_w), max(height, crop_h))
        image, width, height = canvas, canvas.size[0], canvas.size[1]
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return image.crop((left, top, left + crop_w, top + crop_h))


def _pad(image: Any, left: int, top: int, width: int, height: int) -> Any:
    from PIL import Image

    if width * height > MAX_PIXELS:
        raise UserError(f"refusing to pad an image to {width}x{height}: more than {MAX_PIXELS} pixels")
    canvas = Image.new(image.mode, (width, height), 0)
    canvas.paste(image, (left, top))
    return canvas
