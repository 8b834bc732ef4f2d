"""zoo source plugin: ready ONNX files from a company mirror's catalogue (a fetch-only source).

The mirror is a folder or a URL (``ZOO_MIRROR``) holding ``catalogue.json``::

    {"models": {"colours": {"file": "colours.onnx", "sha256": "<hex>", "description": "...",
                            "labels": ["red", "green", "blue"], "license": "MIT", "version": "3",
                            "preprocessing": {"input_size": [3, 32, 32], "resize": 32, "crop": [32, 32]}}}}

``zoo pull mirror:colours`` (or ``colours``) fetches the file; zoo checks it against the
sha256, reads its opset and shapes, and checks the labels and input size against it. The
catalogue's sha256 is part of the cache key, so a file replaced on the mirror is a new entry,
never a stale hit. Imports only ``zoo.plugin`` and the standard library.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from zoo.plugin import (
    EnvironmentProblem,
    FetchedModel,
    ModelSpec,
    Preprocessing,
    Progress,
    Recipe,
    Source,
    UnknownModelError,
    UserError,
    WeightsUnavailableError,
    check_name,
    hookimpl,
    match,
    offline,
    refuse_options,
)

SETTING = "ZOO_MIRROR"
CATALOGUE = "catalogue.json"
MAX_FILE = 2 << 30  # what one model file may weigh


def location() -> str | None:
    """The configured mirror: a folder, or a file://, http:// or https:// URL."""
    return os.environ.get(SETTING) or None


def read(relative: str, limit: int = MAX_FILE) -> bytes:
    """A file of the mirror, by its path relative to the mirror's root."""
    root = location()
    if root is None:
        raise EnvironmentProblem(f"source mirror is not configured: set {SETTING} to the mirror's folder or URL")
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or ".." in parts or "\\" in relative:
        raise UserError(f"the mirror's catalogue names {relative!r}: not a file inside the mirror")
    if "://" not in root:
        path = Path(root).expanduser() / relative
        if path.stat().st_size > limit:
            raise UserError(f"{path} is larger than {limit} bytes")
        return path.read_bytes()
    url = urllib.parse.urljoin(root.rstrip("/") + "/", relative)
    if offline() and not url.startswith("file:"):
        raise WeightsUnavailableError(f"{url}: ZOO_OFFLINE is set; unset it to reach the mirror")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read(limit + 1)
    except OSError as exc:
        raise WeightsUnavailableError(f"cannot read {url}: {exc}") from None
    if len(data) > limit:
        raise UserError(f"{url} is larger than {limit} bytes")
    return data


_catalogues: dict[str, dict[str, Any]] = {}


def catalogue() -> dict[str, Any]:
    """``{name: entry}`` from the mirror's catalogue.json, read once per process."""
    root = location()
    if root not in _catalogues:
        try:
            models = json.loads(read(CATALOGUE, limit=64 << 20))["models"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EnvironmentProblem(f"cannot read the mirror's {CATALOGUE} ({root}): {exc}") from None
        _catalogues[root] = {name: entry for name, entry in models.items() if isinstance(entry, dict)}
    return _catalogues[root]


class MirrorSource(Source):
    name = "mirror"  # users type mirror:colours

    def models(self, pattern: str | None = None) -> list[str]:
        # Unconfigured: silent when every source is listed, an error when asked for by name.
        if location() is None and not getattr(pattern, "named", False):
            return []
        return match(catalogue(), pattern)

    def description(self, name: str) -> str | None:
        return catalogue().get(name, {}).get("description") if location() else None

    def resolve(self, name: str) -> ModelSpec | None:
        if location() is None or name not in catalogue():
            return None
        return self.spec(name, self.default_weights, {})

    def spec(self, name: str, weights: str, options: Mapping[str, Any]) -> ModelSpec:
        """Pin the catalogue's sha256 into the key: a file replaced on the mirror is a new entry."""
        check_name(name)
        refuse_options(self.name, options)
        if weights != self.default_weights:
            raise UserError(f"mirror:{name} is a ready ONNX file: --weights cannot apply")
        return ModelSpec(self.name, name, weights, (("sha256", self._entry(name)["sha256"]),))

    def fetch(self, spec: ModelSpec, recipe: Recipe, directory: Path,
              progress: Progress | None = None) -> FetchedModel:
        entry = self._entry(spec.name)
        if progress:
            progress(f"downloading {entry['file']} from {location()}")
        pre = entry.get("preprocessing")
        return FetchedModel(
            data=read(entry["file"]),
            sha256=entry["sha256"],  # zoo refuses a file with another hash
            preprocessing=Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in pre.items()})
            if pre else None,
            labels=entry.get("labels"),
            weights={"url": f"{location()}/{entry['file']}", "version": entry.get("version")},
            description=entry.get("description"),
            license=entry.get("license"),
        )

    def _entry(self, name: str) -> dict[str, Any]:
        models = catalogue()
        if name not in models:
            raise UnknownModelError(f"the mirror has no model {name!r}; it has {', '.join(sorted(models))}")
        return models[name]


@hookimpl
def zoo_register_sources(register):
    register(MirrorSource())
