"""Loading plugins: built-ins and entry points, through one guarded path.

Built-in plugins are plain top-level modules (``zoo_torchvision``...) registered exactly
like third-party ones; in a plain source tree they are found in ``plugins/``. A plugin
that fails to import, validate or register is recorded with its reason and skipped.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import __version__, hookspecs
from .errors import PluginError, UnknownModelError

DISTRIBUTION = "zoo-onnx"  # the built-in plugins ship in zoo's own wheel
BUILTIN_PLUGINS = ("zoo_torchvision", "zoo_hf", "zoo_timm", "zoo_local")
ENTRY_POINT_GROUP = "zoo"
REQUIRED_SOURCE_ATTRS = ("name", "models", "resolve", "build")


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

    @property
    def status(self) -> str:
        return "loaded" if self.error is None else f"error: {self.error}"

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
    value = os.environ.get("ZOO_LOAD_PLUGINS")
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


def _validation_reason(exc: pluggy.PluginValidationError) -> str:
    """pluggy's multi-line message as one line: which hook, how it was defined, why not."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    details = [line.removeprefix("hookimpl definition: ") for line in lines[1:]]
    return "invalid hook " + ": ".join(details or lines)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class PluginHost:
    """The plugin manager plus the sources the plugins registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.sources: dict[str, Any] = {}
        self._source_plugin: dict[str, str] = {}

    # -- loading -------------------------------------------------------------------------
    def load(self) -> PluginHost:
        _builtin_path()
        for module_name in BUILTIN_PLUGINS:
            info = PluginInfo(name=module_name, module=module_name, builtin=True)
            info.distribution, info.version = DISTRIBUTION, __version__
            self._add(info, lambda m=module_name: importlib.import_module(m))
        allowed = _allow_list()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            )
            self._add(info, ep.load)
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
            info.error = _one_line(exc)
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
                missing = [a for a in REQUIRED_SOURCE_ATTRS if not hasattr(source, a)]
                if missing:
                    raise PluginError(f"source {source!r} lacks {', '.join(missing)}")
                name = source.name
                if not isinstance(name, str) or not name.isidentifier():
                    raise PluginError(f"source name {name!r} is not an identifier")
                if name in self.sources:
                    owner = self._source_plugin[name]
                    raise PluginError(f"source {name!r} is already registered by {owner}")
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
                self._skip(info, _one_line(exc))
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
                added[command] = (function, info.name)

            try:
                impl.function(register=register)
            except Exception as exc:
                self._skip(info, _one_line(exc))
                continue
            commands.update(added)
            info.commands = sorted(added)
        return commands

    def post_export(self, path: Path, metadata: dict[str, Any], spec: Any, recipe: Any,
                    validate: Any) -> list[dict[str, str]]:
        """Run every ``zoo_post_export`` transform on ``path``, one plugin at a time.

        ``validate(path)`` re-checks the file after each transform (checker and parity);
        a transform that raises or fails validation is undone (the file is restored) and
        the others still run. Returns one record per plugin for ``zoo.json``.
        """
        import shutil

        records: list[dict[str, str]] = []
        backup = path.with_name(path.name + ".before-post-export")
        # One at a time rather than through pluggy's call (newest first): load order, each guarded.
        for impl in self.pm.hook.zoo_post_export.get_hookimpls():
            arguments = {"path": path, "metadata": metadata, "spec": spec, "recipe": recipe}
            shutil.copyfile(path, backup)
            try:
                impl.function(**{name: arguments[name] for name in impl.argnames})
                validate(path)
            except Exception as exc:
                backup.replace(path)
                records.append({"plugin": impl.plugin_name, "status": f"undone: {_one_line(exc)}"})
                continue
            backup.unlink()
            records.append({"plugin": impl.plugin_name, "status": "applied"})
        return records

    # -- queries -------------------------------------------------------------------------
    def source(self, name: str) -> Any:
        try:
            return self.sources[name]
        except KeyError:
            known = ", ".join(sorted(self.sources)) or "none"
            raise UnknownModelError(
                f"unknown source {name!r}: known sources are {known} (see `zoo plugins`)"
            ) from None

    def source_plugin(self, source_name: str) -> PluginInfo:
        return self.plugins[self._source_plugin[source_name]]

    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.error]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


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
