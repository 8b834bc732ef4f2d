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

from .errors import UnknownModelError, ZooError
from .host import PluginHost, get_host

HEAVY_MODULES = ("torch", "torchvision", "timm", "onnx", "onnxruntime", "transformers")
UNKNOWN_NAME = "zoo-conformance-no-such-model"


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


class _Failed(Exception):
    """A step's check did not hold; the message is the reason."""


class _Runner:
    """Runs steps in order, timing each and skipping those whose inputs are missing."""

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        self.failed: set[str] = set()

    def step(self, name: str, check: Callable[[], str], needs: tuple[str, ...] = ()) -> None:
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
            detail, status = _one_line(exc), "fail"
        if status == "fail":
            self.failed.add(name)
        self.report.steps.append(Step(name, status, detail, round(time.perf_counter() - start, 3)))


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

    Steps: ``plugin`` (registered by a loaded plugin), ``light`` (importing and registering
    the plugin imports no heavy library; skipped with ``light=False``), ``catalogue``
    (``models()``), ``resolve`` (``name:model`` to a spec and a stable cache key),
    ``unknown`` (an unknown name gives None or ``UnknownModelError``-like ``ZooError``),
    ``build`` (a valid ``BuiltModel``), ``export`` (torch.onnx with the recipe, default
    ``auto``), ``checker`` (``onnx.checker`` full check) and ``parity`` (ONNX Runtime vs
    PyTorch on a fresh input). A source of ready ONNX files (``Source.fetch``) gets
    ``fetch``, ``checker`` and ``run`` (ONNX Runtime on a random input) instead, with its
    default weights rather than ``none``. ``model`` defaults to ``Source.example``, then to the
    first name of the catalogue. Recipe flags (``exporter="torchscript"``...) apply.
    ``weights`` (default ``"none"``; ``None`` = the source's default) and ``options`` (source
    options, e.g. ``{"arch": "torchvision:resnet18"}`` for ``local``) go to the resolver.
    """
    from .recipe import Recipe
    from .spec import ModelSpec

    host = host or get_host()
    report = CheckReport(source=name, model=model)
    run = _Runner(report)
    state: dict[str, Any] = {}

    def plugin() -> str:
        source = host.source(name)
        info = host.source_plugin(name)
        if info.error:
            raise _Failed(f"plugin {info.name} failed: {info.error}")
        if getattr(source, "name", None) != name:
            raise _Failed(f"source.name is {getattr(source, 'name', None)!r}, registered as {name!r}")
        state["source"], state["info"] = source, info
        return f"registered by plugin {info.name} ({info.distribution or 'no distribution'} {info.version or ''})"

    def light_() -> str:
        heavy = _heavy_imports(state["info"])
        if heavy:
            raise _Failed(f"importing and registering plugin {state['info'].name} imported {', '.join(heavy)}: "
                          "import heavy libraries inside Source.build")
        return "no heavy import at registration"

    def catalogue() -> str:
        source = state["source"]
        names = list(source.models(None))
        if not all(isinstance(n, str) for n in names):
            raise _Failed("models() must yield strings")
        chosen = model or getattr(source, "example", None) or (names[0] if names else None)
        if chosen is None:
            raise _Failed("no model to check: the catalogue is empty; give --model or set Source.example")
        state["model"] = report.model = chosen  # later steps can run even if the checks below fail
        if names and names[0] not in list(source.models(names[0])):
            raise _Failed(f"models({names[0]!r}) does not list {names[0]!r}")
        if list(source.models(UNKNOWN_NAME + "*")):
            raise _Failed(f"models({UNKNOWN_NAME + '*'!r}) is not empty: apply the pattern (zoo.source.match)")
        return f"{len(names)} models; checking {chosen}"

    def resolve() -> str:
        from .api import resolve_name

        if "model" not in state:
            raise _Failed("no model to check (see catalogue)")
        ref = f"{name}:{state['model']}"
        chosen = None if _fetches(state["source"]) and weights == "none" else weights  # ready files: no init
        resolved = resolve_name(ref, weights=chosen, host=host, options=options, **recipe_flags)
        if resolved.spec.source != name:
            raise _Failed(f"{ref} resolved to source {resolved.spec.source!r}")
        again = resolve_name(ref, weights=chosen, host=host, options=options, **recipe_flags)
        if again.key != resolved.key:
            raise _Failed(f"the cache key of {ref} is not stable ({resolved.key} then {again.key})")
        claim = state["source"].resolve(state["model"])
        if claim is not None and not isinstance(claim, ModelSpec):
            raise _Failed(f"resolve() returned {type(claim).__name__}, not ModelSpec or None")
        if claim is not None and claim.source != name:
            raise _Failed(f"resolve() returned a spec for source {claim.source!r}")
        state["resolved"] = resolved
        return f"key {resolved.key}" + ("" if claim else "; does not claim the bare name")

    def unknown() -> str:
        source = state["source"]
        try:
            claim = source.resolve(UNKNOWN_NAME)
        except UnknownModelError:
            claim = None
        if claim is not None:
            raise _Failed(f"resolve({UNKNOWN_NAME!r}) claimed it: return None for names you do not have")
        spec = ModelSpec(name, UNKNOWN_NAME, getattr(source, "default_weights", "default"))
        method = "fetch" if _fetches(source) else "build"
        try:
            with tempfile.TemporaryDirectory(prefix="zoo-check-unknown.") as scratch:
                if method == "fetch":
                    source.fetch(spec, Recipe(), Path(scratch), None)
                else:
                    source.build(ModelSpec(name, UNKNOWN_NAME, "none"), Recipe())
        except ZooError as exc:
            return f"{method} raised {type(exc).__name__}: {exc}"
        except Exception as exc:
            raise _Failed(f"{method} of an unknown name raised {_one_line(exc)}: raise "
                          "zoo.errors.UnknownModelError with a hint instead") from None
        raise _Failed(f"{method}({UNKNOWN_NAME!r}) succeeded: it should raise UnknownModelError")

    def build() -> str:
        import torch

        from .spec import BuiltModel, Preprocessing

        resolved = state["resolved"]
        built = state["source"].build(resolved.spec, resolved.recipe)
        if not isinstance(built, BuiltModel):
            raise _Failed(f"build() returned {type(built).__name__}, not zoo.BuiltModel")
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
        if resolved.recipe.size is not None:
            built.preprocessing = built.preprocessing.resized_to(resolved.recipe.size)
        state["built"] = built
        params = sum(p.numel() for p in built.module.parameters())
        labels = len(built.labels) if built.labels else "no"
        return f"{type(built.module).__name__}, {params:,} parameters, input {built.preprocessing.input_size}, " \
               f"{labels} labels"

    def export() -> str:
        from .exporting import export as run_export

        result = run_export(state["built"], state["resolved"].recipe, Path(state["dir"]))
        state["path"] = result.path
        failed = [f"{a['exporter']}: {a['error']}" for a in result.attempts if a["error"]]
        fallback = f" after {'; '.join(failed)}" if failed else ""
        return f"{result.exporter} exporter, {result.node_count} nodes, {result.seconds:.1f}s{fallback}"

    def checker() -> str:
        from .exporting import check

        check(state["path"])
        return "onnx.checker full_check"

    def parity() -> str:
        import torch

        from .exporting import parity as compare

        built, recipe = state["built"], state["resolved"].recipe
        batch = max(2, recipe.batch) if recipe.dynamic_batch else recipe.batch
        example = torch.rand(batch, *built.preprocessing.input_size, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            expected = built.module.eval()(example)
        result = compare(state["path"], example, expected)
        return f"max abs diff {result['max_abs_diff']:.3g} on a fresh input of shape {list(example.shape)}"

    def fetch() -> str:
        from .exporting import MODEL_FILE

        resolved = state["resolved"]
        described = state["source"].fetch(resolved.spec, resolved.recipe, Path(state["dir"]), None)
        if not isinstance(described, dict):
            raise _Failed(f"fetch() returned {type(described).__name__}, not a dict of metadata")
        path = Path(state["dir"]) / MODEL_FILE
        if not path.is_file():
            raise _Failed(f"fetch() wrote no {MODEL_FILE}")
        json.dumps(described, default=str)
        state["path"] = path
        return f"{path.stat().st_size:,} bytes; metadata {', '.join(sorted(described)) or 'none'}"

    def run_onnx() -> str:
        import numpy as np
        import onnxruntime as ort

        session = ort.InferenceSession(str(state["path"]), providers=["CPUExecutionProvider"])
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

    with tempfile.TemporaryDirectory(prefix="zoo-check.") as directory:
        state["dir"] = directory
        run.step("plugin", plugin)
        if light:
            run.step("light", light_, needs=("plugin",))
        run.step("catalogue", catalogue, needs=("plugin",))
        run.step("resolve", resolve, needs=("plugin",))
        run.step("unknown", unknown, needs=("plugin",))
        if _fetches(state.get("source")):  # ready ONNX files: nothing to build or compare with
            run.step("fetch", fetch, needs=("resolve",))
            run.step("checker", checker, needs=("fetch",))
            run.step("run", run_onnx, needs=("fetch",))
        else:
            run.step("build", build, needs=("resolve",))
            run.step("export", export, needs=("build",))
            run.step("checker", checker, needs=("export",))
            run.step("parity", parity, needs=("export",))
    return report


def check_plugin(name: str, model: str | None = None, **kwargs: Any) -> list[CheckReport]:
    """Check a source by name, or every source of the plugin called ``name``."""
    host = kwargs.get("host") or get_host()
    if name in host.sources:
        return [check_source(name, model, **kwargs)]
    info = host.plugins.get(name)
    if info is None:
        known = ", ".join(sorted({*host.sources, *host.plugins})) or "none"
        raise UnknownModelError(f"no source or plugin called {name!r}: known are {known} (see `zoo plugins`)")
    if info.error:
        report = CheckReport(source=name, steps=[Step("plugin", "fail", f"plugin {name} failed: {info.error}")])
        return [report]
    if not info.sources:
        raise UnknownModelError(f"plugin {name!r} registers no source: nothing to check")
    return [check_source(source, model, **kwargs) for source in info.sources]


def _fetches(source: Any) -> bool:
    """Whether the source serves ready ONNX files (``Source.fetch``) instead of building."""
    return callable(getattr(source, "fetch", None))


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


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
