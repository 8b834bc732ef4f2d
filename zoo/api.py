"""zoo as a library: pull, export, list, info, remove, verify.

The CLI is a thin layer over these functions. Recipe flags are keyword arguments named
as in ``Recipe`` (``opset``, ``batch``, ``dynamic_batch``, ``size``, ``dtype``,
``exporter``, ``reparameterize``); ``None`` means "not given".
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NotInStoreError, PluginError
from .exporting import MODEL_FILE, Progress
from .host import PluginHost, PluginInfo, get_host  # noqa: F401 (get_host: CLI)
from .record import Record, RecordError
from .registry import Registry
from .resolve import Resolved, precheck, resolve
from .store import METADATA_FILE, Entry, Store, describe_files, write_json

_KEY_PREFIX = re.compile(r"[0-9a-f]{6,20}")


@dataclass
class PullResult:
    entry: Entry
    cached: bool
    resolved: Resolved

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.resolved.name,
            "ref": self.resolved.spec.ref,
            "path": str(self.entry.model_path),
            "sha256": self.entry.sha256,
            "cached": self.cached,
            "key": self.entry.key,
            "exporter": self.entry.record.exporter,
        }


def resolve_name(
    name: str,
    weights: str | None = None,
    registry: str | Path | None = None,
    host: PluginHost | None = None,
    options: dict[str, Any] | None = None,
    **recipe_flags: Any,
) -> Resolved:
    """Resolve ``name`` and recipe flags to a spec, recipe and cache key.

    ``options``: source settings for a ``source:name`` ref (``{"arch": "timm:repvit_m0_9"}``
    for ``local:PATH``), passed to the source's ``spec`` method.
    """
    precheck(name)  # a name that could act as a path is refused before any file is read
    host = host or get_host()
    precheck(name, host)
    return resolve(name, host, Registry.load(registry), weights, recipe_flags, options)


def pull(
    name: str,
    weights: str | None = None,
    registry: str | Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
    store: Store | None = None,
    options: dict[str, Any] | None = None,
    **recipe_flags: Any,
) -> PullResult:
    """The stored entry for ``name``, building and exporting it on a miss."""
    store = store or Store()
    resolved = resolve_name(name, weights, registry, options=options, **recipe_flags)
    if not force and (entry := store.get(resolved.key)) is not None:
        return PullResult(entry, True, resolved)
    produce = _producer(resolved, get_host(), progress)
    entry, created = store.create(resolved.key, produce, force=force)
    return PullResult(entry, not created, resolved)


def export(
    name: str,
    out_dir: str | Path,
    weights: str | None = None,
    registry: str | Path | None = None,
    progress: Progress | None = None,
    options: dict[str, Any] | None = None,
    **recipe_flags: Any,
) -> Entry:
    """Export ``name`` into a directory of the user's choosing (``model.onnx`` + ``zoo.json``).

    Files are written next to the target first and moved in when complete. ``options`` as
    in ``resolve_name`` (``zoo export local:ckpt.pth --arch timm:repvit_m0_9``).
    """
    out = Path(out_dir).expanduser()
    resolved = resolve_name(name, weights, registry, options=options, **recipe_flags)
    produce = _producer(resolved, get_host(), progress)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".zoo-export.", dir=out))
    try:
        record = produce(tmp)
        record.files = describe_files(tmp)
        write_json(tmp / METADATA_FILE, record.to_json())
        for path in sorted(tmp.iterdir()):
            path.replace(out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Entry(key=resolved.key, dir=out, record=record)


def find(
    name: str,
    weights: str | None = None,
    registry: str | Path | None = None,
    store: Store | None = None,
    **recipe_flags: Any,
) -> Entry:
    """The stored entry for ``name`` and recipe, or ``NotInStoreError``.

    With no weights or recipe flags given, a single stored entry pulled under this name
    (or ref) is found whatever its recipe; several are an error listing them.
    """
    store = store or Store()
    by_key = _by_key(name, store)
    if by_key is not None:
        entry = store.get(by_key)
        if entry is None:
            raise RecordError(f"entry {by_key} has no {METADATA_FILE}; remove it with `zoo rm {by_key}`")
        return entry
    resolved = resolve_name(name, weights, registry, **recipe_flags)
    entry = store.get(resolved.key)
    if entry is not None:
        return entry
    if weights is None and all(v is None for v in recipe_flags.values()):
        named = [e for e in store.entries() if name in (e.name, e.ref, e.record.alias)]
        if len(named) == 1:
            return named[0]
        if named:
            choices = "; ".join(f"{e.key} (weights {e.summary()['weights']}, recipe "
                                f"{e.record.recipe})" for e in named)
            raise NotInStoreError(f"several stored entries match {name}: {choices}; "
                                  "select one with --weights and recipe flags")
    raise NotInStoreError(f"{name} ({resolved.spec.ref}, weights {resolved.spec.weights}) "
                          f"is not in the store: run `zoo pull {name}` first")


def entries(store: Store | None = None) -> list[Entry]:
    return list((store or Store()).entries())


def scan(store: Store | None = None) -> tuple[list[Entry], list[tuple[str, str]]]:
    """The readable entries, and ``(key, problem)`` for each entry whose record is broken."""
    found: list[Entry] = []
    broken: list[tuple[str, str]] = []
    for key, item in (store or Store()).scan():
        if isinstance(item, Entry):
            found.append(item)
        else:
            broken.append((key, str(item)))
    return found, broken


def remove(name: str, store: Store | None = None, **kwargs: Any) -> Entry | str:
    """Remove the entry for ``name`` (with the recipe flags that selected it).

    ``name`` may be a store key (or a unique prefix of 6 characters or more): that entry
    goes even when its record is broken, and its key is returned instead of the entry.
    """
    store = store or Store()
    key = _by_key(name, store)
    if key is not None:
        try:
            entry: Entry | str | None = store.get(key)
        except RecordError:
            entry = None
        store.remove(key)
        return entry or key
    entry = find(name, store=store, **kwargs)
    store.remove(entry.key)
    return entry


def _by_key(name: str, store: Store) -> str | None:
    """The stored key ``name`` names (the key, or a unique prefix of at least 6 characters)."""
    if not _KEY_PREFIX.fullmatch(name):
        return None
    keys = store.keys(name)
    if len(keys) > 1:
        raise NotInStoreError(f"{name} is the start of several stored keys ({', '.join(keys)}): give more of it")
    return keys[0] if keys else None


def verify(name: str | None = None, store: Store | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Re-hash stored files; one report per entry (and per broken entry directory)."""
    store = store or Store()
    targets = [find(name, store=store, **kwargs)] if name else list(store.entries())
    reports = [
        {"name": e.name, "ref": e.ref, "key": e.key, "problems": store.verify(e)} for e in targets
    ]
    if name is None:
        reports += [{"name": None, "ref": None, "key": key, "problems": [problem]}
                    for key, problem in store.broken()]
    return reports


