"""How a model is exported, and the cache key that names the result.

The key is a hash of declarative data only (source, name, weights identity, options,
recipe), so finding a cached model never needs torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import UserError
from .spec import ModelSpec

EXPORTERS = ("auto", "dynamo", "torchscript")
DTYPES = ("float32", "float16", "int8")
# A cache key (``cache_key``): what names an entry in the store and on a remote.
KEY = re.compile(r"[0-9a-f]{20}")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".pth.tar", ".npz")


@dataclass(frozen=True)
class Recipe:
    """Export settings. ``size=None`` keeps the model's own input size."""

    opset: int = 18
    batch: int = 1
    dynamic_batch: bool = True
    size: int | None = None
    dtype: str = "float32"
    exporter: str = "auto"
    reparameterize: bool = True
    input_names: tuple[str, ...] | None = None  # None: "input"
    output_names: tuple[str, ...] | None = None  # None: the source's ("logits")
    # int8 only: a directory of calibration images, and how many of them to use (see zoo.quantize).
    calibration: str | None = None
    calibration_size: int | None = None

    def __post_init__(self) -> None:
        for field_name in ("input_names", "output_names"):
            object.__setattr__(self, field_name, _names(getattr(self, field_name), field_name))
        if self.exporter not in EXPORTERS:
            raise UserError(f"unknown exporter {self.exporter!r}: use one of {', '.join(EXPORTERS)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if self.batch < 1:
            raise UserError(f"--batch must be at least 1, not {self.batch}")
        if self.size is not None and not 16 <= self.size <= 4096:
            raise UserError(f"--size must be between 16 and 4096, not {self.size}")
        if not 7 <= self.opset <= 30:
            raise UserError(f"--opset must be between 7 and 30, not {self.opset}")
        if (self.calibration is not None or self.calibration_size is not None) and self.dtype != "int8":
            raise UserError("--calibration and --calibration-size are for --dtype int8 only")
        if self.calibration_size is not None and self.calibration_size < 1:
            raise UserError(f"--calibration-size must be at least 1, not {self.calibration_size}")

    @classmethod
    def from_layers(cls, *layers: dict[str, Any]) -> Recipe:
        """Merge settings, later layers winning; ``None`` values mean "not set"."""
        names = {f.name for f in fields(cls)}
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update({k: v for k, v in layer.items() if k in names and v is not None})
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        """As JSON data (names as lists). Fields added after the first release appear only when
        set, so the records and cache keys of other recipes stay what they were."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {k: v for k, v in data.items() if k not in LATER_FIELDS or v is not None}


LATER_FIELDS = ("input_names", "output_names", "calibration", "calibration_size")


def _names(value: Any, field_name: str) -> tuple[str, ...] | None:
    """``"a,b"`` or ``["a", "b"]`` -> ``("a", "b")``: graph input or output names."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(item).strip() for item in items)
    flag = "--" + field_name.replace("_", "-")
    if not names or any(not n or len(n) > 128 or not n.isprintable() for n in names):
        raise UserError(f"{flag} takes comma-separated names of 1 to 128 printable characters, not {value!r}")
    if len(set(names)) != len(names):
        raise UserError(f"{flag} names {', '.join(names)} are not unique")
    return names


def looks_like_path(weights: str) -> bool:
    return (
        "/" in weights
        or "\\" in weights
        or weights.startswith("~")
        or weights.lower().endswith(CHECKPOINT_SUFFIXES)
    )


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(weights: str) -> str:
    """What the cache key records for ``weights``: a local file counts by its content."""
    if looks_like_path(weights) or Path(weights).expanduser().is_file():
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"weights file not found: {weights}")
        try:
            return "sha256:" + file_sha256(path)
        except OSError as exc:  # /proc/self/mem and the like: a regular file by stat that cannot be read
            raise UserError(f"cannot read weights file {weights}: {exc.strerror or type(exc).__name__}; "
                            "give a readable checkpoint file") from None
    return weights


def cache_key(spec: ModelSpec, recipe: Recipe) -> str:
    """A stable 20-hex-digit key for this model, weights and recipe."""
    payload = {
        "source": spec.source,
        "name": spec.name,
        "weights": weights_identity(spec.weights),
        "options": [list(item) for item in spec.options],
        "recipe": recipe.to_dict(),
    }
    if recipe.calibration is not None:  # the images count by their names and sizes, not their path
        from .imageset import calibration_set

        payload["recipe"]["calibration"] = calibration_set(recipe.calibration, recipe.calibration_size).fingerprint
    if recipe.dtype == "int8":
        from .cpu import EXACT, detect

        if detect().kind not in EXACT:  # another file (reduce_range): its own key; VNNI/AMX keys stay as they were
            payload["int8_scheme"] = "reduce_range"
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
