"""Conformance kit for source plugins: exercise one source end to end, step by step.

From pytest::

    from zoo.testing import check_source

    def test_my_source_conforms():
        check_source("mysource", model="tiny").assert_ok()

From the shell: ``zoo plugins check mysource [--model tiny]``. Each step is reported as
pass, fail (with the reason) or skip (an earlier step it needs failed). Building uses
``--weights none``, so no weights are downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import PluginFailure, UnknownModelError, UserError, ZooError, one_line
from .exporting import MODEL_FILE, check, detection_parity, export_recipe, segmentation_parity
from .exporting import export as run_export
from .exporting import parity as compare
from .host import GuardedSource, PluginHost, PluginInfo, get_host
from .recipe import Recipe, cache_key
from .registry import Alias, Registry
from .resolve import Resolved, precheck, resolve
from .source import Pattern, implements
from .spec import BuiltModel, ModelSpec, Preprocessing
from .tasks import CLASSIFICATION, DETECTING, SEMANTIC_SEGMENTATION, TaskOutputs
from .tasks import check as check_task

HEAVY_MODULES = ("torch", "torchvision", "timm", "onnx", "onnxruntime", "transformers")
UNKNOWN_NAME = "zoo-conformance-no-such-model"
ALIAS_NAME = "zoo-conformance-alias"


@dataclass
class Step:
    """One check: ``status`` is "pass", "fail" or "skip"; ``detail`` says what was seen."""

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class CheckReport:
    """The steps run against one source, in order."""

    source: str
    model: str | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.status == "pass" for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "model": self.model, "passed": self.passed,
                "steps": [asdict(step) for step in self.steps]}

    def format(self) -> str:
        lines = [f"{self.source}" + (f" ({self.model})" if self.model else "")]
        for step in self.steps:
            lines.append(f"  {step.status.upper():<4} {step.name:<10} {step.seconds:7.2f}s  {step.detail}")
        lines.append("  passed" if self.passed else "  FAILED")
        return "\n".join(lines)

    def assert_ok(self) -> CheckReport:
        """Raise ``AssertionError`` with the whole report unless every step passed."""
        if not self.passed:
            raise AssertionError("source conformance failed:\n" + self.format())
        return self


class _StandIn:
    """A source that is only its name and a ``resolve``: for the ``blame`` step."""

    def __init__(self, name: str, resolve: Callable[[str], Any]) -> None:
        self.name, self.resolve = name, resolve


class _Failed(Exception):
    """A step's check did not hold; the message is the reason."""


