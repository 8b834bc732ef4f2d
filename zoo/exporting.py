"""The export pipeline shared by every source: torch.onnx -> checker -> parity.

Imports torch, onnx and onnxruntime inside functions only: this module is imported on
cache hits too.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ExportError, ParityError, UserError
from .recipe import Recipe
from .spec import BuiltModel

MODEL_FILE = "model.onnx"
INPUT_NAME = "input"
PARITY_SEED = 0
TOLERANCE = {"atol": 1e-3, "rtol": 1e-3}
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 64 * 1024**2  # protobuf's 2 GiB limit, with margin

Progress = Callable[[str], None]


@dataclass
class ExportResult:
    """What the pipeline made: the file, and what it learnt on the way."""

    path: Path
    exporter: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    validation: dict[str, Any]
    attempts: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    node_count: int = 0


def exporter_order(recipe: Recipe) -> list[str]:
    """``auto`` tries dynamo (torch's default, passes parity on every shipped alias) first,
    then falls back to the TorchScript exporter."""
    return ["dynamo", "torchscript"] if recipe.exporter == "auto" else [recipe.exporter]


def example_input(built: BuiltModel, recipe: Recipe, batch: int) -> Any:
    import torch

    channels, height, width = built.preprocessing.input_size
    generator = torch.Generator().manual_seed(PARITY_SEED)
    return torch.randn(batch, channels, height, width, generator=generator)


def export(
    built: BuiltModel,
    recipe: Recipe,
    out_dir: Path,
    progress: Progress | None = None,
) -> ExportResult:
    """Export ``built`` into ``out_dir/model.onnx``, check it and compare with PyTorch."""
    import torch

    say = progress or (lambda _msg: None)
    module = built.module.eval()
    path = out_dir / MODEL_FILE
    # torch.export specialises a batch of 1, so a dynamic batch is traced at 2.
    trace_batch = max(2, recipe.batch) if recipe.dynamic_batch else recipe.batch
    example = example_input(built, recipe, trace_batch)
    with torch.inference_mode():
        expected = module(example)
    names = graph_names(built, recipe, expected)
    attempts: list[dict[str, str]] = []
    last_error: Exception | None = None
    start = time.perf_counter()
    for exporter in exporter_order(recipe):
        try:
            say(f"exporting with {exporter} (opset {recipe.opset})")
            _torch_export(module, example, path, exporter, recipe, names)
            say("checking the ONNX model")
            check(path)
            check_artefact(path, recipe, built.preprocessing.input_size, stage=exporter, weights_dtype="float32")
            say("comparing outputs with PyTorch")
            validation = parity(path, example, expected)
        except Exception as exc:  # any failure: record it and try the next exporter
            attempts.append({"exporter": exporter, "error": _one_line(exc)})
            last_error = exc  # kept as the cause: the store tells a full disk from a bad model by it
            for leftover in out_dir.iterdir():
                leftover.unlink()
            continue
        attempts.append({"exporter": exporter, "error": ""})
        if recipe.dtype == "float16":  # float32 parity first, then float16 against float32
            from .float16 import convert as to_float16

            say("converting to float16 and comparing with float32")
            validation["float16"] = to_float16(path, tuple(example.shape))
            check(path)
        if recipe.dtype == "int8":  # float32 parity first, then int8 against float32 on real images
            from .quantize import quantize

            validation["int8"] = quantize(path, built.preprocessing, recipe, say, built.labels)
            check(path)
        validation["artefact"] = check_artefact(path, recipe, built.preprocessing.input_size, stage="the file")
        inputs, outputs, nodes = describe(path)
        return ExportResult(
            path=path,
            exporter=exporter,
            inputs=inputs,
            outputs=outputs,
            validation=validation,
            attempts=attempts,
            seconds=round(time.perf_counter() - start, 3),
            node_count=nodes,
        )
    reasons = "; ".join(f"{a['exporter']}: {a['error']}" for a in attempts)
    error = ParityError if all("parity" in a["error"] for a in attempts) else ExportError
    raise error(f"export failed ({reasons}); try --exporter or --opset, or ZOO_DEBUG=1") from last_error


def graph_names(built: BuiltModel, recipe: Recipe, expected: Any) -> tuple[str, tuple[str, ...]]:
    """The graph's input name and output names: the recipe's, else ``input`` and the source's."""
    input_names = recipe.input_names or (INPUT_NAME,)
    if len(input_names) != 1:
        raise UserError(f"--input-names gives {len(input_names)} names; the model takes 1 input")
    outputs = recipe.output_names or built.output_names
    count = len(_as_numpy_list(expected))
    if recipe.output_names and len(outputs) != count:
        raise UserError(f"--output-names gives {len(outputs)} names; the model has {count} output(s)")
    return input_names[0], tuple(outputs)


def _torch_export(
    module: Any,
    example: Any,
    path: Path,
    exporter: str,
    recipe: Recipe,
    names: tuple[str, tuple[str, ...]],
) -> None:
    import torch

    input_name, output_names = names
    kwargs: dict[str, Any] = dict(
        opset_version=recipe.opset,
        input_names=[input_name],
        output_names=list(output_names),
        verbose=False,
    )
    if exporter == "dynamo":
        if recipe.dynamic_batch:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        kwargs["external_data"] = _parameter_bytes(module) > EXTERNAL_DATA_THRESHOLD
    elif recipe.dynamic_batch:
        axes = {input_name: {0: "batch"}}
        axes.update({name: {0: "batch"} for name in output_names})
        kwargs["dynamic_axes"] = axes
    # The exporters print and warn freely (torch's opset conversion even prints a traceback);
    # zoo's own output must stay clean (--json) and its errors one line.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=exporter == "dynamo", **kwargs)
    if not path.is_file():
        raise ExportError(f"{exporter} exporter wrote no file")


def _parameter_bytes(module: Any) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def check(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx checker: {_one_line(exc)}") from exc


def check_artefact(path: Path, recipe: Recipe, input_size: tuple[int, int, int], stage: str,
                   weights_dtype: str | None = None) -> dict[str, Any]:
    """What the file really is, checked against the recipe: opset, batch, input size, weights dtype
    (an exporter's file is float32: the dtype is checked on the converted file).

    An exporter that quietly makes something else (torch's dynamo exporter keeps opset 18 when
    its down-conversion fails) is an export failure, so ``auto`` tries the next exporter.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    problems = []
    if opset != recipe.opset:
        problems.append(f"opset {opset}, not the {recipe.opset} asked for")
    first = model.graph.input[0].type.tensor_type if model.graph.input else None
    dims = [d.dim_param or d.dim_value for d in first.shape.dim] if first is not None else []
    if len(dims) == 4:
        batch, _channels, height, width = dims
        if recipe.dynamic_batch and not isinstance(batch, str):
            problems.append(f"a fixed batch of {batch}, not a dynamic one")
        elif not recipe.dynamic_batch and batch != recipe.batch:
            problems.append(f"batch {batch}, not {recipe.batch}")
        if [height, width] != list(input_size[1:]):
            problems.append(f"input {height}x{width}, not {input_size[1]}x{input_size[2]}")
    io_types = {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    if io_types - {onnx.TensorProto.FLOAT}:
        problems.append("inputs or outputs that are not float32")
    weights = {t.data_type for t in model.graph.initializer if len(t.dims) > 1}
    dtype = weights_dtype or recipe.dtype
    wanted = {"float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16}.get(dtype)
    if wanted is not None and weights and weights != {wanted}:
        names = sorted(onnx.helper.tensor_dtype_to_np_dtype(t).name for t in weights)
        problems.append(f"weights of {', '.join(names)}, not {dtype}")
    if problems:
        raise ExportError(f"{stage} made a file with {'; '.join(problems)}")
    return {"opset": opset, "input_shape": dims, "weights_dtype": dtype}


def parity(path: Path, example: Any, expected: Any) -> dict[str, Any]:
    """Run the ONNX model on ORT's CPU provider and compare with PyTorch's outputs."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    want = _as_numpy_list(expected)
    if len(got) != len(want):
        raise ParityError(f"parity: ONNX model has {len(got)} outputs, PyTorch {len(want)}")
    max_abs = max_rel = 0.0
    passed = True
    for a, b in zip(got, want, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise ParityError(f"parity: output shape {a.shape} != PyTorch {b.shape}")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ParityError("parity: outputs contain NaN or inf (are the weights sane?)")
        diff = np.abs(a - b)
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        max_rel = max(max_rel, float(diff.max(initial=0.0) / max(np.abs(b).max(initial=0.0), 1e-12)))
        passed &= bool(np.all(diff <= TOLERANCE["atol"] + TOLERANCE["rtol"] * np.abs(b)))
    result = {
        "checker": "onnx.checker full_check",
        "input": {"seed": PARITY_SEED, "shape": list(example.shape), "distribution": "normal"},
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "tolerance": dict(TOLERANCE),
        "passed": passed,
    }
    if not passed:
        raise ParityError(
            f"parity: ONNX output differs from PyTorch (max abs diff {max_abs:.3g}, "
            f"tolerance atol={TOLERANCE['atol']} rtol={TOLERANCE['rtol']})"
        )
    return result


def _as_numpy_list(output: Any) -> list[Any]:
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t.detach().numpy() for t in output]
    return [output.detach().numpy()]


def describe(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Inputs and outputs (name, shape, dtype) and node count of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def values(items: Any) -> list[dict[str, Any]]:
        out = []
        for value in items:
            tensor = value.type.tensor_type
            shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
            out.append({"name": value.name, "shape": shape, "dtype": dtype})
        return out

    return values(model.graph.input), values(model.graph.output), len(model.graph.node)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if isinstance(exc, ExportError) else f"{type(exc).__name__}: {text}"
