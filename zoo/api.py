"""zoo as a library: pull, export, list, info, remove, verify.

The CLI is a thin layer over these functions. Recipe flags are keyword arguments named
as in ``Recipe`` (``opset``, ``batch``, ``dynamic_batch``, ``size``, ``dtype``,
``exporter``, ``reparameterize``); ``None`` means "not given".
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NotInStoreError
from .exporting import MODEL_FILE, Progress
from .host import PluginHost, PluginInfo, get_host  # noqa: F401 (get_host: CLI)
from .registry import Registry
from .resolve import Resolved, precheck, resolve
from .store import METADATA_FILE, Entry, Store, describe_files, write_json


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
            "exporter": self.entry.metadata.get("exporter"),
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
        metadata = produce(tmp)
        metadata["files"] = describe_files(tmp)
        write_json(tmp / METADATA_FILE, metadata)
        for path in sorted(tmp.iterdir()):
            path.replace(out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Entry(key=resolved.key, dir=out, metadata=metadata)


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
    resolved = resolve_name(name, weights, registry, **recipe_flags)
    entry = store.get(resolved.key)
    if entry is not None:
        return entry
    if resolved.recipe.dtype == "int8" and resolved.recipe.calibration is None:
        from .quantize import stored_int8

        return stored_int8(store, resolved)  # `--dtype int8` alone: the one int8 entry stored
    if weights is None and all(v is None for v in recipe_flags.values()):
        named = [e for e in store.entries() if name in (e.name, e.ref, e.metadata.get("alias"))]
        if len(named) == 1:
            return named[0]
        if named:
            choices = "; ".join(f"{e.key} (weights {e.summary()['weights']}, recipe "
                                f"{e.metadata.get('recipe')})" for e in named)
            raise NotInStoreError(f"several stored entries match {name}: {choices}; "
                                  "select one with --weights and recipe flags")
    raise NotInStoreError(f"{name} ({resolved.spec.ref}, weights {resolved.spec.weights}) "
                          f"is not in the store: run `zoo pull {name}` first")


def entries(store: Store | None = None) -> list[Entry]:
    return list((store or Store()).entries())


def remove(name: str, store: Store | None = None, **kwargs: Any) -> Entry:
    """Remove the entry for ``name`` (with the recipe flags that selected it)."""
    store = store or Store()
    entry = find(name, store=store, **kwargs)
    store.remove(entry.key)
    return entry


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
    from .errors import PluginError
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


def _producer(
    resolved: Resolved, host: PluginHost, progress: Progress | None
) -> Callable[[Path], dict[str, Any]]:
    """The function that builds, exports and describes ``resolved`` into a directory."""
    from .exporting import export as run_export
    from .integrity import check_built_weights, check_pinned_path
    from .metadata import SCHEMA, now, toolchain, write_props
    from .quantize import require_calibration

    say = progress or (lambda _msg: None)

    def produce(directory: Path) -> dict[str, Any]:
        start = time.perf_counter()
        spec, recipe = resolved.spec, resolved.recipe
        source = host.source(spec.source)
        check_pinned_path(spec)  # before any source opens the file
        require_calibration(recipe)  # int8 without images: refused before anything is built
        if callable(getattr(source, "fetch", None)):  # ready ONNX files: no build, no export
            return _fetched(resolved, host, source, directory, progress, start)
        say(f"building {spec.ref} (weights {spec.weights})")
        built = source.build(spec, recipe)
        check_built_weights(spec, built.weights)  # a pin is never silently ignored
        if recipe.size is not None:
            built.preprocessing = built.preprocessing.resized_to(recipe.size)
        result = run_export(built, recipe, directory, say)
        classes = result.outputs[0]["shape"][-1] if result.outputs else None
        if built.labels and isinstance(classes, int) and classes != len(built.labels):
            built.labels = None  # e.g. a fine-tuned head: the source's labels do not apply
        plugin = host.source_plugin(spec.source)
        metadata: dict[str, Any] = {
            "schema": SCHEMA,
            "name": resolved.name,
            "alias": resolved.alias.alias if resolved.alias else None,
            "ref": spec.ref,
            "key": resolved.key,
            "source": {
                "name": spec.source,
                "plugin": plugin.name,
                "distribution": plugin.distribution,
                "version": built.source_version or plugin.version,
            },
            "weights": {"tag": spec.weights, **built.weights},
            "options": dict(spec.options),
            "recipe": recipe.to_dict(),
            "exporter": result.exporter,
            "export_attempts": result.attempts,
            "inputs": result.inputs,
            "outputs": result.outputs,
            "preprocessing": built.preprocessing.to_dict(),
            "labels": built.labels,
            "validation": result.validation,
            "stats": {"params": _count_params(built.module), "onnx_nodes": result.node_count,
                      **built.stats},
            "license": built.license,
            "toolchain": toolchain(),
            "created": now(),
            "export_seconds": round(time.perf_counter() - start, 3),
            **({"extra": built.extra} if built.extra else {}),
        }
        _post_export(host, directory / MODEL_FILE, metadata, built, resolved, say)
        say("writing metadata")
        write_props(directory / MODEL_FILE, metadata)
        return metadata

    return produce


def _fetched(resolved: Resolved, host: PluginHost, source: Any, directory: Path,
             progress: Progress | None, start: float) -> dict[str, Any]:
    """Metadata for a source's ready ONNX files (``Source.fetch``).

    The files are stored byte for byte as fetched (no ``metadata_props`` written, no
    post-export hooks), so their hashes still match where they came from.
    """
    from .metadata import SCHEMA, now, toolchain

    spec = resolved.spec
    if progress:
        progress(f"fetching {spec.ref}")
    parts = source.fetch(spec, resolved.recipe, directory, progress)
    plugin = host.source_plugin(spec.source)
    return {
        "schema": SCHEMA,
        "name": resolved.name,
        "alias": resolved.alias.alias if resolved.alias else None,
        "ref": spec.ref,
        "key": resolved.key,
        "source": {"name": spec.source, "plugin": plugin.name, "distribution": plugin.distribution,
                   "version": parts.pop("source_version", None) or plugin.version},
        "options": dict(spec.options),
        "recipe": resolved.recipe.to_dict(),
        **parts,
        "toolchain": toolchain(),
        "created": now(),
        "fetch_seconds": round(time.perf_counter() - start, 3),
    }


def _post_export(host: PluginHost, path: Path, metadata: dict[str, Any], built: Any,
                 resolved: Resolved, say: Progress) -> None:
    """Plugins' after-export transforms (``zoo_post_export``), each re-validated like the export."""
    if not host.pm.hook.zoo_post_export.get_hookimpls():
        return
    import torch

    from .exporting import check, describe, example_input, parity

    recipe = resolved.recipe
    example = example_input(built, recipe, max(2, recipe.batch) if recipe.dynamic_batch else recipe.batch)
    with torch.inference_mode():
        expected = built.module(example)

    def validate(candidate: Path) -> None:
        check(candidate)
        if recipe.dtype == "float32":  # a float16 file takes float16 input: checker only
            metadata["validation"] = {**metadata["validation"], **parity(candidate, example, expected)}

    say("running post-export transforms")
    metadata["post_export"] = host.post_export(path, metadata, resolved.spec, recipe, validate)
    metadata["inputs"], metadata["outputs"], metadata["stats"]["onnx_nodes"] = describe(path)


def _count_params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))
