"""zoo as a library: pull, export, find, list, remove, verify, gc, run, bench, push.

The CLI is a thin layer over these functions, and every one of them is importable from
``zoo``. A function that names a model takes the selection (weights, recipe flags, source
options) as keyword arguments, the fields of ``Selection``; ``None`` means "not given".
This module finds or pulls an entry, checks it, then hands the located model to
``zoo.runtime`` and ``zoo.benchmark``, which never reach back into the store or plugins.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    IntegrityError,
    InvalidNameError,
    NotInStoreError,
    PluginError,
    UserError,
    ZooError,
    ZooWarning,
    repair_hint,
)
from .exporting import MODEL_FILE, Progress
from .fetching import FETCHED
from .files import FileRefused, publish_new, refused_write
from .host import PluginHost, PluginInfo, get_host
from .names import split_ref
from .record import Evaluation, Record, RecordError
from .registry import Registry
from .resolve import Resolved, precheck, resolve
from .runtime import ProviderOptions, Target, check_provider, read_file
from .source import reporting
from .store import METADATA_FILE, Entry, Store, describe_files, write_json

if TYPE_CHECKING:
    from .testing import CheckReport

_KEY_PREFIX = re.compile(r"[0-9a-f]{6,20}")


@dataclass(frozen=True)
class Selection:
    """Which model and entry a name means: weights, recipe flags and source options.

    Every library function that names a model takes these as keyword arguments; ``None``
    means "not given" (the registry's or the source's default applies). A misspelled
    keyword is a ``TypeError``.
    """

    weights: str | None = None
    registry: str | Path | None = None
    # recipe flags (zoo.recipe.Recipe)
    opset: int | None = None
    batch: int | None = None
    dynamic_batch: bool | None = None
    size: int | None = None
    dtype: str | None = None
    exporter: str | None = None
    reparameterize: bool | None = None
    input_names: str | Sequence[str] | None = None  # "input" by default; "a,b" or ["a", "b"]
    output_names: str | Sequence[str] | None = None  # the source's by default ("logits")
    calibration: str | Path | None = None  # --dtype int8: a folder of calibration images
    calibration_size: int | None = None  # --dtype int8: how many of them (default: up to 256)
    # source options: local checkpoints (`local:PATH`) and sources that take them
    arch: str | None = None
    num_classes: int | None = None
    strict: bool | None = None
    options: Mapping[str, Any] | None = None  # any other source's options, by name

    def recipe_flags(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in RECIPE_FLAGS}

    def source_options(self) -> dict[str, Any] | None:
        named = {k: v for k in ("arch", "num_classes", "strict") if (v := getattr(self, k)) is not None}
        merged = {**(self.options or {}), **named}
        return merged or None

    def given(self) -> list[str]:
        """The fields given (the registry aside: it says where names are looked up, not which entry)."""
        return [f.name for f in fields(self) if f.name != "registry" and getattr(self, f.name) not in (None, {})]

    def narrows(self) -> bool:
        """Whether anything beyond the name was given (to pick one of several entries)."""
        return self.weights is not None or any(v is not None for v in self.recipe_flags().values())


RECIPE_FLAGS = ("opset", "batch", "dynamic_batch", "size", "dtype", "exporter", "reparameterize", "input_names",
                "output_names", "calibration", "calibration_size")


@dataclass
class PullResult:
    entry: Entry
    cached: bool | str  # True: local hit; False: exported here; "remote": downloaded from the remote
    resolved: Resolved
    remote: str | None = None  # the remote's URL when downloaded from it

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.resolved.name,
            "ref": self.entry.ref,
            "path": str(self.entry.model_path),
            "sha256": self.entry.sha256,
            "cached": self.cached,
            "key": self.entry.key,
            "exporter": self.entry.record.exporter,
            **({"remote": self.remote} if self.remote else {}),
        }


def resolve_name(name: str, *, host: PluginHost | None = None, **selection: Any) -> Resolved:
    """Resolve ``name`` and the selection (see ``Selection``) to a spec, recipe and cache key."""
    return _resolve(name, Selection(**selection), host)


def _checked(name: str, host: PluginHost | None = None) -> PluginHost:
    """Check ``name`` once, before any file is read (a bare name even before the plugins load:
    only a source can say whether it takes paths), and return the plugin host."""
    if split_ref(name)[0] is None:
        precheck(name)
        return host or get_host()
    host = host or get_host()
    precheck(name, host)
    return host


def _resolve(name: str, chosen: Selection, host: PluginHost | None = None,
             prefer: Iterable[str] | Callable[[], Iterable[str]] = (),
             checked: bool = False) -> Resolved:
    """``name`` resolved with ``chosen``; ``prefer``: sources to ask first (see ``zoo.resolve``)."""
    if not checked:
        host = _checked(name, host)
    host = host or get_host()
    return resolve(name, host, Registry.load(chosen.registry), chosen.weights, chosen.recipe_flags(),
                   chosen.source_options(), prefer=prefer, checked=True)


def pull(name: str, *, force: bool = False, progress: Progress | None = None, store: Store | None = None,
         remote: str | bool | None = None, upload: bool = True, **selection: Any) -> PullResult:
    """The stored entry for ``name``, building and exporting it on a miss (``selection``: see ``Selection``).

    ``name`` may also be a stored entry's key (or a unique prefix of one): ``force`` then
    exports that entry again from its record, the way a repair hint says. On a local miss
    the remote cache is asked first (``remote``: a URL, ``False`` for none, ``None`` for the
    configured one; see ``zoo.remote``); a fresh export is uploaded to it unless ``upload``
    is False. A local hit whose files no longer match their record is ``IntegrityError``,
    naming the ``pull --force KEY`` that makes it again.
    """
    store = store or Store()
    resolved, stored = _named(name, store, Selection(**selection), force)
    return _pull(name, store, resolved, stored, force, progress, remote, upload)


def _pull(name: str, store: Store, resolved: Resolved, stored: Entry | None, force: bool,
          progress: Progress | None, remote: str | bool | None, upload: bool) -> PullResult:
    """``pull`` once the name is resolved: a hit, the remote's copy, or a fresh export."""
    from .remote import remote_for_pull, upload_quietly

    if not force and (entry := stored or store.get(resolved.key)) is not None:
        _verified(store, entry, name)  # a hit is only as good as its files (trusted hashes: cheap)
        return PullResult(entry, True, resolved)
    shared = remote_for_pull(remote)
    if shared is not None and not force and (hit := shared.fetch(resolved.key, store, progress)) is not None:
        entry, created = hit
        return PullResult(entry, "remote" if created else True, resolved, shared.url if created else None)
    produce = _producer(resolved, get_host(), progress)
    entry, created = store.create(resolved.key, produce, force=force)
    if shared is not None and created and upload:
        upload_quietly(shared, entry, progress)
    return PullResult(entry, not created, resolved)


