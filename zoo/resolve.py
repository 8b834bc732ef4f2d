"""From what the user typed to a ``ModelSpec``, a ``Recipe`` and a cache key.

Order: a registry alias; else ``source:name``; else every source is asked whether it
claims the bare name (one claimant wins, several is an error listing them). An alias, a
``source:name`` ref and a claimed bare name all take the same path, through the source's
cheap ``spec`` method, so all three give one cache key, and a cache hit stays free of torch.

A bare name already stored is asked first of the sources that made its entries
(``prefer``): when one of them claims it, the others are not asked, so a stored plugin
model's name is found without importing any source that needs torch to answer. A source
whose ``resolve`` raises is skipped with a ``ZooWarning`` naming its plugin and distribution.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from .errors import (
    AmbiguousNameError,
    InvalidNameError,
    PluginFailure,
    RegistryError,
    UnknownModelError,
    UserError,
    ZooError,
    ZooWarning,
    one_line,
)
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
    """The name checks that need no registry and no file: run once, before anything is read.

    A bare name is checked; with the plugin host, the model of a ``source:name`` ref is
    too (unless the source takes paths as names, as ``local:`` does).
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
    prefer: Iterable[str] | Callable[[], Iterable[str]] = (),
    checked: bool = False,
) -> Resolved:
    """Resolve a user's model name with the recipe flags they gave (``None`` = unset).

    ``options`` are source settings given on the command line (``--arch`` for ``local:``);
    only an explicit ``source:name`` ref takes them, through the source's ``spec`` method.
    ``prefer``: sources to ask first about a bare name (those that made its stored entries), or
    a function giving them, called only for a bare name that is no alias.
    ``checked``: ``precheck(text, host)`` already ran (the name is checked once).
    """
    flags = recipe_flags or {}
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if not checked:
        precheck(text, host)
    source_name, model = split_ref(text)
    if options and source_name is None:
        raise UserError(f"{_flags(options)}: only for SOURCE:NAME refs that take it, such as local:PATH, "
                        f"not for {text!r}")
    alias = None
    if source_name is None:
        alias = registry.get(model)
    if alias is not None:
        if alias.source not in host.sources:
            raise RegistryError(f"{alias.origin}: models.{alias.alias}.source: {host.unknown_source(alias.source)}")
        spec = _explicit(host, alias.source, alias.name, weights or alias.weights, alias.options)
        if alias.weights_sha256 and weights is None:  # the pin is for the alias's own weights only
            pinned = {**dict(spec.options), PIN_OPTION: alias.weights_sha256}
            spec = replace(spec, options=tuple(sorted(pinned.items())))
    elif source_name is not None:
        spec = _explicit(host, source_name, model, weights, options, checked=True)
    else:  # the claimant's `spec`, as for `source:name`: it may refuse weights or pin what it serves
        claimed = _claim(model, host, registry, prefer() if callable(prefer) else prefer)
        spec = _explicit(host, claimed.source, claimed.name, weights, {}, checked=True)
    layers = alias.recipe if alias else {}
    if host.source(spec.source).fetches:  # a ready file is as published: no recipe setting can apply
        refuse_recipe(spec.ref, layers, flags)
    recipe = Recipe.from_layers(layers, flags)
    return Resolved(name=text, spec=spec, recipe=recipe, key=cache_key(spec, recipe), alias=alias)


def _explicit(host: PluginHost, source_name: str, model: str, weights: str | None,
              options: dict[str, Any], checked: bool = False) -> ModelSpec:
    """``source:model`` (typed, behind an alias, or a claimed bare name) through the source's
    ``spec``: one path, one key."""
    source = host.source(source_name)
    if not source.path_names and not checked:
        check_name(model)
    elif not model:
        raise InvalidNameError(f"empty model name after {source_name!r}: write {source_name}:NAME")
    return source.spec(model, weights or source.default_weights, options)


def _flags(options: dict[str, Any]) -> str:
    return ", ".join("--" + k.replace("_", "-") for k in sorted(options))


def _claim(name: str, host: PluginHost, registry: Registry, prefer: Iterable[str] = ()) -> ModelSpec:
    """The one source that claims a bare ``name``; the ``prefer``red ones are asked first, and
    when one of them claims it the rest are not asked."""
    first = [s for s in dict.fromkeys(prefer) if s in host.sources]
    claims: list[ModelSpec] = []
    failed: list[tuple[str, ZooError]] = []  # (source, what its resolve raised)
    for group in (first, [s for s in host.sources if s not in first]):
        for source_name in group:
            try:
                spec = host.source(source_name).resolve(name)
            except ZooError as exc:  # one source failing must not break every other source's names
                failed.append((source_name, exc))
                continue
            if spec is not None:
                claims.append(spec)
        if claims:
            break
    # A source's own answer about the name ("timm has no weights X") is the error when no
    # one claims it; anything else (a plugin's bug, a source that cannot be reached) is skipped.
    answers = [exc for _source, exc in failed if isinstance(exc, UserError) and not isinstance(exc, PluginFailure)]
    for source_name, exc in failed:
        if claims or exc not in answers:
            warnings.warn(ZooWarning(_skipped(host, source_name, name, exc)), stacklevel=3)
    if len(claims) == 1:
        return claims[0]
    if claims:
        refs = ", ".join(sorted(c.ref for c in claims))
        raise AmbiguousNameError(f"{name!r} is ambiguous: several sources have it ({refs}); name one")
    if answers:
        raise answers[0]
    raise UnknownModelError(f"unknown model {name!r}{suggest(name, host, registry)}")


def _skipped(host: PluginHost, source_name: str, name: str, exc: ZooError) -> str:
    """The warning for a source whose ``resolve`` raised: the plugin and distribution to blame."""
    text = one_line(exc)
    if isinstance(exc, PluginFailure):  # already says which plugin failed doing what
        return f"{text}; source {source_name} skipped"
    who = host.source_plugin(source_name).describe() if source_name in host.sources else "a source"
    return f"{who}: source {source_name} failed resolving {name!r} ({text}); skipped"


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