class SourceCheck:
    """The conformance kit for one source: one method per step, run in order by ``run``.

    Each step returns what it saw (the report's detail) or raises ``_Failed`` with the
    reason; a step whose inputs an earlier step failed to produce is skipped. Calls go
    through the host's guarded source, as zoo's own commands make them.
    """

    def __init__(self, name: str, model: str | None, host: PluginHost, light: bool, weights: str | None,
                 options: dict[str, Any] | None, recipe_flags: dict[str, Any]) -> None:
        self.name, self.host, self.light = name, host, light
        self.weights, self.options, self.recipe_flags = weights, options, recipe_flags
        self.report = CheckReport(source=name, model=model)
        self.failed: set[str] = set()
        # What the steps learn, for the steps after them.
        self.model = model
        self.source: GuardedSource | None = None
        self.info: PluginInfo | None = None
        self.resolved: Resolved | None = None
        self.built: BuiltModel | None = None
        self.directory = Path()
        self.path = Path()

    def run(self) -> CheckReport:
        with tempfile.TemporaryDirectory(prefix="zoo-check.") as directory:
            self.directory = Path(directory)
            self._step("plugin", self.plugin)
            if self.light:
                self._step("light", self.light_imports, needs=("plugin",))
            self._step("catalogue", self.catalogue, needs=("plugin",))
            self._step("resolve", self.resolve, needs=("plugin",))
            self._step("alias", self.alias, needs=("resolve",))
            self._step("unknown", self.unknown, needs=("plugin",))
            self._step("blame", self.blame, needs=("plugin",))
            if self.source is not None and self.source.fetches:  # ready ONNX files: nothing to build
                self._step("fetch", self.fetch, needs=("resolve",))
                self._step("checker", self.checker, needs=("fetch",))
                self._step("run", self.run_onnx, needs=("fetch",))
            else:
                self._step("build", self.build, needs=("resolve",))
                self._step("export", self.export, needs=("build",))
                self._step("checker", self.checker, needs=("export",))
                self._step("parity", self.parity, needs=("export",))
        return self.report

    def _step(self, name: str, check: Callable[[], str], needs: tuple[str, ...] = ()) -> None:
        missing = [n for n in needs if n in self.failed]
        if missing:
            self.failed.add(name)
            self.report.steps.append(Step(name, "skip", f"needs {', '.join(missing)}"))
            return
        start = time.perf_counter()
        try:
            detail, status = check(), "pass"
        except _Failed as exc:
            detail, status = str(exc), "fail"
        except Exception as exc:  # anything a plugin raises is a finding, not a crash
            detail, status = one_line(exc, kind=True), "fail"
        if status == "fail":
            self.failed.add(name)
        self.report.steps.append(Step(name, status, detail, round(time.perf_counter() - start, 3)))

    @property
    def _weights(self) -> str | None:
        """The weights to resolve with: a source of ready files gets its own (nothing to initialise)."""
        return None if self.source is not None and self.source.fetches and self.weights == "none" else self.weights

    # -- the steps -----------------------------------------------------------------------
    def plugin(self) -> str:
        """The source is registered by a plugin that loaded, under its own name."""
        source, info = self.host.source(self.name), self.host.source_plugin(self.name)
        if info.error:
            raise _Failed(f"plugin {info.name} failed: {info.error}")
        if getattr(source.wrapped, "name", None) != self.name:
            raise _Failed(f"source.name is {getattr(source.wrapped, 'name', None)!r}, registered as {self.name!r}")
        if not (implements(source.wrapped, "build") or implements(source.wrapped, "fetch")):
            raise _Failed("the source implements neither build nor fetch")
        self.source, self.info = source, info
        return f"registered by plugin {info.name} ({info.distribution or 'no distribution'} {info.version or ''})"

    def light_imports(self) -> str:
        """Importing the plugin and registering its sources imports no heavy library."""
        heavy = _heavy_imports(self.info)
        if heavy:
            raise _Failed(f"importing and registering plugin {self.info.name} imported {', '.join(heavy)}: "
                          "import heavy libraries inside Source.build")
        return "no heavy import at registration"

    def catalogue(self) -> str:
        """``models()`` yields strings and applies its pattern."""
        source = self.source
        names = source.models(Pattern(named=True))  # the kit names the source, as `zoo list --available SOURCE:*`
        if not all(isinstance(n, str) for n in names):
            raise _Failed("models() must yield strings")
        chosen = self.model or source.example or (names[0] if names else None)
        if chosen is None:
            raise _Failed("no model to check: the catalogue is empty; give --model or set Source.example")
        self.model = self.report.model = chosen  # later steps can run even if the checks below fail
        if names and names[0] not in source.models(Pattern(names[0])):
            raise _Failed(f"models({names[0]!r}) does not list {names[0]!r}")
        if source.models(Pattern(UNKNOWN_NAME + "*")):
            raise _Failed(f"models({UNKNOWN_NAME + '*'!r}) is not empty: apply the pattern (zoo.plugin.match)")
        return f"{len(names)} models; checking {chosen}"

    def resolve(self) -> str:
        """``source:model`` resolves to this source with a stable key; ``resolve(model)`` is a spec or None."""
        if self.model is None:
            raise _Failed("no model to check (see catalogue)")
        ref = f"{self.name}:{self.model}"
        resolved = self._resolve(ref)
        if resolved.spec.source != self.name:
            raise _Failed(f"{ref} resolved to source {resolved.spec.source!r}")
        again = self._resolve(ref)
        if again.key != resolved.key:
            raise _Failed(f"the cache key of {ref} is not stable ({resolved.key} then {again.key})")
        claim = self.source.resolve(self.model)
        if claim is not None and not isinstance(claim, ModelSpec):
            raise _Failed(f"resolve() returned {type(claim).__name__}, not ModelSpec or None")
        if claim is not None and claim.source != self.name:
            raise _Failed(f"resolve() returned a spec for source {claim.source!r}")
        self.resolved = resolved
        return f"key {resolved.key}" + ("" if claim else "; does not claim the bare name")

    def alias(self) -> str:
        """A registry alias to ``source:model`` (and the bare name, when claimed) gives the same key."""
        resolved = self.resolved
        alias = Alias(alias=ALIAS_NAME, source=self.name, name=self.model, weights=self._weights,
                      options=dict(self.options or {}), origin="conformance kit")
        via_alias = resolve(ALIAS_NAME, self.host, Registry({ALIAS_NAME: alias}), None, self.recipe_flags)
        if via_alias.key != resolved.key:
            raise _Failed(f"an alias to {resolved.spec.ref} gets key {via_alias.key}, not {resolved.key} "
                          f"({via_alias.spec} vs {resolved.spec}): the same model would be exported twice")
        claim = self.source.resolve(self.model)
        if claim is None:
            return f"alias -> key {via_alias.key}"
        bare = ModelSpec(claim.source, claim.name, self._weights or claim.weights, claim.options)
        if cache_key(bare, resolved.recipe) != resolved.key:
            raise _Failed(f"the bare name {self.model!r} resolves to {bare}, {resolved.spec.ref} to "
                          f"{resolved.spec}: return from resolve() what spec() returns")
        return f"alias and bare name -> key {via_alias.key}"

    def unknown(self) -> str:
        """An unknown name: ``resolve`` gives None (or ``UnknownModelError``), ``build``/``fetch`` a ``ZooError``."""
        source = self.source
        try:
            claim = source.resolve(UNKNOWN_NAME)
        except UnknownModelError:
            claim = None
        if claim is not None:
            raise _Failed(f"resolve({UNKNOWN_NAME!r}) claimed it: return None for names you do not have")
        method = "fetch" if source.fetches else "build"
        try:
            with tempfile.TemporaryDirectory(prefix="zoo-check-unknown.") as scratch:
                if source.fetches:
                    source.fetch(ModelSpec(self.name, UNKNOWN_NAME, source.default_weights), Recipe(),
                                 Path(scratch), None)
                else:
                    source.build(ModelSpec(self.name, UNKNOWN_NAME, "none"), Recipe())
        except PluginFailure as exc:  # not a ZooError: the plugin's own exception escaped
            raise _Failed(f"{method} of an unknown name raised {one_line(exc.__cause__ or exc, kind=True)}: raise "
                          "zoo.plugin.UnknownModelError with a hint instead") from None
        except ZooError as exc:
            return f"{method} raised {type(exc).__name__}: {exc}"
        raise _Failed(f"{method}({UNKNOWN_NAME!r}) succeeded: it should raise UnknownModelError")

    def blame(self) -> str:
        """An exception escaping the plugin's code is reported as that plugin's failure, in one line."""
        wrapped, info = self.source.wrapped, self.info

        def broken(name: str) -> None:
            raise RuntimeError("injected by the conformance kit")

        own = getattr(wrapped, "__dict__", {}).get("resolve")  # an instance attribute to put back
        try:
            wrapped.resolve = broken  # on the instance: the class stays as it is
        except AttributeError:  # a source object that takes no attributes: a stand-in under its plugin
            stand_in = GuardedSource(_StandIn(self.name, broken), info, self.host.source)
            return self._blamed(lambda: stand_in.resolve(UNKNOWN_NAME)) + " (through a stand-in source)"
        try:
            return self._blamed(lambda: self.host.source(self.name).resolve(UNKNOWN_NAME))
        finally:
            if own is None:
                del wrapped.resolve
            else:
                wrapped.resolve = own

    def _blamed(self, call: Callable[[], Any]) -> str:
        info = self.info
        try:
            call()
        except PluginFailure as exc:
            message = str(exc)
        else:
            raise _Failed("an exception from resolve() was not reported")
        expected = [f"plugin {info.name}", info.distribution, info.version, "RuntimeError: injected"]
        missing = [part for part in expected if part and part not in message]
        if missing or "\n" in message:
            raise _Failed(f"the report {message!r} lacks {', '.join(missing) or 'one line'}")
        return message

    def build(self) -> str:
        """``build`` with the resolved spec returns a valid ``BuiltModel``."""
        import torch

        resolved = self.resolved
        built = self.source.build(resolved.spec, resolved.recipe)
        if not isinstance(built, BuiltModel):
            raise _Failed(f"build() returned {type(built).__name__}, not zoo.plugin.BuiltModel")
        if not isinstance(built.module, torch.nn.Module):
            raise _Failed(f"BuiltModel.module is {type(built.module).__name__}, not torch.nn.Module")
        if not isinstance(built.preprocessing, Preprocessing) or len(built.preprocessing.input_size) != 3:
            raise _Failed("BuiltModel.preprocessing must be a Preprocessing with input_size (C, H, W)")
        if built.labels is not None and not all(isinstance(label, str) for label in built.labels):
            raise _Failed("BuiltModel.labels must be None or a list of strings")
        try:
            json.dumps({"weights": built.weights, "stats": built.stats, "extra": built.extra})
        except TypeError as exc:
            raise _Failed(f"weights, stats and extra must be JSON data: {exc}") from None
        declared = self.source.task(resolved.spec.name)
        if built.task != declared:
            raise _Failed(f"BuiltModel.task is {built.task!r} but the source's task() says {declared!r}")
        if built.task != CLASSIFICATION and not isinstance(built.task_outputs, TaskOutputs):
            raise _Failed(f"a {built.task} model needs BuiltModel.task_outputs = zoo.plugin.TaskOutputs(...)")
        try:
            check_task(built.task, built.task_outputs, "BuiltModel")
        except UserError as exc:
            raise _Failed(str(exc)) from None
        if built.task_outputs is not None:
            unknown = sorted(set(built.task_outputs.names()) - set(built.output_names))
            if unknown:
                raise _Failed(f"task_outputs names {', '.join(unknown)}, not among the model's output_names "
                              f"({', '.join(built.output_names)})")
        if resolved.recipe.size is not None:
            built.preprocessing = built.preprocessing.resized_to(resolved.recipe.size)
        self.built = built
        params = sum(p.numel() for p in built.module.parameters())
        labels = len(built.labels) if built.labels else "no"
        return f"{type(built.module).__name__}, {params:,} parameters, input {built.preprocessing.input_size}, " \
               f"{labels} labels, task {built.task}"

    def export(self) -> str:
        """The host's export pipeline (with its own checker and parity) succeeds."""
        result = run_export(self.built, self.resolved.recipe, self.directory)
        self.path = result.path
        failed = [f"{a['exporter']}: {a['error']}" for a in result.attempts if a["error"]]
        fallback = f" after {'; '.join(failed)}" if failed else ""
        return f"{result.exporter} exporter, {result.node_count} nodes, {result.seconds:.1f}s{fallback}"

    def checker(self) -> str:
        """``onnx.checker`` full check of the file."""
        check(self.path)
        return "onnx.checker full_check"

    def parity(self) -> str:
        """ONNX Runtime vs PyTorch on a fresh random input."""
        import torch

        built, recipe = self.built, export_recipe(self.built, self.resolved.recipe)
        batch = max(2, recipe.batch) if recipe.dynamic_batch else recipe.batch
        example = torch.rand(batch, *built.preprocessing.input_size, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            expected = built.module.eval()(example)
        if built.task in DETECTING:
            names = recipe.output_names or built.output_names
            result = detection_parity(self.path, example, expected, tuple(names), built.task_outputs)
            found = result["detections"]
            return f"{found['matched']} of {found['expected']} detections paired ({result['parity']}) " \
                   f"on a fresh input of shape {list(example.shape)}"
        if built.task == SEMANTIC_SEGMENTATION:
            result = segmentation_parity(self.path, example, expected)
            return f"max abs diff {result['max_abs_diff']:.3g}, {100 * result['pixels_agree']:.2f}% of pixels " \
                   f"agree on a fresh input of shape {list(example.shape)}"
        result = compare(self.path, example, expected)
        return f"max abs diff {result['max_abs_diff']:.3g} on a fresh input of shape {list(example.shape)}"

    def fetch(self) -> str:
        """``fetch`` gives a file the store takes: the store's own record, checks and all.

        ``zoo.fetching.fetched_record`` is what a pull runs: the file checked (and against the
        catalogue's sha256), labels against the output width, input size against the input
        shape, every field through the record check. So a PASS here means a pull works.
        """
        from .fetching import fetched_record

        record = fetched_record(self.resolved, self.host, self.source, self.directory, None)
        self.path = self.directory / MODEL_FILE
        shapes = ", ".join(f"{t.name} {t.shape}" for t in record.inputs)
        labels = len(record.labels) if record.labels else "no"
        return f"{self.path.stat().st_size:,} bytes, opset {record.opset}, input {shapes}, {labels} labels; " \
               "the record a pull stores"

    def run_onnx(self) -> str:
        """ONNX Runtime runs the fetched file on a random input, with finite outputs."""
        import numpy as np
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(1)
        feeds = {}
        for value in session.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in value.shape]
            dtype = np.float16 if "float16" in value.type else np.float32
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        outputs = session.run(None, feeds)
        if not all(np.isfinite(np.asarray(o, dtype=np.float64)).all() for o in outputs):
            raise _Failed("outputs contain NaN or inf on a random input")
        return f"{len(outputs)} output(s) {[list(np.shape(o)) for o in outputs]} on ONNX Runtime CPU"

    def _resolve(self, ref: str) -> Resolved:
        precheck(ref, self.host)
        return resolve(ref, self.host, Registry({}), self._weights, self.recipe_flags, self.options)