def export(name: str, output: str | Path, *, force: bool = False, progress: Progress | None = None,
           **selection: Any) -> Entry:
    """Export ``name`` to a place of the user's choosing; ``selection`` as in ``Selection``.

    ``output`` ending in ``.onnx`` is the file to write, its record beside it as ``FILE.json``;
    any other ``output`` is a directory that gets ``model.onnx`` and ``zoo.json``. An existing
    file is never replaced unless ``force``. ``name`` may be a stored entry's key (or a unique
    prefix): that entry's source, weights and recipe are exported again. Files are written
    next to the target first and moved in when complete.
    ``zoo.export("local:ft.pth", "out", arch="timm:repvit_m0_9")``.
    """
    out = Path(output).expanduser()
    if out.suffix == ".onnx":
        directory, model_name, record_name = out.parent, out.name, out.with_suffix(".json").name
        if out.is_dir():
            raise UserError(f"{out} is a directory: give a file name ending in .onnx, or the directory alone")
    else:
        directory, model_name, record_name = out, MODEL_FILE, METADATA_FILE
        if out.exists() and not out.is_dir():
            raise UserError(f"--output {out} is not a directory: give a directory to write {MODEL_FILE} and "
                            f"{METADATA_FILE} into, or a file name ending in .onnx")
    if not force:
        for existing in (directory / model_name, directory / record_name):
            if existing.exists():
                raise UserError(f"{existing} exists: choose another output, or give --force to replace it")
    # Only a key is looked up in the store: exporting a model name never opens it.
    resolved = _named(name, Store() if _KEY_PREFIX.fullmatch(name) else None, Selection(**selection), remake=True)[0]
    produce = _producer(resolved, get_host(), progress)
    tmp: Path | None = None
    made_directory = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".zoo-export.", dir=directory))
        record = produce(tmp)
        if record.exporter == FETCHED:  # stored byte for byte; a copy out carries its record like an export
            from .metadata import write_props

            write_props(tmp / MODEL_FILE, record)
        if model_name != MODEL_FILE:
            (tmp / MODEL_FILE).rename(tmp / model_name)
        record.files = describe_files(tmp)
        write_json(tmp / METADATA_FILE, record.to_json())
        if record_name != METADATA_FILE:
            (tmp / METADATA_FILE).rename(tmp / record_name)
        _publish(tmp, directory, force)
    except BaseException as exc:
        refused = refused_write(exc, directory, tmp)  # full or read-only: exit 4, like the store
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if made_directory:  # a failed export leaves no empty output directory behind
            with suppress(OSError):
                directory.rmdir()
        if refused is not None:
            raise refused from None
        raise
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return Entry(key=resolved.key, dir=directory, record=record, model_file=model_name)


def _publish(tmp: Path, directory: Path, force: bool) -> None:
    """Move the finished export's files from ``tmp`` into ``directory``.

    Without ``force`` nothing there is ever replaced, not even a file that appeared during the
    export (after the check at the start): each file is moved in with a no-replace primitive,
    and when one is refused the files already moved are taken back, so the output is as it was.
    """
    moved: list[tuple[Path, int]] = []
    for path in sorted(tmp.iterdir()):
        target = directory / path.name
        if force:
            path.replace(target)
            continue
        try:
            publish_new(path, target)
        except FileExistsError:
            for done, ino in moved:  # ours only: a file someone put there since is theirs
                with suppress(OSError):
                    if done.stat().st_ino == ino:
                        done.unlink()
            raise UserError(f"{target} appeared during the export and is kept; nothing was written: choose "
                            f"another output, or give --force to replace it") from None
        moved.append((target, target.stat().st_ino))


def find(name: str, *, store: Store | None = None, **selection: Any) -> Entry:
    """The stored entry for ``name`` and selection, or ``NotInStoreError``.

    With no weights or recipe flags given, a single stored entry pulled under this name
    (or ref, or alias) is found whatever its recipe, through the store's index of names and
    without resolving the name (so without asking any source); several are resolved to the
    one the name makes now, or an error listing them.
    """
    store = store or Store()
    found = _lookup(name, store, Selection(**selection))
    if found.entry is not None:
        return found.entry
    raise found.missing(name)