def gc(store: Store | None = None, max_age_s: float | None = None) -> list[Path]:
    """Remove temp dirs left by writers that died (or older than ``max_age_s``)."""
    store = store or Store()
    return store.collect_garbage() if max_age_s is None else store.collect_garbage(max_age_s)


def available(pattern: str | None = None, registry: str | Path | None = None,
              on_error: Callable[[str, str], None] | None = None) -> list[dict[str, Any]]:
    """What can be pulled: registry aliases, then every source's catalogue.

    A source whose catalogue raises is reported to ``on_error(source, reason)`` and left out,
    so one broken plugin does not hide the others; without ``on_error`` it is a ``PluginError``.
    """
    from .source import match

    host = get_host()
    reg = Registry.load(registry)
    rows: list[dict[str, Any]] = []
    for alias in reg:
        if match([alias.alias], pattern):
            rows.append({"name": alias.alias, "ref": alias.ref, "kind": "alias",
                         "description": alias.description})
    for source_name, source in sorted(host.sources.items()):
        try:
            models = list(source.models(pattern))
        except Exception as exc:
            plugin = host.source_plugin(source_name)
            reason = (f"the catalogue of source {source_name} (plugin {plugin.name}, from "
                      f"{plugin.distribution}) failed: {type(exc).__name__}: {exc}".splitlines()[0])
            if on_error is None:
                raise PluginError(reason) from exc
            on_error(source_name, reason)
            continue
        for model in models:
            rows.append({"name": f"{source_name}:{model}", "ref": f"{source_name}:{model}",
                         "kind": "model", "description": ""})
    return rows


def plugins() -> list[PluginInfo]:
    return list(get_host().plugins.values())


def run(name: str, provider: str = "cpu", images: list[str | Path] | tuple[()] = (),
        input_file: str | Path | None = None, output_file: str | Path | None = None, topk: int = 5,
        options: Any = None, **selection: Any) -> dict[str, Any]:
    """Run ``name`` (a stored model, pulled on a miss, or a ``.onnx`` file) once with ONNX Runtime.

    Returns what ``zoo run --json`` prints: ``provider`` (the one that really ran),
    ``predictions`` per image and ``outputs``. See ``zoo.runtime``.
    """
    from . import runtime

    target = runtime.locate(name, selection)
    return runtime.run(target, provider, images, input_file, output_file, topk, selection.get("batch"), options)


