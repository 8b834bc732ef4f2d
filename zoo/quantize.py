"""``--dtype int8``: static quantization of an exported float32 model, checked against it.

ONNX Runtime's tool chain, as its documentation recommends for CNNs on CPU: ``quant_pre_process``
(symbolic shape inference and graph optimisation), then ``quantize_static`` in QDQ format with
per-channel int8 weights and MinMax ranges calibrated on real images, read with the model's own
preprocessing. Activations are uint8 (asymmetric): on x86 with AVX-512 VNNI or AMX the U8S8
kernels are ORT's fastest (resnet50 on the dev box: 2.9x float32, where int8 activations ran no
faster than float32), and ReLU outputs use the whole range. TensorRT wants symmetric int8
activations; a QDQ file still runs there, only not at TensorRT's best.

The check: the int8 file and its float32 parent run on ORT's CPU provider on the calibration
images; top-1 agreement and the largest logit difference go into ``validation.int8``. Agreement
under 90% on at least 50 images fails the export with the figures; fewer images are too few to
judge, so the figures are recorded with a warning.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import NotInStoreError, ParityError, UserError
from .imageset import calibration_set
from .spec import Preprocessing

MIN_AGREEMENT = 0.90
MIN_IMAGES = 50  # below this an agreement figure is too coarse to fail an export on
CALIBRATION_BATCH = 8
CALIBRATION_FIELDS = ("calibration", "calibration_size")


def require_calibration(recipe: Any) -> None:
    """The one-line refusal for ``--dtype int8`` without ``--calibration``, before anything is built."""
    if recipe.dtype == "int8" and not recipe.calibration:
        raise UserError("--dtype int8 needs calibration images: add --calibration DIR, a folder of images like "
                        "those the model will see (a few hundred; --calibration-size N picks how many)")


def quantize(path: Path, preprocessing: Preprocessing, recipe: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """Rewrite the float32 model at ``path`` as int8 QDQ in place; return the ``validation.int8`` record."""
    import numpy as np
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    require_calibration(recipe)
    images = calibration_set(recipe.calibration, recipe.calibration_size)
    say(f"reading {len(images.files)} calibration images")
    tensors, failed = read_tensors(images.files, preprocessing)
    if not len(tensors):
        raise UserError(f"--calibration {recipe.calibration}: none of its {len(images.files)} images could be read "
                        f"({failed[0]['error']})")
    static = _static_batch(path)
    chunk = static or CALIBRATION_BATCH
    name = _input_name(path)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches(tensors, chunk, static is not None))

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self._batches, None)
            return None if batch is None else {name: batch[0]}

    with tempfile.TemporaryDirectory(prefix="zoo-int8.", dir=path.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        say("preparing the graph for quantization (quant_pre_process)")
        preprocess_step = _pre_process(path, prepared)
        quantized = Path(scratch) / "int8.onnx"
        say("calibrating and quantizing to int8")
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared if prepared.is_file() else path), str(quantized), Reader(),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                # MinMax reduces each activation to its min and max inside the calibration graph, so memory
                # stays small. (CalibMaxIntermediateOutputs would bound it too, but ORT drops the batches it
                # clears instead of merging their ranges.)
                calibrate_method=CalibrationMethod.MinMax,
            )
        say("comparing int8 with float32 on the calibration images")
        want = run_cpu(path, tensors, chunk, static is not None)
        got = run_cpu(quantized, tensors, chunk, static is not None)
        shutil.move(str(quantized), str(path))
    figures = agreement(got, want)
    record = {
        "dtype": "int8",
        "quantizer": "onnxruntime.quantization.quantize_static",
        "onnxruntime": onnxruntime.__version__,
        "format": "QDQ",
        "weights": "int8, per channel",
        "activations": "uint8, asymmetric",
        "calibration_method": "MinMax",
        "pre_process": preprocess_step,
        "calibration": {**images.describe(), "read": len(tensors), "failed": failed},
        "against": "float32 export, ORT CPU, on the calibration images",
        **figures,
        "threshold": {"min_top1_agreement": MIN_AGREEMENT, "min_images": MIN_IMAGES},
    }
    judged = figures["top1_agreement"] is not None and figures["images"] >= MIN_IMAGES
    record["passed"] = not judged or figures["top1_agreement"] >= MIN_AGREEMENT
    if not record["passed"]:
        raise ParityError(f"int8: top-1 agrees with float32 on only {figures['top1_agreement']:.1%} of "
                          f"{figures['images']} calibration images (max abs logit diff "
                          f"{figures['max_abs_diff']:.3g}; needs {MIN_AGREEMENT:.0%}); keep float32 or float16 "
                          "for this model, or calibrate on images closer to its data")
    if not judged and figures["top1_agreement"] is not None:
        record["warning"] = (f"int8 checked on {figures['images']} images only (top-1 agreement "
                             f"{figures['top1_agreement']:.1%}): too few to judge; calibrate on {MIN_IMAGES}+ images")
        sys.stderr.write(f"zoo: warning: {record['warning']}\n")
    if not np.isfinite(figures["max_abs_diff"]):
        raise ParityError("int8: outputs are not finite; keep float32 for this model")
    return record


def read_tensors(files: Sequence[Path], preprocessing: Preprocessing) -> tuple[Any, list[dict[str, str]]]:
    """The images as one float32 array (N, C, H, W), and those that could not be read, named."""
    import numpy as np

    from . import images

    arrays, failed = [], []
    for file in files:
        try:
            arrays.append(images.preprocess(images.load(file), preprocessing))
        except Exception as exc:  # undecodable, truncated, over Pillow's pixel cap...
            failed.append({"path": str(file), "error": _one_line(exc)})
    return (np.stack(arrays) if arrays else np.zeros((0,))), failed


def batches(tensors: Any, size: int, static: bool) -> list[tuple[Any, int]]:
    """``(batch, real rows)`` chunks; a static-batch model gets its last chunk padded by repeating rows."""
    import numpy as np

    out = []
    for start in range(0, len(tensors), size):
        part = tensors[start:start + size]
        rows = len(part)
        if static and rows < size:
            part = np.concatenate([part, np.repeat(part[:1], size - rows, axis=0)])
        out.append((np.ascontiguousarray(part), rows))
    return out


def run_cpu(model: Path, tensors: Any, size: int, static: bool) -> Any:
    """The first output of ``model`` for every row of ``tensors``, on ORT's CPU provider."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: batch})[0][:rows] for batch, rows in batches(tensors, size, static)]
    return np.concatenate(parts).astype(np.float64)