@dataclass
class _Found:
    """What a name means in the store: the entry it selects, and what it resolved to (each
    looked up once, then handed down)."""

    entry: Entry | None
    resolved: Resolved | None = None
    named: list[Entry] = field(default_factory=list)  # entries stored under the name (unselective only)
    error: ZooError | None = None  # why the name did not resolve (entries stored under it were kept)

    def missing(self, name: str) -> ZooError:
        """The error for a name that selects no stored entry."""
        if len(self.named) > 1:
            choices = "; ".join(f"{e.key} (weights {e.summary()['weights']}, recipe {e.record.recipe.to_dict()})"
                                for e in self.named)
            return NotInStoreError(f"several stored entries match {name}: {choices}; "
                                   "name one by its key, or select it with --weights and recipe flags")
        if self.error is not None:
            return self.error
        assert self.resolved is not None
        spec = self.resolved.spec
        return NotInStoreError(f"{name} ({spec.ref}, weights {spec.weights}) is not in the store: "
                               f"run `zoo pull {name}` first")


def _lookup(name: str, store: Store, chosen: Selection, host: PluginHost | None = None) -> _Found:
    """The stored entry ``name`` selects with ``chosen``: by key; else (nothing beyond the name
    given) the one entry stored under that name, from the index of names; else the name
    resolved once, its key looked up, and that resolution kept for a pull on a miss.

    A name that no longer resolves (a weights file gone, a source that cannot be reached)
    still finds the entries stored under it.
    """
    from .quantize import stored_int8

    if (key := _by_key(name, store, chosen)) is not None:
        entry = store.get(key)
        if entry is None:
            raise RecordError(f"entry {key} has no {METADATA_FILE}; remove it with `zoo rm {key}`")
        return _Found(entry)
    host = _checked(name, host)  # before the store is read
    named = [] if chosen.narrows() else store.named(name)
    if len(named) == 1:
        return _Found(named[0], named=named)
    try:
        resolved = _resolve(name, chosen, host, _sources(named), checked=True)
    except InvalidNameError:
        raise
    except ZooError as exc:
        if chosen.narrows() or not named:
            raise
        return _Found(None, named=named, error=exc)
    entry = store.get(resolved.key)
    if entry is None and resolved.recipe.dtype == "int8" and resolved.recipe.calibration is None:
        entry = stored_int8(store, resolved)  # `--dtype int8` alone: the one int8 entry stored
    return _Found(entry, resolved, named)


def _sources(entries: Iterable[Entry]) -> list[str]:
    """The sources that made ``entries``: asked first when their name is resolved again."""
    return [e.record.ref.partition(":")[0] for e in entries if ":" in (e.record.ref or "")]


def _named(name: str, store: Store | None, chosen: Selection, remake: bool = False) -> tuple[Resolved, Entry | None]:
    """What ``name`` asks to make, and the stored entry when ``name`` is its key (or a unique
    prefix): that entry's recorded recipe; otherwise the model name resolved once with
    ``chosen`` (the sources of entries stored under it asked first). Without a ``store`` no key
    is looked up. ``remake``: the entry is about to be made again, so a key whose ``zoo.json``
    cannot be used is made from the record its model file carries, and a name must resolve
    (otherwise the one entry stored under a name that no longer resolves is still found)."""
    key = _by_key(name, store, chosen) if store is not None else None
    if key is not None:
        assert store is not None
        try:
            stored = store.get(key)
        except RecordError:
            if not remake:
                raise
            return remade_from_carried(store, key), None
        if stored is None:  # its directory holds no zoo.json: a miss, made again from what its model carries
            return remade_from_carried(store, key), None
        return resolved_from_record(stored), stored
    if store is None:
        return _resolve(name, chosen), None
    host = _checked(name)
    named: list[Entry] = []

    def stored_under() -> list[str]:  # the index is read only for a bare name that is no alias
        named[:] = [] if chosen.narrows() else store.named(name)
        return _sources(named)

    try:
        return _resolve(name, chosen, host, stored_under, checked=True), None
    except InvalidNameError:
        raise
    except ZooError:
        if remake or chosen.narrows():
            raise
        named[:] = named or store.named(name)
        if len(named) != 1:
            raise
        return resolved_from_record(named[0], exact=False), named[0]


def remade_from_carried(store: Store, key: str) -> Resolved:
    """How to make entry ``key`` again when its ``zoo.json`` is unreadable or invalid: from that
    record when it still parses (only its file list is bad), else from the record its model file
    carries, when either names this very key. Otherwise ``RecordError`` saying that it cannot,
    and what works instead (so a repair hint never leads back to the same error)."""
    from .metadata import read_props

    directory = store.entry_dir(key)
    for read in (lambda: Record.load(directory / METADATA_FILE), lambda: read_props(directory / MODEL_FILE)):
        try:
            record = read()
        except (OSError, ValueError, RecordError, FileRefused):
            continue
        if record is None or record.key != key:
            continue
        try:
            return resolved_from_record(Entry(key=key, dir=directory, record=record))
        except (UserError, IntegrityError):
            continue  # it no longer names this key (a local weights path it carries shortened)
    raise RecordError(f"entry {key} cannot be made again from its key: neither its {METADATA_FILE} nor its "
                      f"{MODEL_FILE} can be read to say how it was made; remove it with `zoo rm {key}`, then pull "
                      "the model again by name")


