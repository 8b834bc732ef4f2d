"""The export pipeline shared by every source: torch.onnx -> checker -> parity.

Imports torch, onnx and onnxruntime inside functions only: this module is imported on
cache hits too.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ExportError, ParityError, UserError, one_line
from .recipe import Recipe
from .source import Progress
from .spec import BuiltModel
from .tasks import DETECTING, SEMANTIC_SEGMENTATION

MODEL_FILE = "model.onnx"
INPUT_NAME = "input"
PARITY_SEED = 0
TOLERANCE = {"atol": 1e-3, "rtol": 1e-3}
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 64 * 1024**2  # protobuf's 2 GiB limit, with margin



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


def exporter_order(recipe: Recipe, built: BuiltModel | None = None) -> list[str]:
    """``auto`` tries dynamo (torch's default, passes parity on every shipped alias) first,
    then falls back to the TorchScript exporter; a model that names its own order
    (``BuiltModel.exporters``: torchvision's detectors) gets that one."""
    if recipe.exporter != "auto":
        return [recipe.exporter]
    return list(built.exporters) if built is not None and built.exporters else ["dynamo", "torchscript"]


def example_input(built: BuiltModel, recipe: Recipe, batch: int) -> Any:
    import torch

    channels, height, width = built.preprocessing.input_size
    generator = torch.Generator().manual_seed(PARITY_SEED)
    if built.task in DETECTING:  # detectors take images in [0, 1] and normalise inside
        return torch.rand(batch, channels, height, width, generator=generator)
    return torch.randn(batch, channels, height, width, generator=generator)


def export_recipe(built: BuiltModel, recipe: Recipe) -> Recipe:
    """The recipe the file is made with: a model that exports at one batch size only
    (``BuiltModel.fixed_batch``) gets a static graph of that batch; asking for another
    batch size is refused."""
    if built.task != "classification" and recipe.dtype != "float32":
        raise UserError(f"--dtype {recipe.dtype} is for classifiers; export this {built.task} model as float32")
    fixed = built.fixed_batch
    if fixed is None:
        return recipe
    if recipe.batch != fixed:
        raise UserError(f"this model exports at batch {fixed} only ({built.exporter_reason or 'its graph'}); "
                        f"drop --batch {recipe.batch}: zoo run feeds images one at a time")
    return replace(recipe, batch=fixed, dynamic_batch=False)


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
    recipe = export_recipe(built, recipe)
    # torch.export specialises a batch of 1, so a dynamic batch is traced at 2.
    trace_batch = max(2, recipe.batch) if recipe.dynamic_batch else recipe.batch
    example = example_input(built, recipe, trace_batch)
    with torch.inference_mode():
        expected = module(example)
    names = graph_names(built, recipe, expected)
    attempts: list[dict[str, str]] = []
    last_error: Exception | None = None
    start = time.perf_counter()
    for exporter in exporter_order(recipe, built):
        try:
            say(f"exporting with {exporter} (opset {recipe.opset})")
            _torch_export(module, example, path, exporter, recipe, names, built.task, built.dynamic_size)
            say("checking the ONNX model")
            check(path)
            check_artefact(path, recipe, built.preprocessing.input_size, stage=exporter, weights_dtype="float32",
                           dynamic_size=built.dynamic_size)
            say("comparing outputs with PyTorch")
            if built.task in DETECTING:
                validation = detection_parity(path, example, expected, names[1], built.task_outputs)
            elif built.task == SEMANTIC_SEGMENTATION:
                validation = segmentation_parity(path, example, expected)
            else:
                validation = parity(path, example, expected)
            if built.exporter_reason and recipe.exporter == "auto":
                validation["exporter_reason"] = built.exporter_reason
        except Exception as exc:  # any failure: record it and try the next exporter
            attempts.append({"exporter": exporter, "error": one_line(exc, kind=not isinstance(exc, ExportError))})
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
        validation["artefact"] = check_artefact(path, recipe, built.preprocessing.input_size, stage="the file",
                                                dynamic_size=built.dynamic_size)
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
    task: str = "classification",
    dynamic_size: bool = False,
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
        if recipe.dynamic_batch or dynamic_size:
            dims = {0: torch.export.Dim("batch")} if recipe.dynamic_batch else {}
            if dynamic_size:
                dims.update({2: torch.export.Dim("height", min=32), 3: torch.export.Dim("width", min=32)})
            kwargs["dynamic_shapes"] = (dims,)
        kwargs["external_data"] = _parameter_bytes(module) > EXTERNAL_DATA_THRESHOLD
    elif task in DETECTING:  # one image in; as many detections out as it has
        kwargs["dynamic_axes"] = {name: {0: "detections"} for name in output_names}
    elif recipe.dynamic_batch or dynamic_size:
        # A segmenter's class scores come out at its input's size: both sides follow the input.
        dims = ({0: "batch"} if recipe.dynamic_batch else {}) | ({2: "height", 3: "width"} if dynamic_size else {})
        kwargs["dynamic_axes"] = {input_name: dims, **{name: dims for name in output_names}}
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
        raise ExportError(f"onnx checker: {one_line(exc, kind=not isinstance(exc, ExportError))}") from exc


def check_artefact(path: Path, recipe: Recipe, input_size: tuple[int, int, int], stage: str,
                   weights_dtype: str | None = None, dynamic_size: bool = False) -> dict[str, Any]:
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
        if dynamic_size and not (isinstance(height, str) and isinstance(width, str)):
            problems.append(f"a fixed input of {height}x{width}, not a dynamic size")
        elif not dynamic_size and [height, width] != list(input_size[1:]):
            problems.append(f"input {height}x{width}, not {input_size[1]}x{input_size[2]}")
    io_types = {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    # Category ids come out as integers (detectors' labels); everything else is float32.
    if io_types - {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64} or \
            {v.type.tensor_type.elem_type for v in model.graph.input} - {onnx.TensorProto.FLOAT}:
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


SEGMENTATION_TOLERANCE = {"atol": 1e-3, "rtol_of_range": 1e-3, "pixels_agree": 0.999}


def segmentation_parity(path: Path, example: Any, expected: Any) -> dict[str, Any]:
    """Parity of a semantic segmenter: class scores compared against their own range, and the
    class each pixel gets.

    Deep dilated networks (FCN-ResNet50) accumulate float32 rounding into scores whose
    differences reach a few 1e-3 where the scores themselves are near zero, so an element-wise
    relative tolerance fails on pixels whose class is not in doubt. Passes when every score is
    within ``atol + rtol_of_range * max|score|`` and at least ``pixels_agree`` of the pixels get
    the same class from both runtimes.
    """
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = np.asarray(session.run(None, {session.get_inputs()[0].name: example.numpy()})[0], dtype=np.float64)
    want = np.asarray(_as_numpy_list(expected)[0], dtype=np.float64)
    if got.shape != want.shape:
        raise ParityError(f"parity: output shape {got.shape} != PyTorch {want.shape}")
    if not (np.isfinite(got).all() and np.isfinite(want).all()):
        raise ParityError("parity: outputs contain NaN or inf (are the weights sane?)")
    tol = SEGMENTATION_TOLERANCE
    scale = float(np.abs(want).max(initial=0.0))
    max_abs = float(np.abs(got - want).max(initial=0.0))
    agree = float((got.argmax(axis=1) == want.argmax(axis=1)).mean())
    passed = max_abs <= tol["atol"] + tol["rtol_of_range"] * scale and agree >= tol["pixels_agree"]
    result = {"checker": "onnx.checker full_check",
              "input": {"seed": PARITY_SEED, "shape": list(example.shape), "distribution": "normal"},
              "parity": "class scores and per-pixel classes", "max_abs_diff": max_abs,
              "max_rel_diff": max_abs / max(scale, 1e-12), "pixels_agree": agree, "tolerance": dict(tol),
              "passed": passed}
    if not passed:
        raise ParityError(f"parity: ONNX class scores differ from PyTorch (max abs diff {max_abs:.3g} of a range "
                          f"{scale:.3g}; {100 * agree:.3f}% of pixels agree)")
    return result


# Boxes in pixels of inputs up to 800 wide: 0.1 px is 1.25e-4 of the side, what float32 box
# decoding (exp of the regression) leaves between runtimes on ResNet-50 detectors.
# "unpaired_share": two-stage detectors (R-CNNs) cut proposals inside the graph too (top-k and
# NMS of the region proposals); a proposal at such a cut can add or drop one final detection
# that no final-stage cut explains. At most this share of the detections may go unpaired so.
DETECTION_TOLERANCE = {"iou": 0.99, "score_atol": 1e-3, "box_atol": 0.1, "mask_atol": 0.02, "keypoint_atol": 0.1,
                       "unpaired_share": 0.02}


def detection_parity(path: Path, example: Any, expected: Any, names: tuple[str, ...], outputs: Any) -> dict[str, Any]:
    """Parity of a detector: PyTorch's and ONNX Runtime's detections paired (``zoo.tasks.match_detections``).

    Two lists of detections may differ in length where a score sits at a cut (the score
    threshold, or the last place when ``max_detections`` are kept): such a detection may go
    unpaired, as may a box at the NMS cut, and up to ``unpaired_share`` of the detections
    besides (two-stage detectors cut their proposals inside the graph too). Any more unpaired
    detections, or a pair whose box, mask or keypoints differ past ``DETECTION_TOLERANCE``,
    fail. Masks and keypoints are compared on the pairs.
    """
    import numpy as np
    import onnxruntime as ort

    from .tasks import box_iou, match_detections

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: example.numpy()}), strict=True))
    want = dict(zip(names, _as_numpy_list(expected), strict=True))
    keys = (outputs.boxes, outputs.labels, outputs.scores)
    tol = DETECTION_TOLERANCE
    found = match_detections([want[k] for k in keys], [got[k] for k in keys], tol["iou"], tol["score_atol"],
                             tol["box_atol"])
    scores_w, scores_g = want[outputs.scores].reshape(-1), got[outputs.scores].reshape(-1)

    def at_a_cut(score: float, scores: Any) -> bool:
        near_threshold = outputs.score_threshold is not None and score - outputs.score_threshold <= tol["score_atol"]
        full = outputs.max_detections is not None and len(scores) >= outputs.max_detections
        return near_threshold or (full and score - float(scores.min()) <= tol["score_atol"])

    def at_nms_edge(i: int, found: dict[str, Any]) -> bool:
        # NMS keeps a box whose overlap with a better one of its label is under nms_iou: an overlap
        # within rounding of that cut may be kept by one runtime and suppressed by the other.
        if outputs.nms_iou is None:
            return False
        boxes, labels, scores = (np.asarray(found[k]) for k in keys)
        boxes = boxes.reshape(-1, 4)
        better = (labels.reshape(-1) == labels.reshape(-1)[i]) & (scores.reshape(-1) >= scores.reshape(-1)[i])
        better[i] = False
        overlaps = box_iou(boxes[i:i + 1], boxes[better])[0]
        return bool(np.any(np.abs(overlaps - outputs.nms_iou) <= 1e-3))

    unmatched = found.pop("unmatched")
    unpaired = [i for i in unmatched if not (at_a_cut(float(scores_w[i]), scores_w) or at_nms_edge(i, want))]
    paired_got = {j for _, j in found["pairs"]}
    extra_got = [j for j in range(found["got"]) if j not in paired_got]
    excused_extra = sum(at_a_cut(float(scores_g[j]), scores_g) or at_nms_edge(j, got) for j in extra_got)
    extra = len(extra_got)
    found["excused"] = len(unmatched) - len(unpaired)
    result: dict[str, Any] = {
        "checker": "onnx.checker full_check",
        "input": {"seed": PARITY_SEED, "shape": list(example.shape), "distribution": "uniform [0, 1)"},
        "parity": "detections",
        "detections": found,
        "max_abs_diff": found["max_box_diff"],
        "tolerance": dict(tol),
    }
    if found["expected"] and not found["matched"]:
        # Random weights (--weights none) can tie every score (SSDlite's all equal 1/91): any
        # subset is a right answer, so the lists agree in length only. Said, not hidden.
        result["parity"] = "detections: inconclusive (every detection sits at a tied cut; no pair to compare)"
    elif not found["expected"] and not found["got"]:
        result["parity"] = "detections: inconclusive (neither found any detection above the threshold)"
    problems = []
    found["unpaired"] = len(unpaired) + extra - excused_extra  # past every cut zoo can name
    allowed = int(tol["unpaired_share"] * max(found["expected"], found["got"]))
    if found["unpaired"] > allowed:
        if unpaired:
            problems.append(f"{len(unpaired)} of PyTorch's {found['expected']} detections have no ONNX match")
        if extra - excused_extra > 0:
            problems.append(f"{extra - excused_extra} ONNX detections have no PyTorch match")
    if found["max_box_diff"] > tol["box_atol"]:
        problems.append(f"boxes differ by {found['max_box_diff']:.3g} pixels")
    pairs = found.pop("pairs")
    for name, atol in ((outputs.masks, tol["mask_atol"]), (outputs.keypoints, tol["keypoint_atol"])):
        if name and pairs:
            diff = max(float(np.abs(want[name][i].astype(np.float64) - got[name][j]).max(initial=0.0))
                       for i, j in pairs)
            result[f"max_{'mask' if name == outputs.masks else 'keypoint'}_diff"] = diff
            if diff > atol:
                problems.append(f"{name} differ by {diff:.3g}")
    result["passed"] = not problems
    if problems:
        raise ParityError(f"parity: ONNX detections differ from PyTorch's ({'; '.join(problems)})")
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