def check_source(
    name: str,
    model: str | None = None,
    *,
    host: PluginHost | None = None,
    light: bool = True,
    weights: str | None = "none",
    options: dict[str, Any] | None = None,
    **recipe_flags: Any,
) -> CheckReport:
    """Check that source ``name`` follows the contract, end to end, with ``--weights none``.

    Steps (``SourceCheck``'s methods): ``plugin``, ``light`` (skipped with ``light=False``),
    ``catalogue``, ``resolve``, ``alias``, ``unknown``, ``blame``, then ``build``, ``export``,
    ``checker`` and ``parity``; a source of ready ONNX files (``Source.fetch``) gets
    ``fetch``, ``checker`` and ``run`` instead, with its default weights rather than
    ``none``. ``model`` defaults to ``Source.example``, then to the first name of the
    catalogue. Recipe flags (``exporter="torchscript"``...) apply. ``weights`` (default
    ``"none"``; ``None`` = the source's default) and ``options`` (source options, e.g.
    ``{"arch": "torchvision:resnet18"}`` for ``local``) go to the resolver.
    """
    return SourceCheck(name, model, host or get_host(), light, weights, options, recipe_flags).run()


def check_plugin(name: str, model: str | None = None, **kwargs: Any) -> list[CheckReport]:
    """Check a source by name, or every source of the plugin called ``name``."""
    host = kwargs.get("host") or get_host()
    if name in host.sources:
        return [check_source(name, model, **kwargs)]
    info = host.plugins.get(name)
    if info is None:
        known = ", ".join(sorted({*host.sources, *host.plugins})) or "none"
        raise UnknownModelError(f"no source or plugin called {name!r}: known are {known} (see `zoo plugins`)")
    if info.error or info.skipped:
        why = f"plugin {name} failed: {info.error}" if info.error else f"plugin {name} is {info.status}"
        return [CheckReport(source=name, steps=[Step("plugin", "fail", why)])]
    if not info.sources:
        raise UnknownModelError(f"plugin {name!r} registers no source: nothing to check")
    return [check_source(source, model, **kwargs) for source in info.sources]


def _heavy_imports(info: Any) -> list[str]:
    """Heavy modules imported by importing the plugin's module and registering its sources.

    Runs in a fresh interpreter, since this one may have imported torch already.
    """
    module, _, attribute = info.module.partition(":")
    code = f"""
import importlib, json, sys
import zoo.host
zoo.host._builtin_path()
before = set(sys.modules)
target = importlib.import_module({module!r})
for part in {attribute!r}.split("."):
    target = getattr(target, part) if part else target
hook = getattr(target, "zoo_register_sources", None)
if hook is not None:
    hook(register=lambda source: None)
heavy = sorted(m for m in set(sys.modules) - before if m in {HEAVY_MODULES!r})
print(json.dumps(heavy))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise _Failed(f"importing plugin {info.name} in a fresh interpreter failed: {lines[-1] if lines else ''}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