def resolved_from_record(entry: Entry, exact: bool = True) -> Resolved:
    """What ``entry`` was made from (source, name, weights, options, recipe), as recorded.

    ``exact``: refused when it no longer names the same export (a weights file changed since).
    """
    from .recipe import Recipe, cache_key
    from .spec import ModelSpec

    record = entry.record
    source, _, name = record.ref.partition(":")
    try:
        if record.weights is None:
            raise TypeError("no weights recorded")
        spec = ModelSpec(source, name, record.weights.tag, tuple(sorted(record.options.items())))
        recipe = Recipe(**record.recipe.to_dict())
    except (TypeError, UserError) as exc:
        raise IntegrityError(f"entry {entry.key} does not record how it was made ({exc}); "
                             f"remove it with `zoo rm {entry.key}`") from None
    if exact and cache_key(spec, recipe) != entry.key:
        raise UserError(f"entry {entry.key} ({entry.ref}) can no longer be made again: its weights "
                        f"{spec.weights} changed since it was exported; pull the name again instead")
    return Resolved(name=entry.name or entry.ref, spec=spec, recipe=recipe, key=entry.key, alias=None)


def entries(pattern: str | None = None, *, store: Store | None = None) -> list[Entry]:
    """Every complete entry in the store; with ``pattern`` (shell-style, e.g. ``'resnet*'``),
    those whose name or ref matches it."""
    return _matching(list((store or Store()).entries()), pattern)


def scan(pattern: str | None = None, *, store: Store | None = None) -> tuple[list[Entry], list[tuple[str, str]]]:
    """The readable entries (those ``pattern`` matches, as in ``entries``), and ``(key, problem)``
    for each entry whose record is broken: all of them, as a broken record has no name to match."""
    found: list[Entry] = []
    broken: list[tuple[str, str]] = []
    for key, item in (store or Store()).scan():
        if isinstance(item, Entry):
            found.append(item)
        else:
            broken.append((key, str(item)))
    return _matching(found, pattern), broken


def _matching(found: list[Entry], pattern: str | None) -> list[Entry]:
    from .source import match

    return [e for e in found if match([e.name], pattern) or match([e.ref], pattern)] if pattern else found


def remove(name: str, *, store: Store | None = None, **selection: Any) -> Entry | str:
    """Remove the entry for ``name`` (with the selection that picked it).

    ``name`` may be a store key (or a unique prefix of 6 characters or more): that entry
    goes even when its record is broken, and its key is returned instead of the entry.
    """
    store = store or Store()
    chosen = Selection(**selection)
    key = _by_key(name, store, chosen)
    if key is not None:
        try:
            entry: Entry | str | None = store.get(key)
        except IntegrityError:  # a broken record, or another entry's files: the key goes all the same
            entry = None
        store.remove(key)
        return entry or key
    found = _lookup(name, store, chosen)
    if found.entry is None:
        raise found.missing(name)
    store.remove(found.entry.key)
    return found.entry


def _by_key(name: str, store: Store, chosen: Selection | None = None) -> str | None:
    """The stored key ``name`` names (the key, or a unique prefix of at least 6 characters).

    A key names one entry, recipe and all: weights or recipe flags given with it are refused,
    never ignored (``--opset 13`` must not hand out an opset-18 file).
    """
    if not _KEY_PREFIX.fullmatch(name):
        return None
    keys = store.keys(name)
    if len(keys) > 1:
        raise NotInStoreError(f"{name} is the start of several stored keys ({', '.join(keys)}): give more of it")
    given = chosen.given() if chosen is not None else []
    if keys and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UserError(f"{name} is a store key: it names one entry, recipe and all, so {flags} cannot "
                        "select another; give the key alone, or name the model instead")
    return keys[0] if keys else None


def verify(name: str | None = None, *, store: Store | None = None, **selection: Any) -> list[dict[str, Any]]:
    """Re-hash stored files; one report per entry (and per broken entry directory)."""
    store = store or Store()
    if name:
        targets, broken = [find(name, store=store, **selection)], []
    else:  # one pass over the store: entries and broken ones alike
        targets, broken = scan(store=store)
    reports = [
        {"name": e.name, "ref": e.ref, "key": e.key, "problems": store.verify(e)} for e in targets
    ]
    reports += [{"name": None, "ref": None, "key": key, "problems": [problem]} for key, problem in broken]
    return reports


def gc(*, store: Store | None = None, max_age_s: float | None = None) -> list[Path]:
    """Remove what writers that died left; ``max_age_s`` only for writers on other hosts."""
    store = store or Store()
    return store.collect_garbage() if max_age_s is None else store.collect_garbage(max_age_s)


def available(pattern: str | None = None, *, registry: str | Path | None = None,
              on_error: Callable[[str, str], None] | None = None) -> list[dict[str, Any]]:
    """What can be pulled: registry aliases, then every source's catalogue.

    ``pattern`` is shell-style: a bare one (``resnet*``) matches aliases and every source's
    model names; ``SOURCE:PATTERN`` (``timm:*``) lists that source's matching models only.
    A source whose catalogue fails is reported to ``on_error(source, reason)`` and left out,
    so one broken plugin does not hide the others; without ``on_error`` it is raised.
    """
    from .errors import ZooError
    from .names import split_ref
    from .source import Pattern, match

    host = get_host()
    only, pattern = split_ref(pattern) if pattern else (None, pattern)
    rows: list[dict[str, Any]] = []
    if only is None:
        for alias in Registry.load(registry):
            if match([alias.alias], pattern):
                rows.append({"name": alias.alias, "ref": alias.ref, "kind": "alias",
                             "description": alias.description, "task": _task(host, alias.source, alias.name)})
    for source_name in [only] if only else sorted(host.sources):
        source = host.source(source_name)
        try:  # named: the user asked for this source, so one that cannot list says why
            models = source.models(Pattern(pattern) if only else (pattern or None))
            listed = [(model, source.description(model) or "") for model in models]
        except ZooError as exc:
            if on_error is None or only:
                raise
            on_error(source_name, f"{exc}; left out of the list")
            continue
        for model, description in listed:
            rows.append({"name": f"{source_name}:{model}", "ref": f"{source_name}:{model}",
                         "kind": "model", "description": description, "task": source.task(model)})
    return rows


