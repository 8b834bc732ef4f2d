"""Loading plugins: built-ins and entry points, through one guarded path.

Built-in plugins are plain top-level modules (``zoo_torchvision``...) registered exactly
like third-party ones; in a plain source tree they are found in ``plugins/``. A plugin
that fails to import, validate or register is recorded with its reason and skipped.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import __version__, entry_points, hookspecs
from .errors import PluginError, PluginFailure, UnknownModelError, ZooError, ZooWarning, one_line
from .recipe import Recipe
from .source import Progress, Source, implements, sources_in_reach
from .spec import BuiltModel, ModelSpec

DISTRIBUTION = "zoo-onnx"  # the built-in plugins ship in zoo's own wheel
BUILTIN_PLUGINS = ("zoo_torchvision", "zoo_hf", "zoo_timm", "zoo_local")
ENTRY_POINT_GROUP = "zoo"
ALLOW_LIST = "ZOO_LOAD_PLUGINS"
REQUIRED_SOURCE_ATTRS = ("name", "models", "resolve")  # and build or fetch: the kit checks
SKIPPED = f"skipped ({ALLOW_LIST})"


@dataclass
class PluginInfo:
    """What ``zoo plugins`` reports about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False  # installed, but left out by ZOO_LOAD_PLUGINS

    @property
    def status(self) -> str:
        if self.skipped:
            return SKIPPED
        return "loaded" if self.error is None else f"error: {self.error}"

    def describe(self) -> str:
        """``plugin NAME (DISTRIBUTION VERSION)``: who to blame, and which release."""
        origin = " ".join(part for part in (self.distribution, self.version) if part) or "no distribution"
        return f"plugin {self.name} ({origin})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "sources": self.sources,
            "commands": self.commands,
            "status": self.status,
        }


def _builtin_path() -> None:
    """Make ``plugins/`` importable when zoo runs from a source tree, not a wheel."""
    candidate = Path(__file__).resolve().parent.parent / "plugins"
    if candidate.is_dir() and str(candidate) not in sys.path:
        sys.path.append(str(candidate))


def _allow_list() -> set[str] | None:
    """``ZOO_LOAD_PLUGINS``: unset loads every entry point; set, only those named."""
    value = os.environ.get(ALLOW_LIST)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


