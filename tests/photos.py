"""Images for accuracy and int8 tests, and the CLI in this process.

``synthetic`` draws small distinct pictures (no dependency); ``real_photos`` crops and flips the
photographs scikit-image ships (a cat, coffee, an astronaut, a rocket...), for the tests marked
``photos``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "retina", "hubble_deep_field", "brick", "grass",
                  "gravel", "camera", "coins", "moon", "page", "cat", "immunohistochemistry")


def synthetic(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (72, 56)) -> list[Path]:
    """``count`` PNGs of coloured shapes on noise, each different."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = rng.integers(0, size[0] - 10), rng.integers(0, size[1] - 10)
            draw.ellipse((x, y, x + rng.integers(8, 40), y + rng.integers(8, 40)), fill=tuple(rng.integers(0, 255, 3)))
        path = folder / f"img{seed}_{i:03d}.png"
        image.save(path)
        paths.append(path)
    return paths


def real_photos(folder: Path, count: int) -> list[Path]:
    """Up to ``count`` crops and flips of scikit-image's sample photographs."""
    import numpy as np
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            array = np.asarray(getattr(skimage.data, name)())
        except Exception:  # a photo this scikit-image version does not ship
            continue
        if array.dtype != np.uint8:
            array = (array * 255 if array.max() <= 1 else array).astype(np.uint8)
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        photos.append((name, Image.fromarray(array[..., :3])))
    paths = []
    boxes = [(0, 0, 1, 1), (0, 0, 2 / 3, 2 / 3), (1 / 3, 1 / 3, 1, 1), (1 / 6, 1 / 6, 5 / 6, 5 / 6),
             (0, 1 / 3, 2 / 3, 1), (1 / 3, 0, 1, 2 / 3)]
    for k, box in enumerate(boxes):
        for name, image in photos:
            if len(paths) == count:
                return paths
            w, h = image.size
            crop = image.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)))
            if k % 2:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            path = folder / f"{name}_{k}.png"
            crop.save(path, compress_level=1)  # the same pixels, written 3x faster than the default
            paths.append(path)
    return paths


class Result:
    """What a CLI call gave: exit code, stdout, stderr, exactly as a user's terminal shows them."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def returncode(self) -> int:  # as subprocess and helpers.Ran name it, for helpers.one_line_error
        return self.code

    def json(self) -> Any:
        import json

        return json.loads(self.stdout)


def cli(*args: str | Path) -> Result:
    """Run ``zoo ARGS`` in this process through ``zoo.cli.main``, the ``zoo`` command's own entry:
    an error's line and exit code are the ones the CLI prints, not a copy of its message."""
    from helpers import invoke

    ran = invoke(*(str(a) for a in args), check=False)
    return Result(ran.returncode, ran.stdout, ran.stderr)