def _task(host: PluginHost, source: str, model: str) -> str:
    """A catalogue row's task; an alias to a source not loaded is listed as classification."""
    return host.source(source).task(model) if source in host.sources else "classification"


def plugins() -> list[PluginInfo]:
    """Every plugin the host knows: loaded, failed or skipped."""
    return list(get_host().plugins.values())


def plugin_problems() -> list[str]:
    """What the CLI warns about: plugins that failed to load, ``ZOO_LOAD_PLUGINS`` names matching none."""
    return get_host().problems()


def plugin_commands(taken: set[str]) -> dict[str, Any]:
    """Plugins' extra CLI commands (``zoo_register_commands``), minus names already ``taken``."""
    return get_host().register_commands(taken)


def locate(name: str, *, progress: Progress | None = None, force: bool = False, remote: str | bool | None = None,
           upload: bool = True, **selection: Any) -> Target:
    """``name`` as a runnable model: a ``.onnx`` file, else the store entry (pulled on a miss,
    or exported again with ``force``; ``remote`` and ``upload`` as for ``pull``).

    A stored entry whose files no longer match their recorded sizes and hashes is refused.
    """
    return _locate(name, Selection(**selection), progress, force, remote, upload)


def _locate(name: str, chosen: Selection, progress: Progress | None, force: bool, remote: str | bool | None,
            upload: bool, found: _Found | None = None) -> Target:
    """``locate`` with the selection built once; ``found``: the lookup already made (bench's)."""
    if name.endswith(".onnx"):
        return read_file(name)
    store = Store()
    if found is None and not force:
        try:
            found = _lookup(name, store, chosen)
        except NotInStoreError:  # e.g. `--dtype int8` with none stored: the pull says what it needs
            found = None
    entry = found.entry if found is not None else None
    if entry is None:
        if found is not None and found.resolved is not None:  # resolved once: the pull uses it
            resolved, stored = found.resolved, None
        else:
            resolved, stored = _named(name, store, chosen, force)
        entry = _pull(name, store, resolved, stored, force, progress, remote, upload).entry
    return _verified(store, entry, name)


def _verified(store: Store, entry: Entry, name: str) -> Target:
    """``entry`` as a runnable target once its files match their record (trusted hashes), or
    ``IntegrityError`` naming the command that repairs it."""
    problems = store.verify(entry, store.trusted_hashes(entry.key))
    if problems:
        raise IntegrityError(f"stored {name} ({entry.key}) does not match its record ({'; '.join(problems)}); "
                             f"{repair_hint(entry.key)}")
    return Target(path=entry.model_path, record=entry.record, entry=entry, verified=True)


def info(name: str, *, store: Store | None = None, **selection: Any) -> Target:
    """The record of ``name`` and its path: a stored entry (never pulled), or a ``.onnx`` file.

    ``Target.record`` is ``None`` for a file zoo did not make.
    """
    if name.endswith(".onnx"):
        return read_file(name)
    entry = find(name, store=store, **selection)
    return Target(path=entry.model_path, record=entry.record, entry=entry)


def run(name: str, *, provider: str = "cpu", images: Sequence[str | Path] = (), input_file: str | Path | None = None,
        output_file: str | Path | None = None, topk: int = 5, runtime: ProviderOptions | None = None,
        preprocessing: Mapping[str, Any] | None = None, labels: Sequence[str] | None = None,
        preprocess_like: str | None = None, progress: Progress | None = None, force: bool = False,
        remote: str | bool | None = None, upload: bool = True, threshold: float | None = None,
        save: str | Path | None = None, **selection: Any) -> dict[str, Any]:
    """Run ``name`` (a stored model, pulled on a miss, or a ``.onnx`` file) once with ONNX Runtime.

    ``threshold`` (detection models; default the record's) and ``save`` (a directory for the
    images with results drawn) as ``zoo run --threshold`` and ``--save``; per task, see
    ``zoo.tasks`` and docs/tasks.md.

    For a ``.onnx`` file without zoo metadata, ``preprocessing`` (fields of
    ``zoo.spec.Preprocessing``, ``size`` for a square input), ``labels`` and
    ``preprocess_like`` (a stored or buildable model whose preprocessing to copy) say how
    images become its input. Returns what ``zoo run --json`` prints: ``provider`` (the one
    that really ran), ``predictions`` per image and ``outputs``. See ``zoo.runtime``.
    ``force``, ``remote`` and ``upload`` apply to the pull, as for ``pull``.
    """
    from . import runtime as rt

    chosen = Selection(**selection)
    check_provider(provider, runtime)  # before anything is pulled or exported for it
    if name.endswith(".onnx"):
        target = read_file(name)
        given = {**(preprocessing or {}), **({"size": chosen.size} if chosen.size else {})}
        if given or labels is not None or preprocess_like:
            target = _with_preprocessing(target, given, labels, preprocess_like)
    else:
        if preprocessing or labels is not None or preprocess_like:
            raise UserError("preprocessing and label flags are for .onnx files; a stored model has its own")
        target = _locate(name, chosen, progress, force, remote, upload)
    result = rt.run(target, provider, images, input_file, output_file, topk, chosen.batch, runtime,
                    threshold=threshold, save=save)
    if result.get("provider") == "cpu" and target.record is not None and target.record.dtype == "int8":
        from .quantize import uncovered_cpu

        warning = uncovered_cpu(target.record)
        if warning:
            warnings.warn(ZooWarning(warning), stacklevel=2)
    return result


