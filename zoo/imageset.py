"""Folders of images: which files count, a deterministic subset, and a fingerprint that names them.

A fingerprint hashes the sorted relative paths and sizes of the chosen files (not their bytes):
cheap enough to compute on every cache lookup, and it changes when files are added, removed,
renamed or rewritten with another size. Used for calibration sets (``--dtype int8``) and
evaluation data sets (``zoo eval``). No heavy imports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
DEFAULT_CALIBRATION_SIZE = 256  # MinMax ranges settle after a few hundred images; more only costs time

T = TypeVar("T")


@dataclass(frozen=True)
class ImageSet:
    """Image files under ``root`` (sorted by relative path) and their fingerprint."""

    root: Path
    files: tuple[Path, ...]
    fingerprint: str

    def describe(self) -> dict[str, Any]:
        return {"root": str(self.root), "images": len(self.files), "fingerprint": self.fingerprint}


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root``, recursively, sorted by relative path; hidden entries skipped."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def spread(items: Sequence[T], count: int | None) -> list[T]:
    """``count`` items evenly spaced over ``items`` (all of them when ``count`` is None or larger),
    so a limit on a class-sorted folder still samples every class."""
    if count is None or count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def fingerprint(root: Path, files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:20]


def directory(path: str | Path, flag: str) -> Path:
    """``path`` as an existing directory, or a one-line ``UserError`` naming ``flag``."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"{flag} {path}: no such directory")
    return root.resolve()


def calibration_set(path: str | Path, size: int | None = None) -> ImageSet:
    """The images ``--dtype int8`` calibrates on: at most ``size`` (default 256) spread over the folder."""
    root = directory(path, "--calibration")
    files = image_files(root)
    if not files:
        raise UserError(f"--calibration {path}: no images found (zoo reads {', '.join(sorted(IMAGE_SUFFIXES))})")
    chosen = spread(files, size or DEFAULT_CALIBRATION_SIZE)
    return ImageSet(root, tuple(chosen), fingerprint(root, chosen))
