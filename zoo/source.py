"""The interface a source plugin implements: ``Source``, and ``match`` for catalogues.

``Source`` is the abstract base class that declares the interface: a source implements
``build`` (a PyTorch model that zoo exports), ``fetch`` (ready ONNX files) or both, and
overrides ``models`` (its catalogue), ``resolve`` (claiming bare names) and ``spec`` (its
options) where the defaults (nothing listed, nothing claimed, no options) do not fit.
Everything but ``build`` and ``fetch`` must stay cheap: no torch import. Sources that do
not subclass it keep working: the host reads every source through the same declared
methods (``zoo.host.GuardedSource``).
"""

from __future__ import annotations

import abc
import fnmatch
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from .errors import ExportError, PluginError, UserError
from .recipe import Recipe
from .spec import BuiltModel, FetchedModel, ModelSpec

Progress = Callable[[str], None]


# Nothing is abstract at instantiation, so that sources written for the earlier base class
# (which gave every method a default) keep loading; ``zoo plugins check`` reports a source
# that implements neither ``build`` nor ``fetch``, and calling the missing one says so.
class Source(abc.ABC):  # noqa: B024
    """Base class for model sources: implement ``build`` or ``fetch``, or both.

    ``name``: the prefix users type (``torchvision`` in ``torchvision:resnet50``), a Python
    identifier unique across plugins.
    ``path_names``: set True when model names are paths or contain ``/`` (local files, hub
    repos); otherwise the host refuses such names before calling the source.
    ``version``: reported in ``zoo plugins`` and stored in each entry's provenance (else
    the plugin distribution's version).
    ``example``: a small model this source builds quickly, exercised by
    ``zoo plugins check`` (``zoo.testing.check_source``) when no model is given.
    ``default_weights``: the weights when the user gives no ``--weights``.
    """

    name: str = ""
    version: str | None = None
    path_names: bool = False
    example: str | None = None
    default_weights: str = "default"

    def models(self, pattern: str | None = None) -> Iterable[str]:
        """Names this source can build, filtered by a shell-style ``pattern`` (use ``match``).

        ``pattern`` is a ``Pattern`` with ``named`` True when the user listed this source by
        name (``zoo list --available 'mine:*'``), else None or a plain pattern (every source
        listed, name suggestions). A source that cannot list now (not configured) returns
        nothing unless named, and then raises an error saying what to set.
        The default lists nothing (sources whose names are paths or repos).
        """
        return []

    def description(self, name: str) -> str | None:
        """One line about model ``name`` for ``zoo list --available`` (its ``description``).

        Cheap, like ``models``; the default has none.
        """
        return None

    def task(self, name: str) -> str:
        """What model ``name`` computes, one of ``zoo.tasks.TASKS`` (``zoo list --available``
        shows it). Cheap: no torch. The default is ``classification``; a source of detectors
        or segmenters overrides it and sets ``BuiltModel.task`` and ``task_outputs`` to match.
        """
        return "classification"

    def resolve(self, name: str) -> ModelSpec | None:
        """Claim a bare ``name``: a spec when this source has it, else None (the default).

        Every source is asked; more than one claimant is an ambiguity error. Return the
        spec ``spec(name, default_weights, {})`` would, so both spellings share a cache key.
        """
        return None

    def spec(self, name: str, weights: str, options: Mapping[str, Any]) -> ModelSpec:
        """The spec for ``source:name`` and for a registry alias to it: its result is the cache key.

        ``weights`` is already defaulted (the user's ``--weights``, else the alias's, else
        ``default_weights``); ``options`` are the source settings given (command line or
        the alias's ``options`` table). Cheap: no torch. This default takes no options.
        """
        refuse_options(self.name, options)
        return ModelSpec(self.name, name, weights)

    def build(self, spec: ModelSpec, recipe: Recipe) -> BuiltModel:
        """Build the model with ``spec.weights`` ("none", "default", a tag or a path).

        Check the name here too (the conformance kit calls ``build`` directly). Raise
        ``WeightsUnavailableError`` when weights cannot be fetched, naming the URL or hub
        id and suggesting ``--weights none`` or ``--weights PATH``.
        """
        if self.fetches:
            raise ExportError(f"{spec.ref}: source {self.name!r} serves ready ONNX files; it builds nothing")
        raise ExportError(f"{spec.ref}: source {self.name!r} implements neither build nor fetch (a plugin bug)")

    @property
    def fetches(self) -> bool:
        """Whether this source serves ready ONNX files (implements ``fetch``) instead of building."""
        return implements(self, "fetch")

    def fetch(self, spec: ModelSpec, recipe: Recipe, directory: Path,
              progress: Progress | None = None) -> FetchedModel | dict[str, Any]:
        """The ready ONNX file for ``spec``: a ``FetchedModel`` naming it (or its bytes, or the
        ``model.onnx`` written into ``directory``) with what the source knows of it.

        For sources of ready ONNX files, called instead of ``build`` + export. The host checks
        the file and the labels and input size against it (``zoo.fetching``), and refuses
        recipe flags before this is called. ``progress`` is None when nothing may be shown.
        Must not import torch. (A dict of record fields, the earlier answer, is still taken.)
        """
        raise ExportError(f"{spec.ref}: source {self.name!r} builds models; it has no ready ONNX files")


