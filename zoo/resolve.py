"""From what the user typed to a ``ModelSpec``, a ``Recipe`` and a cache key.

Order: a registry alias; else ``source:name``; else every source is asked whether it
claims the bare name (one claimant wins, several is an error listing them). An alias and a
``source:name`` ref take the same path, through the source's cheap ``spec`` method, so
both give one cache key, and a cache hit stays free of torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any

from .errors import AmbiguousNameError, InvalidNameError, RegistryError, UnknownModelError, UserError
from .fetching import refuse_recipe
from .host import PluginHost
from .integrity import PIN_OPTION
from .names import MAX_NAME, check_name, split_ref
from .recipe import Recipe, cache_key
from .registry import Alias, Registry
from .spec import ModelSpec

__all__ = ["MAX_NAME", "Resolved", "check_name", "precheck", "resolve", "split_ref", "suggest"]


@dataclass(frozen=True)
class Resolved:
    """A model name made concrete: what to build, how, and under which key."""

    name: str
    spec: ModelSpec
    recipe: Recipe
    key: str
    alias: Alias | None = None


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
        if not host.source(source_name).path_names:
            check_name(model)


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
            raise RegistryError(f"{alias.origin}: models.{alias.alias}.source: {host.unknown_source(alias.source)}")
        spec = _explicit(host, alias.source, alias.name, weights or alias.weights, alias.options)
        if alias.weights_sha256 and weights is None:  # the pin is for the alias's own weights only
            pinned = {**dict(spec.options), PIN_OPTION: alias.weights_sha256}
            spec = replace(spec, options=tuple(sorted(pinned.items())))
    elif source_name is not None:
        spec = _explicit(host, source_name, model, weights, options)
    else:
        spec = _claim(model, host, registry)
        spec = ModelSpec(spec.source, spec.name, weights or spec.weights, spec.options)
    layers = alias.recipe if alias else {}
    if host.source(spec.source).fetches:  # a ready file is as published: no recipe setting can apply
        refuse_recipe(spec.ref, layers, flags)
    recipe = Recipe.from_layers(layers, flags)
    return Resolved(name=text, spec=spec, recipe=recipe, key=cache_key(spec, recipe), alias=alias)


def _explicit(host: PluginHost, source_name: str, model: str, weights: str | None,
              options: dict[str, Any]) -> ModelSpec:
    """``source:model`` (typed, or behind an alias) through the source's ``spec``: one path, one key."""
    source = host.source(source_name)
    if not source.path_names:
        check_name(model)
    elif not model:
        raise InvalidNameError(f"empty model name after {source_name!r}: write {source_name}:NAME")
    return source.spec(model, weights or source.default_weights, options)


def _flags(options: dict[str, Any]) -> str:
    return ", ".join("--" + k.replace("_", "-") for k in sorted(options))


def _claim(name: str, host: PluginHost, registry: Registry) -> ModelSpec:
    claims: list[ModelSpec] = []
    for source_name in host.sources:
        spec = host.source(source_name).resolve(name)
        if spec is not None:
            claims.append(spec)
    if len(claims) == 1:
        return claims[0]
    if claims:
        refs = ", ".join(sorted(c.ref for c in claims))
        raise AmbiguousNameError(f"{name!r} is ambiguous: several sources have it ({refs}); name one")
    raise UnknownModelError(f"unknown model {name!r}{suggest(name, host, registry)}")


def suggest(name: str, host: PluginHost, registry: Registry) -> str:
    """``"; did you mean: a, tiny:b?"``: aliases and ``source:name`` refs close to ``name``, or a hint.

    Catalogue names are compared bare but shown as refs, so a model its source does not
    claim by bare name is suggested in a spelling that works (never the input itself).
    """
    shown: dict[str, list[str]] = {}  # compared -> what to suggest
    for alias in registry:
        shown.setdefault(alias.alias, []).append(alias.alias)
    for source_name in sorted(host.sources):
        try:
            models = host.source(source_name).models(None)
        except Exception:  # a catalogue that fails must not hide the real error
            continue
        for model in models:
            shown.setdefault(model, []).append(f"{source_name}:{model}")
    close = difflib.get_close_matches(name, list(shown), n=4, cutoff=0.6)
    refs = [ref for candidate in close for ref in shown[candidate] if ref != name][:4]
    if refs:
        return f"; did you mean: {', '.join(refs)}?"
    return "; see `zoo list --available`"
