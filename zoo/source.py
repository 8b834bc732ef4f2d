"""The interface a source plugin implements.

Sources are duck-typed: subclassing ``Source`` is optional but documents the contract and
gives defaults. Everything but ``build`` must stay cheap: no torch import.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .spec import BuiltModel, ModelSpec

if TYPE_CHECKING:
    from .recipe import Recipe


class Source:
    """Base class for model sources.

    ``name``: the prefix users type (``torchvision`` in ``torchvision:resnet50``).
    ``path_names``: set True when model names are paths or contain ``/`` (local files, hub
    repos); otherwise the host refuses such names before calling the source.
    ``version``: reported in ``zoo plugins`` and stored in each entry's provenance.
    ``example``: a small model this source builds quickly, exercised by
    ``zoo plugins check`` (``zoo.testing.check_source``) when no model is given.

    Optional method ``spec(name, weights, options) -> ModelSpec``: when a source defines
    it, the host calls it for explicit ``source:name`` refs instead of building the spec
    itself, passing the command line's source options (``arch``, ``num_classes``,
    ``strict``...; only those given). It must stay cheap (no torch) because the cache key
    is made from its result: put whatever identifies the model into the spec, e.g. a
    file's sha256 as ``weights`` and the options into ``options``. Raise ``UserError`` for
    options the source does not take. Sources without it take no options.

    Optional method ``fetch(spec, recipe, directory, progress) -> dict``: for sources of
    ready ONNX files (a hub, a registry of exported models). When a source defines it, the
    host calls it instead of ``build`` + the export pipeline: it writes ``model.onnx`` (and
    any external-data files) into ``directory`` and returns the metadata parts it knows
    (``weights``, ``inputs``, ``outputs``, ``preprocessing``, ``labels``, ``validation``,
    ``stats``, ``license``...); the host adds identity, recipe, toolchain and times.
    ``progress`` is None when nothing may be shown (``--json``, no terminal). It must not
    import torch.
    """

    name: str = ""
    version: str | None = None
    path_names: bool = False
    example: str | None = None
    default_weights: str = "default"

    def models(self, pattern: str | None = None) -> Iterable[str]:
        """Names this source can build, filtered by a shell-style ``pattern``."""
        return []

    def resolve(self, name: str) -> ModelSpec | None:
        """Claim ``name``: return a spec when this source can build it, else None.

        Called for ``source:name`` refs and for bare names (every source is asked; more
        than one claimant is an ambiguity error). Raise ``UnknownModelError`` with
        suggestions when the name is for this source but unknown.
        """
        return None

    def build(self, spec: ModelSpec, recipe: Recipe) -> BuiltModel:
        """Build the model with ``spec.weights`` ("none", "default", a tag or a path).

        Raise ``WeightsUnavailableError`` when weights cannot be fetched, naming the URL
        or hub id and suggesting ``--weights none`` or ``--weights PATH``.
        """
        raise NotImplementedError


def match(names: Iterable[str], pattern: str | None) -> list[str]:
    """Filter ``names`` by a shell-style pattern (case-insensitive), as ``timm.list_models``."""
    if not pattern:
        return sorted(names)
    pattern = pattern.lower()
    return sorted(n for n in names if fnmatch.fnmatchcase(n.lower(), pattern))