def agreement(got: Any, want: Any) -> dict[str, Any]:
    """Top-1 agreement (None unless both are per-class scores) and max abs difference of two outputs."""
    import numpy as np

    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    same_shape = got.shape == want.shape
    classes = same_shape and got.ndim == 2 and got.shape[1] > 1
    return {
        "images": int(len(want)),
        "top1_agreement": float((got.argmax(1) == want.argmax(1)).mean()) if classes and len(want) else None,
        "max_abs_diff": float(np.abs(got - want).max(initial=0.0)) if same_shape else None,
    }


def stored_int8(store: Any, resolved: Any) -> Any:
    """The one stored int8 entry of this model and recipe, whatever its calibration set."""
    spec, recipe = resolved.spec, resolved.recipe
    want = {k: v for k, v in recipe.to_dict().items() if k not in CALIBRATION_FIELDS}
    options = json.loads(json.dumps(dict(spec.options), default=str))
    found = [
        entry for entry in store.entries()
        if entry.ref == spec.ref
        and entry.record.weights_tag == spec.weights
        and entry.record.options == options
        and {k: v for k, v in entry.record.recipe.items() if k not in CALIBRATION_FIELDS} == want
    ]
    if len(found) == 1:
        return found[0]
    if found:
        choices = "; ".join(f"{e.key} (calibrated on {_calibration_of(e)})" for e in found)
        raise NotInStoreError(f"several int8 entries of {resolved.name} are stored: {choices}; give the key, or "
                              "--calibration DIR with the images it was calibrated on")
    raise NotInStoreError(f"no int8 entry of {resolved.name} ({spec.ref}, weights {spec.weights}) is stored: "
                          f"make one with `zoo pull {resolved.name} --dtype int8 --calibration DIR`")


def _calibration_of(entry: Any) -> str:
    validation = entry.record.validation
    int8 = validation.other.get("int8") if validation else None
    calibration = (int8.get("calibration") if isinstance(int8, dict) else None) or {}
    root, count, mark = calibration.get("root"), calibration.get("images"), calibration.get("fingerprint")
    return f"{root}, {count} images, fingerprint {mark}"


def _pre_process(source: Path, target: Path) -> str:
    """ORT's recommended preparation; a model it cannot prepare is quantized as exported."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints; stdout is for --json
            quant_pre_process(str(source), str(target))
        return "quant_pre_process"
    except Exception as exc:
        target.unlink(missing_ok=True)
        return f"skipped ({_one_line(exc)})"


def _static_batch(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__

