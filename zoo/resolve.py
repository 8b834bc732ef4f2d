"""From what the user typed to a ``ModelSpec``, a ``Recipe`` and a cache key.

Order: a registry alias; else ``source:name``; else every source is asked whether it
claims the bare name (one claimant wins, several is an error listing them). Aliases and
``source:name`` refs never call into a source beyond its cheap optional ``spec`` method,
so a cache hit stays free of torch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from .errors import AmbiguousNameError, InvalidNameError, RegistryError, UnknownModelError, UserError
from .host import PluginHost
from .integrity import PIN_OPTION
from .recipe import Recipe, cache_key
from .registry import Alias, Registry
from .spec import ModelSpec

MAX_NAME = 200
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Resolved:
    """A model name made concrete: what to build, how, and under which key."""

    name: str
    spec: ModelSpec
    recipe: Recipe
    key: str
    alias: Alias | None = None


def check_name(name: str, what: str = "model name") -> str:
    """Refuse names that could act as paths before they reach any filesystem call."""
    if not name:
        raise InvalidNameError(f"empty {what}: give a model name, e.g. `zoo pull resnet18`")
    shown = name if len(name) <= 60 else name[:57] + "..."
    if "\x00" in name:
        raise InvalidNameError(f"invalid {what} {shown!r}: it contains a NUL character")
    if len(name) > MAX_NAME:
        raise InvalidNameError(f"invalid {what} {shown!r}: longer than {MAX_NAME} characters")
    if ".." in name or not _SAFE_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid {what} {shown!r}: use letters, digits and . _ + - only "
            "(no path separators or '..'; for a checkpoint file use local:PATH)"
        )
    return name


def precheck(text: str, host: PluginHost | None = None) -> None:
    """The name checks that need no registry and no file: run before anything is read.

    With the plugin host, ``source:name`` refs are checked too (unless the source takes
    paths as names, as ``local:`` does).
    """
    if "\x00" in text or len(text) > MAX_NAME * 4:
        check_name(text)
    source_name, model = split_ref(text)
    if source_name is None:
        check_name(model)
    elif host is not None and source_name in host.sources:
        if not getattr(host.sources[source_name], "path_names", False):
            check_name(model)


def split_ref(text: str) -> tuple[str | None, str]:
    """``"timm:resnet50"`` -> ``("timm", "resnet50")``; a bare name -> ``(None, name)``."""
    source, sep, name = text.partition(":")
    # "C:\\x" is a drive path, not a source called "C".
    if sep and _SOURCE_NAME.fullmatch(source) and len(source) > 1:
        return source, name
    return None, text


def resolve(
    text: str,
    host: PluginHost,
    registry: Registry,
    weights: str | None = None,
    recipe_flags: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> Resolved:
    """Resolve a user's model name with the recipe flags they gave (``None`` = unset).

    ``options`` are source settings given on the command line (``--arch`` for ``local:``);
    only an explicit ``source:name`` ref takes them, through the source's ``spec`` method.
    """
    flags = recipe_flags or {}
    options = {k: v for k, v in (options or {}).items() if v is not None}
    precheck(text)
    source_name, model = split_ref(text)
    if options and source_name is None:
        raise UserError(f"{_flags(options)}: only for SOURCE:NAME refs that take it, such as local:PATH, "
                        f"not for {text!r}")
    alias = None
    if source_name is None:
        check_name(model)
        alias = registry.get(model)
    if alias is not None:
        if alias.source not in host.sources:
            known = ", ".join(sorted(host.sources)) or "none"
            raise RegistryError(f"{alias.origin}: models.{alias.alias}.source: unknown source {alias.source!r} "
                                f"(known sources: {known}; see `zoo plugins`)")
        # The pin belongs to the alias's own weights, not to weights the user chose instead.
        pin = {PIN_OPTION: alias.weights_sha256} if alias.weights_sha256 and weights is None else {}
        spec = ModelSpec(
            source=alias.source,
            name=alias.name,
            weights=weights or alias.weights or _default_weights(host, alias.source),
            options=tuple(sorted(alias.options.items())),
        )
        source = host.sources[alias.source]
        if hasattr(source, "spec"):  # as for SOURCE:NAME (local: the file's sha256 is its weights)
            spec = source.spec(spec.name, spec.weights, dict(spec.options))
        spec = ModelSpec(spec.source, spec.name, spec.weights, tuple(sorted({**dict(spec.options), **pin}.items())))
    elif source_name is not None:
        source = host.source(source_name)
        if not getattr(source, "path_names", False):
            check_name(model)
        elif not model:
            raise InvalidNameError(f"empty model name after {source_name!r}: write {source_name}:NAME")
        spec = ModelSpec(source_name, model, weights or _default_weights(host, source_name))
        if hasattr(source, "spec"):
            spec = source.spec(spec.name, spec.weights, options)
        elif options:
            raise UserError(f"source {source_name!r} takes no {_flags(options)}")
    else:
        spec = _claim(model, host, registry)
        spec = ModelSpec(spec.source, spec.name, weights or spec.weights, spec.options)
    recipe = Recipe.from_layers(alias.recipe if alias else {}, flags)
    return Resolved(name=text, spec=spec, recipe=recipe, key=cache_key(spec, recipe), alias=alias)


def _flags(options: dict[str, Any]) -> str:
    return ", ".join("--" + k.replace("_", "-") for k in sorted(options))


def _default_weights(host: PluginHost, source_name: str) -> str:
    return getattr(host.source(source_name), "default_weights", "default")


def _claim(name: str, host: PluginHost, registry: Registry) -> ModelSpec:
    claims: list[ModelSpec] = []
    for source in host.sources.values():
        spec = source.resolve(name)
        if spec is not None:
            claims.append(spec)
    if len(claims) == 1:
        return claims[0]
    if claims:
        refs = ", ".join(sorted(c.ref for c in claims))
        raise AmbiguousNameError(f"{name!r} is ambiguous: several sources have it ({refs}); name one")
    raise UnknownModelError(f"unknown model {name!r}{suggest(name, host, registry)}")


def suggest(name: str, host: PluginHost, registry: Registry, source: str | None = None) -> str:
    """``"; did you mean: a, b?"`` from aliases and catalogues, or a hint to list them."""
    candidates = [] if source else [a.alias for a in registry]
    for source_name, src in host.sources.items():
        if source and source_name != source:
            continue
        try:
            candidates.extend(src.models(None))
        except Exception:  # a catalogue that fails must not hide the real error
            continue
    close = difflib.get_close_matches(name, list(dict.fromkeys(candidates)), n=4, cutoff=0.6)
    if close:
        return f"; did you mean: {', '.join(close)}?"
    return "; see `zoo list --available`"
