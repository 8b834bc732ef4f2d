"""Results drawn on the input images (``zoo run --save DIR``): Pillow and numpy only, never torch.

Detections get a box and a ``label score`` tag in their class's colour; instance masks and
semantic class maps are blended over the image (the background class is left clear);
keypoints are dots joined by their skeleton; a classifier's best classes are written in
the top-left corner. Colours are fixed per class index, so one class has one colour in
every image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import UserError
from .tasks import CLASSIFICATION, SEMANTIC_SEGMENTATION, ImageResult

MASK_ALPHA = 0.5
LINE = 3  # box outline width, pixels


def colour(index: int) -> tuple[int, int, int]:
    """A bright, fixed colour for class ``index`` (a golden-ratio walk round the hue circle)."""
    import colorsys

    hue = (index * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw(image: Any, result: ImageResult, skeleton: Sequence[Sequence[int]] | None = None,
         background: int | None = 0) -> Any:
    """``image`` (a ``PIL.Image``) with ``result`` drawn on it, as a new RGB image."""
    import numpy as np
    from PIL import Image, ImageDraw

    canvas = image.convert("RGB").copy()
    if result.task == SEMANTIC_SEGMENTATION and result.class_map is not None:
        return overlay(canvas, result.class_map, background)
    if result.task == CLASSIFICATION:
        pen = ImageDraw.Draw(canvas)
        lines = [f"{row['label'] or row['index']} {row['score']:.2f}" for row in (result.top or [])[:3]]
        _tag(pen, (2, 2), "\n".join(lines), (255, 255, 255))
        return canvas
    masks = [d for d in result.detections if d.mask is not None]
    if masks:
        pixels = np.asarray(canvas, dtype=np.float32)
        for detection in masks:
            pixels[detection.mask] = (1 - MASK_ALPHA) * pixels[detection.mask] + MASK_ALPHA * np.asarray(
                colour(detection.index), dtype=np.float32)
        canvas = Image.fromarray(pixels.round().astype(np.uint8))
    pen = ImageDraw.Draw(canvas)
    for detection in result.detections:
        x1, y1, x2, y2 = detection.box
        tint = colour(detection.index)
        pen.rectangle((x1, y1, x2, y2), outline=tint, width=LINE)
        _tag(pen, (x1, max(0.0, y1 - 12)), f"{detection.label or detection.index} {detection.score:.2f}", tint)
        if detection.keypoints:
            points = detection.keypoints
            for a, b in skeleton or ():
                if a < len(points) and b < len(points):
                    pen.line((points[a][0], points[a][1], points[b][0], points[b][1]), fill=tint, width=2)
            for x, y, _score in points:
                pen.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(255, 255, 255), outline=tint)
    return canvas


def overlay(image: Any, class_map: Any, background: int | None = 0) -> Any:
    """``class_map`` (H, W class ids at the image's size) blended over ``image``; ``background`` left clear."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    if class_map.shape != pixels.shape[:2]:
        raise UserError(f"a class map of {class_map.shape[1]}x{class_map.shape[0]} does not fit an image of "
                        f"{pixels.shape[1]}x{pixels.shape[0]}")
    present = np.unique(class_map)
    palette = np.zeros((int(present.max()) + 1, 3), dtype=np.float32)
    for index in present:
        palette[index] = colour(int(index))
    blended = (1 - MASK_ALPHA) * pixels + MASK_ALPHA * palette[class_map]
    if background is not None:
        clear = class_map == background
        blended[clear] = pixels[clear]
    return Image.fromarray(blended.round().astype(np.uint8))


def _tag(pen: Any, where: tuple[float, float], text: str, tint: tuple[int, int, int]) -> None:
    """``text`` on a filled box of ``tint`` (black or white letters, whichever reads better)."""
    if not text:
        return
    left, top, right, bottom = pen.multiline_textbbox(where, text)
    pen.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=tint)
    ink = (0, 0, 0) if sum(tint) > 382 else (255, 255, 255)
    pen.multiline_text(where, text, fill=ink)


def save(images: Sequence[str | Path], results: Sequence[ImageResult], directory: str | Path,
         skeleton: Sequence[Sequence[int]] | None = None, background: int | None = 0) -> list[Path]:
    """Each image with its result drawn, as ``DIRECTORY/<image name>.png`` (a second image of the
    same name gets ``-2``, ``-3``...). Returns the files written."""
    from . import images as image_io

    folder = Path(directory).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--save {directory} is not a directory")
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for path, result in zip(images, results, strict=True):
        stem, count = Path(path).stem, 1
        name = f"{stem}.png"
        while name in taken:
            count += 1
            name = f"{stem}-{count}.png"
        taken.add(name)
        target = folder / name
        draw(image_io.load(path), result, skeleton, background).save(target, format="PNG")
        written.append(target)
    return written