def bench(name: str, provider: str = "cpu", batches: tuple[int, ...] = (1,), modes: tuple[str, ...] = ("naive",),
          warmup: int = 10, iterations: int = 50, options: Any = None, compare: str | None = None,
          **selection: Any) -> list[dict[str, Any]]:
    """Time ``name`` per mode and batch size; one result dict per pair. See ``zoo.benchmark``."""
    from . import runtime
    from .benchmark import bench as measure

    target = runtime.locate(name, selection)
    return measure(target, provider, batches, modes, warmup, iterations, options, compare)


def _producer(resolved: Resolved, host: PluginHost, progress: Progress | None) -> Callable[[Path], Record]:
    """The function that builds, exports and describes ``resolved`` into a directory."""
    from .exporting import export as run_export
    from .integrity import check_built_weights, check_pinned_path
    from .metadata import write_props

    say = progress or (lambda _msg: None)

    def produce(directory: Path) -> Record:
        start = time.perf_counter()
        spec, recipe = resolved.spec, resolved.recipe
        source = host.source(spec.source)
        check_pinned_path(spec)  # before any source opens the file
        if callable(getattr(source, "fetch", None)):  # ready ONNX files: no build, no export
            return _fetched(resolved, host, source, directory, progress, start)
        say(f"building {spec.ref} (weights {spec.weights})")
        with _seeded():  # random init (--weights none) is the same on every run: same key, same bytes
            built = source.build(spec, recipe)
        check_built_weights(spec, built.weights)  # a pin is never silently ignored
        if recipe.size is not None:
            built.preprocessing = built.preprocessing.resized_to(recipe.size)
        result = run_export(built, recipe, directory, say)
        classes = result.outputs[0]["shape"][-1] if result.outputs else None
        if built.labels and isinstance(classes, int) and classes != len(built.labels):
            built.labels = None  # e.g. a fine-tuned head: the source's labels do not apply
        record = _new_record(resolved, host, built.source_version, {
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
            **({"extra": built.extra} if built.extra else {}),
        })
        record.export_seconds = round(time.perf_counter() - start, 3)
        record = _post_export(host, directory / MODEL_FILE, record, built, resolved, say)
        say("writing metadata")
        write_props(directory / MODEL_FILE, record)
        return record

    return produce


def _fetched(resolved: Resolved, host: PluginHost, source: Any, directory: Path,
             progress: Progress | None, start: float) -> Record:
    """The record of a source's ready ONNX files (``Source.fetch``).

    The files are stored byte for byte as fetched (no ``metadata_props`` written, no
    post-export hooks), so their hashes still match where they came from.
    """
    spec = resolved.spec
    if progress:
        progress(f"fetching {spec.ref}")
    parts = dict(source.fetch(spec, resolved.recipe, directory, progress))
    version = parts.pop("source_version", None)
    record = _new_record(resolved, host, version, parts)
    record.fetch_seconds = round(time.perf_counter() - start, 3)
    return record


def _new_record(resolved: Resolved, host: PluginHost, source_version: str | None, described: dict[str, Any]) -> Record:
    """The record of a new entry: what zoo knows of ``resolved``, plus what the source ``described``.

    It goes through the same check as a record read from disk, so a source that describes
    its model out of bounds (a resize of a million pixels, a label list of the wrong kind)
    is refused here, naming the field, before anything is stored.
    """
    from .metadata import SCHEMA, now, toolchain

    spec = resolved.spec
    plugin = host.source_plugin(spec.source)
    data = {
        "schema": SCHEMA,
        "name": resolved.name,
        "alias": resolved.alias.alias if resolved.alias else None,
        "ref": spec.ref,
        "key": resolved.key,
        "source": {"name": spec.source, "plugin": plugin.name, "distribution": plugin.distribution,
                   "version": source_version or plugin.version},
        "options": dict(spec.options),
        "recipe": resolved.recipe.to_dict(),
        **described,
        "toolchain": toolchain(),
        "created": now(),
    }
    try:
        return Record.from_json(data, "record")
    except RecordError as exc:
        raise PluginError(f"source {spec.source} (plugin {plugin.name}) described the model wrongly: {exc}") from None


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