class Pattern(str):
    """The pattern ``Source.models`` gets when the user lists one source by name.

    A ``str`` (shell-style, ``*`` when none was given), so ``match`` and string methods work
    as before; ``named`` tells ``zoo list --available 'mine:*'`` (this source asked for by
    name) from ``zoo list --available`` (every source).
    """

    named: bool

    def __new__(cls, text: str | None = None, named: bool = True) -> Pattern:
        pattern = super().__new__(cls, text or "*")
        pattern.named = named
        return pattern


def implements(source: Any, method: str) -> bool:
    """Whether ``source`` has its own ``method`` rather than ``Source``'s placeholder.

    Works for sources that do not subclass ``Source`` too.
    """
    found = getattr(type(source), method, None)
    if found is None:
        return callable(getattr(source, method, None))
    return callable(found) and found is not getattr(Source, method, None)


def match(names: Iterable[str], pattern: str | None) -> list[str]:
    """Filter ``names`` by a shell-style pattern (case-insensitive), as ``timm.list_models``."""
    if not pattern:
        return sorted(names)
    pattern = pattern.lower()
    return sorted(n for n in names if fnmatch.fnmatchcase(n.lower(), pattern))


def refuse_options(source: str, options: Mapping[str, Any], taken: Iterable[str] = ()) -> None:
    """``UserError`` naming the options (as command-line flags) that ``source`` does not take."""
    unknown = sorted(set(options) - set(taken))
    if unknown:
        flags = ", ".join("--" + key.replace("_", "-") for key in unknown)
        raise UserError(f"source {source!r} takes no {flags}")


def checkpoint_spec(source: str, name: str, weights: str, options: Mapping[str, Any]) -> ModelSpec:
    """The spec of a source whose ``--weights PATH`` takes ``num_classes`` (a new head) and
    ``strict`` (default on): only non-default settings go in, so each choice has one key."""
    refuse_options(source, options, ("num_classes", "strict"))
    settings = {"num_classes": options.get("num_classes"), "strict": False if options.get("strict") is False else None}
    return ModelSpec(source, name, weights, tuple(sorted((k, v) for k, v in settings.items() if v is not None)))


# The sources of the host that is calling into a plugin, for ``build_model``.
_in_reach: ContextVar[Callable[[str], Any] | None] = ContextVar("zoo_sources_in_reach", default=None)


@contextmanager
def _bound(variable: ContextVar[Any], value: Any) -> Iterator[None]:
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def sources_in_reach(lookup: Callable[[str], Any]) -> AbstractContextManager[None]:
    """While a plugin runs: let ``build_model`` find the other registered sources (host use)."""
    return _bound(_in_reach, lookup)


_reporter: ContextVar[Progress | None] = ContextVar("zoo_reporter", default=None)


def reporting(progress: Progress | None) -> AbstractContextManager[None]:
    """While a source builds: send ``report`` lines to ``progress`` (host use)."""
    return _bound(_reporter, progress)


def report(message: str) -> None:
    """Say what a long step of ``build`` is doing now (``downloading X: 12.5 MB of 98.0 MB``).

    It becomes the spinner line on a terminal and is dropped otherwise (``--json``, pipes,
    the Python API without a ``progress`` callable). ``build`` takes no progress argument;
    ``fetch`` has its own and may use either.
    """
    say = _reporter.get()
    if say is not None:
        say(message)


def build_model(spec: ModelSpec, recipe: Recipe) -> BuiltModel:
    """Build ``spec`` with the registered source it names, as zoo would.

    How ``local:`` builds its ``--arch``: call it from your own ``build``. A failure of the
    other source is reported under that source's plugin.
    """
    lookup = _in_reach.get()
    if lookup is None:
        raise PluginError("build_model() works only while zoo calls a source (from its build or fetch)")
    return lookup(spec.source).build(spec, recipe)