def _with_preprocessing(target: Target, given: Mapping[str, Any], labels: Sequence[str] | None,
                        like: str | None) -> Target:
    """``target`` with the preprocessing and labels a user gave for a file that carries none."""
    from dataclasses import fields, replace

    from .spec import Preprocessing

    like_pre, like_labels = _like(like) if like else (None, None)
    pre = like_pre or target.preprocessing or Preprocessing()
    known = {f.name for f in fields(Preprocessing)}
    unknown = set(given) - known - {"size"}
    if unknown:
        raise UserError(f"unknown preprocessing field(s) {', '.join(sorted(unknown))}: use {', '.join(sorted(known))}")
    if given.get("size"):
        pre = pre.resized_to(int(given["size"]))
    overrides = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in given.items() if k != "size"}
    pre = replace(pre, **overrides)
    record = target.record or Record(name=target.path.name, ref="")
    if labels is None and record.labels is None:
        labels = like_labels
    record = replace(record, preprocessing=pre, labels=list(labels) if labels is not None else record.labels)
    return Target(path=target.path, record=record, entry=target.entry)


def _like(name: str) -> tuple[Any, list[str] | None]:
    """A model's preprocessing and labels: from its stored record, else as its source builds it
    (no export)."""
    try:
        record = find(name).record
        if record.preprocessing is not None:
            return record.preprocessing, record.labels
    except NotInStoreError:
        pass
    resolved = resolve_name(name, weights="none")
    built = get_host().source(resolved.spec.source).build(resolved.spec, resolved.recipe)
    return built.preprocessing, built.labels


def bench(name: str, *, provider: str = "cpu", batches: Sequence[int] = (1,), modes: Sequence[str] = ("naive",),
          warmup: int = 10, iterations: int = 50, runtime: ProviderOptions | None = None,
          compare: str | None = None, progress: Progress | None = None, force: bool = False,
          remote: str | bool | None = None, upload: bool = True, **selection: Any) -> list[dict[str, Any]]:
    """Time ``name`` per mode and batch size; one result dict per pair. See ``zoo.benchmark``.

    A static-batch entry runs one batch size, which also selects it; one batch size also
    selects a stored dynamic-batch entry traced at it (``pull --batch 8`` then ``bench --batch
    8``) before the default one. ``force``, ``remote`` and ``upload`` apply to the pull, as for
    ``pull``.
    """
    from .benchmark import bench as measure

    chosen = Selection(**selection)
    if chosen.dynamic_batch is False:
        if len(batches) != 1:
            raise UserError("a --static-batch model runs one batch size: give a single --batch")
        chosen = replace(chosen, batch=batches[0])
    check_provider(provider, runtime)  # before anything is pulled or exported for it
    target = None
    found = None
    if not force and not name.endswith(".onnx"):
        store = Store()
        try:
            found = _lookup(name, store, chosen)
        except NotInStoreError:
            found = None
        if len(batches) == 1 and chosen.batch is None:  # an entry traced at this batch size, if stored
            target = _traced(store, name, found, batches[0])
    target = target or _locate(name, chosen, progress, force, remote, upload, found)
    other = locate_stored(compare) if compare not in (None, "torch") else None
    if progress:
        progress("timing")
    reference = (lambda: torch_module(target)) if compare == "torch" else None
    return measure(target, provider, batches, modes, warmup, iterations, runtime, reference, other)


def _traced(store: Store, name: str, found: _Found | None, batch: int) -> Target | None:
    """The stored entry of what ``found`` means, traced at ``batch`` (``pull --batch 8``), verified;
    None when none is stored. Derived from the resolution (or the entry) already made: the name
    is not resolved again."""
    from .recipe import cache_key

    if found is None:
        return None
    if found.resolved is not None:
        made = found.resolved
    elif found.entry is not None:
        try:
            made = resolved_from_record(found.entry, exact=False)
        except ZooError:
            return None
    else:
        return None
    recipe = replace(made.recipe, batch=batch)
    key = cache_key(made.spec, recipe)
    if found.entry is not None and key == found.entry.key:
        return _verified(store, found.entry, name)
    try:
        entry = store.get(key)
    except ZooError:
        return None
    return _verified(store, entry, name) if entry is not None else None


def locate_stored(name: str) -> Target:
    """What ``--compare`` names: a ``.onnx`` file, or a stored entry (key, key prefix or name),
    verified. Never pulls: comparing is with what is there."""
    if name.endswith(".onnx"):
        return read_file(name)
    store = Store()
    try:
        entry = find(name, store=store)
    except UserError as exc:
        raise UserError(f"--compare takes 'torch', a stored KEY or name, or a FILE.onnx; {name!r}: {exc}") from None
    return _verified(store, entry, name)


