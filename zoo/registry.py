"""Short names (aliases) for models, from layered TOML files.

Layers, later winning per alias: the shipped ``registry.toml``, the user's file in the
config dir (``zoo.config_dir()/registry.toml``), then ``ZOO_REGISTRY`` / ``--registry``.
Each alias is a table under ``[models]``::

    [models.resnet50]
    source = "torchvision"
    name = "resnet50"
    weights = "IMAGENET1K_V2"
    description = "ResNet-50, ImageNet-1k top-1 80.9%"
    # optional recipe defaults: opset, batch, dynamic_batch, size, dtype, exporter,
    # reparameterize; options: a table of source-specific settings;
    # weights_sha256: pin the weights file (a mismatch aborts before the file is loaded).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .env import config_dir
from .errors import RegistryError
from .files import FileRefused, MiB, read_capped
from .integrity import SHA256

SHIPPED = Path(__file__).resolve().parent / "registry.toml"
MAX_REGISTRY_BYTES = 4 * MiB  # thousands of aliases; /dev/zero or a runaway file is refused

_RECIPE_TYPES: dict[str, type | tuple[type, ...]] = {
    "opset": int,
    "batch": int,
    "dynamic_batch": bool,
    "size": int,
    "dtype": str,
    "exporter": str,
    "reparameterize": bool,
}
_ALIAS_TYPES: dict[str, type | tuple[type, ...]] = {
    "source": str,
    "name": str,
    "weights": str,
    "description": str,
    "license": str,
    "options": dict,
    "weights_sha256": str,
    **_RECIPE_TYPES,
}


@dataclass(frozen=True)
class Alias:
    alias: str
    source: str
    name: str
    weights: str | None = None
    description: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    weights_sha256: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.source}:{self.name}"


def _check_alias(path: Path, alias: str, table: Any) -> Alias:
    where = f"{path}: models.{alias}"
    if not isinstance(table, dict):
        raise RegistryError(f"{where}: expected a table, got {type(table).__name__}")
    for key, value in table.items():
        expected = _ALIAS_TYPES.get(key)
        if expected is None:
            known = ", ".join(sorted(_ALIAS_TYPES))
            raise RegistryError(f"{where}.{key}: unknown key (known keys: {known})")
        # bool is an int in Python; keep the two apart.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise RegistryError(
                f"{where}.{key}: expected {getattr(expected, '__name__', expected)}, "
                f"got {type(value).__name__} {value!r}"
            )
    for key in ("source", "name"):
        if key not in table:
            raise RegistryError(f"{where}: missing required key {key!r}")
    pin = table.get("weights_sha256")
    if pin is not None and not SHA256.fullmatch(pin.lower()):
        raise RegistryError(f"{where}.weights_sha256: expected 64 hex digits, got {pin!r}")
    return Alias(
        alias=alias,
        source=table["source"],
        name=table["name"],
        weights=table.get("weights"),
        description=table.get("description", ""),
        recipe={k: v for k, v in table.items() if k in _RECIPE_TYPES},
        options=dict(table.get("options", {})),
        origin=str(path),
        weights_sha256=pin.lower() if pin else None,
    )


def load_file(path: Path) -> dict[str, Alias]:
    """Parse one registry file; every problem is a ``RegistryError`` naming file and key."""
    try:
        data = tomllib.loads(read_capped(path, MAX_REGISTRY_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found") from None
    except FileRefused as exc:
        raise RegistryError(f"cannot read registry file: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read registry file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise RegistryError(f"{path}: nested too deeply to be a registry") from None
    unknown = set(data) - {"models"}
    if unknown:
        raise RegistryError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (expected [models.NAME] tables)")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise RegistryError(f"{path}: models: expected tables [models.NAME]")
    return {alias: _check_alias(path, alias, table) for alias, table in models.items()}


def layers(extra: str | Path | None = None) -> list[Path]:
    """Registry files in order of precedence (lowest first) that exist or were asked for."""
    paths = [SHIPPED]
    user = config_dir() / "registry.toml"
    if user.is_file():
        paths.append(user)
    for asked in (os.environ.get("ZOO_REGISTRY"), extra):
        if asked:
            paths.append(Path(asked).expanduser())
    return paths


class Registry:
    """All aliases from all layers."""

    def __init__(self, aliases: dict[str, Alias]) -> None:
        self.aliases = aliases

    @classmethod
    def load(cls, extra: str | Path | None = None) -> Registry:
        aliases: dict[str, Alias] = {}
        for path in layers(extra):
            aliases.update(load_file(path))
        return cls(aliases)

    def get(self, alias: str) -> Alias | None:
        return self.aliases.get(alias)

    def __iter__(self):
        return iter(sorted(self.aliases.values(), key=lambda a: a.alias))