def _validation_reason(exc: pluggy.PluginValidationError) -> str:
    """pluggy's multi-line message as one line: which hook, how it was defined, why not."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    details = [line.removeprefix("hookimpl definition: ") for line in lines[1:]]
    return "invalid hook " + ": ".join(details or lines)


def _control_flow(exc: BaseException) -> bool:
    """Typer's ``Exit``/``Abort`` and usage errors: a command's way to end, not a failure."""
    # Typer ships its own copy of click, so its exception classes are matched by name.
    return any(cls.__name__ in ("Exit", "Abort", "ClickException") for cls in type(exc).__mro__)


@contextmanager
def blame(plugin: PluginInfo | None, doing: str, lookup: Callable[[str], Any] | None = None) -> Iterator[None]:
    """Run plugin code: an exception other than a ``ZooError`` becomes that plugin's ``PluginFailure``.

    ``lookup`` (the host's ``source``) lets the code reach the other sources (``build_model``).
    """
    try:
        if lookup is None:
            yield
        else:
            with sources_in_reach(lookup):
                yield
    except ZooError:
        raise
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit must not end zoo silently
        who = plugin.describe() if plugin else "a source registered without a plugin"
        message = f"{who} failed {doing}: {one_line(exc, kind=True)}"
        # One line, whatever the name held (names of path-like sources reach the message as given).
        raise PluginFailure(message.replace("\r", "\\r").replace("\n", "\\n"),
                            plugin.name if plugin else None) from exc


class GuardedSource(Source):
    """A registered source as zoo calls it, whether or not it subclasses ``Source``.

    Every method is the plugin's own, run under ``blame``; ``spec``, ``build`` and ``fetch``
    fall back to ``Source``'s defaults where the plugin has none. ``wrapped`` is the
    plugin's object itself.
    """

    def __init__(self, source: Any, plugin: PluginInfo | None, lookup: Callable[[str], Any]) -> None:
        self.wrapped, self.plugin, self._lookup = source, plugin, lookup
        self.name = source.name
        self.version = getattr(source, "version", None)
        self.path_names = bool(getattr(source, "path_names", False))
        self.example = getattr(source, "example", None)
        self.default_weights = getattr(source, "default_weights", "default")

    @property
    def fetches(self) -> bool:
        return implements(self.wrapped, "fetch")

    def _blame(self, doing: str) -> Any:
        return blame(self.plugin, doing, self._lookup)

    def models(self, pattern: str | None = None) -> list[str]:
        with self._blame(f"listing the models of source {self.name}"):
            return list(self.wrapped.models(pattern))

    def description(self, name: str) -> str | None:
        if not implements(self.wrapped, "description"):
            return None
        with self._blame(f"describing {self.name}:{name}"):
            text = self.wrapped.description(name)
        return text if isinstance(text, str) else None

    def task(self, name: str) -> str:
        if not implements(self.wrapped, "task"):
            return super().task(name)
        with self._blame(f"reading the task of {self.name}:{name}"):
            return str(self.wrapped.task(name))

    def resolve(self, name: str) -> ModelSpec | None:
        with self._blame(f"resolving {name!r} in source {self.name}"):
            return self.wrapped.resolve(name)

    def spec(self, name: str, weights: str, options: Mapping[str, Any]) -> ModelSpec:
        if not implements(self.wrapped, "spec"):
            return super().spec(name, weights, options)
        with self._blame(f"reading {self.name}:{name}"):
            return self.wrapped.spec(name, weights, dict(options))

    def build(self, spec: ModelSpec, recipe: Recipe) -> BuiltModel:
        if not implements(self.wrapped, "build"):
            return super().build(spec, recipe)
        with self._blame(f"building {spec.ref}"):
            return self.wrapped.build(spec, recipe)

    def fetch(self, spec: ModelSpec, recipe: Recipe, directory: Path,
              progress: Progress | None = None) -> Any:
        if not self.fetches:
            return super().fetch(spec, recipe, directory, progress)
        with self._blame(f"fetching {spec.ref}"):
            return self.wrapped.fetch(spec, recipe, directory, progress)


class PluginHost:
    """The plugin manager plus the sources the plugins registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.sources: dict[str, Any] = {}  # name -> the plugin's own object (see ``source`` for calls)
        self._source_plugin: dict[str, str] = {}
        self.unmatched: list[str] = []  # ZOO_LOAD_PLUGINS names no installed plugin has

    # -- loading -------------------------------------------------------------------------
    def load(self) -> PluginHost:
        _builtin_path()
        for module_name in BUILTIN_PLUGINS:
            info = PluginInfo(name=module_name, module=module_name, builtin=True)
            info.distribution, info.version = DISTRIBUTION, __version__
            self._add(info, lambda m=module_name: importlib.import_module(m))
        allowed = _allow_list()
        installed = entry_points.installed(ENTRY_POINT_GROUP, entry_points.cache_dir())
        for ep in installed:
            info = PluginInfo(name=ep.name, module=ep.value, distribution=ep.distribution, version=ep.version)
            if allowed is not None and ep.name not in allowed:
                info.skipped = True
                self.plugins.setdefault(info.name, info)
                continue
            self._add(info, ep.load)
        self.unmatched = sorted((allowed or set()) - {ep.name for ep in installed})
        self._register_sources()
        return self

    def _add(self, info: PluginInfo, loader: Any) -> None:
        if info.name in self.plugins:
            info.error = f"duplicate plugin name {info.name!r}"
            self.plugins[f"{info.name} ({info.distribution})"] = info
            return
        self.plugins[info.name] = info
        try:
            module = loader()
            self.pm.register(module, name=info.name)
        except pluggy.PluginValidationError as exc:  # its first line lacks the reason
            info.error = _validation_reason(exc)
            return
        except (Exception, SystemExit) as exc:  # a broken plugin must not break zoo, even by exiting
            info.error = one_line(exc, kind=True)
            return
        unknown = [c.name for c in self.pm.get_hookcallers(module) or [] if not c.has_spec()]
        if unknown:
            self.pm.unregister(module)
            info.error = f"unknown hook(s) {', '.join(unknown)}"
            return
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(module) or [])

    def _register_sources(self) -> None:
        for impl in self.pm.hook.zoo_register_sources.get_hookimpls():
            info = self.plugins[impl.plugin_name]
            added: list[str] = []

            def register(source: Any, info: PluginInfo = info, added: list[str] = added) -> None:
                name = getattr(source, "name", None)
                if not isinstance(name, str) or not name.isidentifier():
                    raise PluginError(f"source name {name!r} of {source!r} is not an identifier")
                if name in self.sources:
                    owner = self._source_plugin[name]
                    raise PluginError(f"source {name!r} is already registered by {owner}")
                missing = [a for a in REQUIRED_SOURCE_ATTRS if not hasattr(source, a)]
                if missing:
                    raise PluginError(f"source {name!r} lacks {', '.join(missing)}")
                added.append(name)
                self.sources[name] = source
                self._source_plugin[name] = info.name

            try:
                impl.function(register=register)
            except Exception as exc:
                for name in added:  # all or nothing per plugin
                    self.sources.pop(name, None)
                    self._source_plugin.pop(name, None)
                added.clear()
                self._skip(info, one_line(exc, kind=True))
            info.sources = list(added)

    def _skip(self, info: PluginInfo, error: str) -> None:
        """Record why a registered plugin failed and stop calling its other hooks."""
        info.error = error
        if self.pm.has_plugin(info.name):
            self.pm.unregister(name=info.name)

    def register_commands(self, taken: set[str]) -> dict[str, tuple[Any, str]]:
        """Extra CLI commands from ``zoo_register_commands``: name -> (function, plugin).

        ``taken`` holds the built-in command names. A plugin that registers a taken name,
        something not callable, or raises, is skipped as a whole and reported.
        """
        commands: dict[str, tuple[Any, str]] = {}
        for impl in self.pm.hook.zoo_register_commands.get_hookimpls():
            info = self.plugins[impl.plugin_name]
            added: dict[str, tuple[Any, str]] = {}

            def register(function: Any, name: str | None = None, info: PluginInfo = info,
                         added: dict[str, tuple[Any, str]] = added) -> None:
                if not callable(function):
                    raise PluginError(f"command {function!r} is not callable")
                command = name or function.__name__.replace("_", "-")
                if command in taken or command in commands or command in added:
                    owner = commands.get(command, (None, "zoo"))[1]
                    raise PluginError(f"command {command!r} is already registered by {owner}")
                added[command] = (_guarded_command(function, command, info), info.name)

            try:
                impl.function(register=register)
            except Exception as exc:
                self._skip(info, one_line(exc, kind=True))
                continue
            commands.update(added)
            info.commands = sorted(added)
        return commands

    def post_export(self, path: Path, metadata: dict[str, Any], spec: Any, recipe: Any,
                    validate: Any) -> list[dict[str, str]]:
        """Run every ``zoo_post_export`` transform on ``path``, one plugin at a time.

        ``validate(path)`` re-checks the file after each transform (checker and parity);
        a transform that raises or fails validation is undone (the file and ``metadata``
        restored, a ``ZooWarning`` naming the plugin issued) and the others still run.
        Returns one record per plugin for ``zoo.json``.
        """
        records: list[dict[str, str]] = []
        backup = path.with_name(path.name + ".before-post-export")
        # One at a time rather than through pluggy's call (newest first): load order, each guarded.
        for impl in self.pm.hook.zoo_post_export.get_hookimpls():
            arguments = {"path": path, "metadata": metadata, "spec": spec, "recipe": recipe}
            shutil.copyfile(path, backup)
            before = copy.deepcopy(metadata)
            try:
                with sources_in_reach(self.source):
                    impl.function(**{name: arguments[name] for name in impl.argnames})
                validate(path)
            except (Exception, SystemExit) as exc:
                backup.replace(path)
                metadata.clear()
                metadata.update(before)
                who = self.plugins[impl.plugin_name].describe()
                where = f" on {spec.ref}" if isinstance(spec, ModelSpec) else ""
                warnings.warn(ZooWarning(f"{who}: its post-export transform failed{where} and was undone: "
                                         f"{one_line(exc, kind=True)}"), stacklevel=2)
                records.append({"plugin": impl.plugin_name, "status": f"undone: {one_line(exc, kind=True)}"})
                continue
            backup.unlink()
            records.append({"plugin": impl.plugin_name, "status": "applied"})
        return records

    # -- queries -------------------------------------------------------------------------
    def source(self, name: str) -> GuardedSource:
        """The source called ``name``, its calls guarded (see ``GuardedSource``)."""
        if name not in self.sources:
            raise UnknownModelError(self.unknown_source(name))
        plugin = self.plugins.get(self._source_plugin.get(name, ""))
        return GuardedSource(self.sources[name], plugin, self.source)

    def unknown_source(self, name: str) -> str:
        """Why ``name`` is no source, pointing at installed plugins ``ZOO_LOAD_PLUGINS`` left out."""
        known = ", ".join(sorted(self.sources)) or "none"
        text = f"unknown source {name!r}: known sources are {known} (see `zoo plugins`)"
        skipped = [p for p in self.plugins.values() if p.skipped]
        if skipped:
            listed = ", ".join(f"{p.name} (from {p.distribution})" for p in skipped)
            text += (f"; {ALLOW_LIST}={os.environ.get(ALLOW_LIST, '')!r} skips installed plugin(s) {listed}, "
                     f"which may provide it: add it to {ALLOW_LIST} or unset it")
        return text

    def source_plugin(self, source_name: str) -> PluginInfo:
        return self.plugins[self._source_plugin[source_name]]

    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.error]

    def problems(self, broken: bool = True) -> list[str]:
        """One warning line per broken plugin (unless ``broken=False``), and for ``ZOO_LOAD_PLUGINS``
        names no installed plugin answers to."""
        lines = []
        for info in self.failed() if broken else []:
            origin = f"from {info.distribution}" if info.distribution else "no distribution"
            lines.append(f"plugin {info.name} ({origin}) skipped: {info.error} (see `zoo plugins`)")
        if self.unmatched:
            installed = ", ".join(sorted(p.name for p in self.plugins.values() if not p.builtin)) or "none"
            lines.append(f"{ALLOW_LIST} names {', '.join(self.unmatched)}: no installed plugin is called that "
                         f"(installed: {installed})")
        return lines


def _guarded_command(function: Callable[..., Any], command: str, plugin: PluginInfo) -> Callable[..., Any]:
    """A plugin's CLI command whose exceptions (other than zoo's and Typer's) are the plugin's failure."""

    @functools.wraps(function)  # Typer reads the parameters through __wrapped__
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if _control_flow(exc):
                raise
            with blame(plugin, f"in command {command!r}"):
                raise

    return run


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    if _host is None:
        _host = PluginHost().load()
    return _host


def reset_host() -> None:
    """Forget the loaded plugins (tests, or after changing ``ZOO_LOAD_PLUGINS``)."""
    global _host
    _host = None