def evaluate(name: str, data: str | Path, *, labels_map: str | Path | None = None, limit: int | None = None,
             batch: int | None = None, provider: str = "cpu", runtime: ProviderOptions | None = None,
             compare: str | None = None, per_class: bool = False, bars: bool = False,
             progress: Progress | None = None, force: bool = False, remote: str | bool | None = None,
             upload: bool = True, annotations: str | Path | None = None, **selection: Any) -> dict[str, Any]:
    """Top-1/top-5 of ``name`` (a stored model, pulled on a miss, or a ``.onnx`` file) on the labelled
    folder ``data``; ``compare``: ``torch``, or a stored KEY, name or FILE.onnx on the same images.
    A detector: COCO box mAP on the images of ``data`` against ``annotations`` (COCO instances JSON);
    a semantic segmenter: mean IoU on ``data/images`` and their class-index masks ``data/masks``.

    A stored entry keeps the result in its record under ``evaluations``. See ``zoo.accuracy``.
    ``force``, ``remote`` and ``upload`` apply to the pull, as for ``pull``.
    """
    from . import accuracy as evaluation

    chosen = Selection(**selection)
    if chosen.dynamic_batch is False:  # a static-batch entry is selected by the batch it runs
        chosen = replace(chosen, batch=batch or evaluation.DEFAULT_BATCH)
    check_provider(provider, runtime)
    if annotations is not None and not Path(annotations).expanduser().is_file():  # before a pull takes minutes
        raise UserError(f"--annotations {annotations}: no such file; give a COCO instances JSON file")
    target = _locate(name, chosen, progress, force, remote, upload)
    against: Any = None
    if compare == "torch":
        against = lambda: torch_module(target)  # noqa: E731 (built only when the evaluation starts)
    elif compare is not None:
        against = locate_stored(compare)
    result = evaluation.evaluate(target, data, labels_map=labels_map, limit=limit,
                                 batch=batch or evaluation.DEFAULT_BATCH, provider=provider, options=runtime,
                                 compare=compare, against=against, per_class=per_class, bars=bars,
                                 annotations=annotations)
    if target.entry is not None:
        record_evaluation(target.entry.key, result)
    return result


def record_evaluation(key: str, result: dict[str, Any], *, store: Store | None = None) -> None:
    """Add ``result`` to entry ``key``'s ``evaluations`` (by data set fingerprint): the record is
    re-read and rewritten atomically under the key's lock; the model files are untouched."""
    from .accuracy import RECORDED_FAILURES
    from .metadata import now

    summary = {k: v for k, v in result.items() if k not in ("model", "failed_images")}
    summary["failed"] = len(result["failed_images"])
    summary["failed_images"] = [item["path"] for item in result["failed_images"][:RECORDED_FAILURES]]
    summary["created"] = now()
    run = Evaluation.from_json(summary)

    def add(record: Record) -> None:
        record.evaluations = {**(record.evaluations or {}), result["dataset"]["fingerprint"]: run}

    (store or Store()).update_record(key, add)


def torch_module(target: Target) -> tuple[Any, Any]:
    """The PyTorch module ``target`` was exported from, rebuilt by its source plugin, and its dtype."""
    import torch

    record = target.record
    if record is None or record.source is None or record.weights is None:
        raise UserError(f"{target.path.name} carries no zoo metadata, so zoo cannot rebuild it in PyTorch "
                        "for --compare torch")
    if target.entry is not None:
        made = resolved_from_record(target.entry)
    else:  # a bare file carries its record less local paths: its full record may lie beside it
        full = _full_record(target.path, record)
        made = resolved_from_record(Entry(record.key or "", target.path.parent, full), exact=False)
    with _seeded():  # as when it was exported: random init (--weights none) gives the same network
        module = get_host().source(made.spec.source).build(made.spec, made.recipe).module.eval()
    return module, torch.float16 if made.recipe.dtype == "float16" else torch.float32


def remote_list(url: str | None = None) -> list[dict[str, Any]]:
    """The entries on the remote cache at ``url`` (else the configured one: ``ZOO_REMOTE``,
    ``config.toml``), one row each like ``zoo list``'s; each unreadable manifest is a
    ``ZooWarning`` naming it, and the readable ones are still listed."""
    import warnings

    rows, problems = remote_entries(url)
    for problem in problems:
        warnings.warn(ZooWarning(problem), stacklevel=2)
    return rows


def remote_entries(url: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries on the remote cache at ``url`` (else the configured one: ``ZOO_REMOTE``,
    ``config.toml``), and the problems met reading its manifests."""
    from .remote import require_remote

    return require_remote(url).entries()


def remote_verify(url: str | None = None, *, progress: Progress | None = None) -> dict[str, Any]:
    """Re-hash the remote's blobs and check its manifests; ``ok`` is False on any problem."""
    from .remote import require_remote

    return require_remote(url).verify(progress)


def remote_gc(url: str | None = None) -> dict[str, Any]:
    """Remove the remote's blobs that no manifest names (never one young enough to be in flight)."""
    from .remote import require_remote

    return require_remote(url).collect_garbage()


def remote_push(name: str, *, url: str | None = None, progress: Progress | None = None, store: Store | None = None,
                **selection: Any) -> dict[str, Any]:
    """Upload the stored entry ``name`` (a name with its selection, or a key) to the remote cache."""
    from .remote import push as upload

    store = store or Store()
    return upload(find(name, store=store, **selection), url, store, progress)


def check_plugin(name: str, model: str | None = None, *, weights: str | None = "none", exporter: str | None = None,
                 options: Mapping[str, Any] | None = None) -> list[CheckReport]:
    """Check that the source ``name`` (or each source of the plugin called ``name``) follows the
    plugin contract, end to end: catalogue, resolution, build, export, checker and parity (or,
    for a source of ready files, fetch and run). ``model`` defaults to the source's example;
    ``weights`` to ``"none"`` (``None``: the source's default); ``options`` are source options
    (``{"arch": "torchvision:resnet18"}`` for ``local``). A report per source, ``passed`` or not."""
    from .testing import check_plugin as check

    return check(name, model, exporter=exporter, weights=weights, options=dict(options) if options else None)


def _full_record(path: Path, carried: Record) -> Record:
    """The record ``zoo export`` wrote beside the file ``path`` (``zoo.json`` or ``FILE.json``) when it
    is this file's; else ``carried``, the one inside the file."""
    for beside in (path.with_suffix(".json"), path.parent / METADATA_FILE):
        try:
            record = Record.load(beside)
        except (OSError, RecordError):
            continue
        model = record.file(path.name)
        if record.key == carried.key and model is not None and model.size == path.stat().st_size:
            return record
    return carried


def push(name: str, repo_id: str, *, private: bool = False, revision: str | None = None, message: str | None = None,
         bars: bool = False, store: Store | None = None, **selection: Any) -> dict[str, Any]:
    """Upload a stored entry to the Hugging Face Hub repo ``repo_id`` in one commit. See ``zoo.hub``."""
    from . import hub

    store = store or Store()
    entry = find(name, store=store, **selection)
    return hub.push(entry, repo_id, store=store, private=private, revision=revision, message=message, bars=bars)


def _producer(resolved: Resolved, host: PluginHost, progress: Progress | None) -> Callable[[Path], Record]:
    """The function that builds, exports and describes ``resolved`` into a directory."""
    from .exporting import export as run_export
    from .fetching import fetched_record
    from .integrity import check_built_weights, check_pinned_path
    from .metadata import new_record, write_props
    from .quantize import before_build
    from .tasks import record_fields

    say = progress or (lambda _msg: None)

    def produce(directory: Path) -> Record:
        start = time.perf_counter()
        spec, recipe = resolved.spec, resolved.recipe
        source = host.source(spec.source)
        check_pinned_path(spec)  # before any source opens the file
        before_build(recipe)  # int8: refused without images, and said when this CPU will not gain from it
        if source.fetches:  # ready ONNX files: no build, no export (zoo.fetching says what the file is)
            return fetched_record(resolved, host, source, directory, progress)
        say(f"building {spec.ref} (weights {spec.weights})")
        with _seeded(), reporting(progress):  # random init (--weights none): the same on every run
            built = source.build(spec, recipe)
        check_built_weights(spec, built.weights)  # a pin is never silently ignored
        if recipe.size is not None:
            built.preprocessing = built.preprocessing.resized_to(recipe.size)
        result = run_export(built, recipe, directory, say)
        classes = result.outputs[0]["shape"][-1] if result.outputs else None
        if built.labels and isinstance(classes, int) and classes != len(built.labels):
            built.labels = None  # e.g. a fine-tuned head: the source's labels do not apply
        record = new_record(resolved, host, built.source_version, {
            "weights": {"tag": spec.weights, **built.weights},
            "exporter": result.exporter,
            "export_attempts": result.attempts,
            "inputs": result.inputs,
            "outputs": result.outputs,
            "preprocessing": built.preprocessing.to_dict(),
            "labels": built.labels,
            "validation": result.validation,
            # zoo counts the parameters itself: one `params` field whatever the source reports
            "stats": {**built.stats, "params": _count_params(built.module), "onnx_nodes": result.node_count},
            "license": built.license,
            **record_fields(built),
            **({"extra": built.extra} if built.extra else {}),
        })
        record.export_seconds = round(time.perf_counter() - start, 3)
        record = _post_export(host, directory / MODEL_FILE, record, built, resolved, say)
        say("writing metadata")
        write_props(directory / MODEL_FILE, record)
        return record

    return produce


def _post_export(host: PluginHost, path: Path, record: Record, built: Any,
                 resolved: Resolved, say: Progress) -> Record:
    """Plugins' after-export transforms (``zoo_post_export``), each re-validated like the export.

    The hooks see the record as ``zoo.json`` data (they add findings under their own keys);
    it is checked again afterwards like any record.
    """
    if not host.pm.hook.zoo_post_export.get_hookimpls():
        return record
    import torch

    from .exporting import check, describe, example_input, parity

    recipe = resolved.recipe
    example = example_input(built, recipe, max(2, recipe.batch) if recipe.dynamic_batch else recipe.batch)
    with torch.inference_mode():
        expected = built.module(example)
    metadata = record.to_json()

    def validate(candidate: Path) -> None:
        check(candidate)
        if recipe.dtype == "float32":  # a float16 file takes float16 input: checker only
            metadata["validation"] = {**metadata["validation"], **parity(candidate, example, expected)}

    say("running post-export transforms")
    metadata["post_export"] = host.post_export(path, metadata, resolved.spec, recipe, validate)
    metadata["inputs"], metadata["outputs"], nodes = describe(path)
    metadata["stats"] = {**metadata["stats"], "onnx_nodes": nodes}
    try:
        return Record.from_json(metadata, "record")
    except RecordError as exc:
        raise PluginError(f"a zoo_post_export hook left an invalid record: {exc}") from None


@contextmanager
def _seeded(seed: int = 0) -> Iterator[None]:
    """torch's CPU generator seeded for a build, and restored after it (the caller's state is kept)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _count_params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))
