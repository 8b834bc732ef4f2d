"""``--dtype float16``: convert an exported float32 model and check it against the original.

The conversion is ONNX Runtime's (``onnxruntime.transformers.float16``) with float32 inputs
and outputs kept, so callers feed and read the same arrays as with the float32 model. The
check runs both files on ORT's CPU provider on the same seeded inputs: every output must be
within a tolerance looser than float32 parity, and top-1 must agree on every sample except
where the float32 model itself cannot tell its best two classes apart at float16 precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ParityError

TOLERANCE = {"atol": 5e-2, "rtol": 5e-2}
SAMPLES = 8
SEED = 1


def convert(path: Path, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Rewrite the float32 model at ``path`` as float16 in place; return the validation record.

    ``input_shape`` is the shape the model was traced with: its batch dimension tells a
    static-batch model's batch size.
    """
    import numpy as np
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    original = onnx.load(str(path))
    model = convert_float_to_float16(original, keep_io_types=True, disable_shape_infer=False)
    # The converter appends the input casts at the end of the graph; the checker wants order.
    graph = OnnxModel(model)
    graph.topological_sort()
    reference = original.SerializeToString()
    onnx.save(graph.model, str(path))

    chunk = _static_batch(graph.model) or SAMPLES
    count = chunk * -(-SAMPLES // chunk)  # whole static batches, at least SAMPLES samples
    samples = np.random.default_rng(SEED).standard_normal((count, *input_shape[1:])).astype(np.float32)
    want = _run(reference, samples, chunk)
    got = _run(str(path), samples, chunk)
    return _compare(got, want, samples.shape)


def _static_batch(model: Any) -> int | None:
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def _run(model: Any, samples: Any, chunk: int) -> list[Any]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: samples[i:i + chunk]}) for i in range(0, len(samples), chunk)]
    return [np.concatenate([p[k] for p in parts]).astype(np.float64) for k in range(len(parts[0]))]


def _compare(got: list[Any], want: list[Any], shape: tuple[int, ...]) -> dict[str, Any]:
    import numpy as np

    max_abs = max_rel = 0.0
    within = True
    for a, b in zip(got, want, strict=True):
        if not np.isfinite(a).all():
            raise ParityError("float16: outputs overflow to inf or NaN; keep --dtype float32 for this model")
        diff = np.abs(a - b)
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        max_rel = max(max_rel, float(diff.max(initial=0.0) / max(np.abs(b).max(initial=0.0), 1e-12)))
        within &= bool(np.all(diff <= TOLERANCE["atol"] + TOLERANCE["rtol"] * np.abs(b)))
    logits, reference = got[0], want[0]
    agreement, ambiguous = 1.0, 0
    if reference.ndim == 2 and reference.shape[1] > 1:
        agree = logits.argmax(1) == reference.argmax(1)
        top2 = np.sort(reference, axis=1)[:, -2:]
        close = (top2[:, 1] - top2[:, 0]) <= 2 * max_abs  # a tie at float16 precision
        agreement = float(agree.mean())
        ambiguous = int((~agree & close).sum())
        top1_ok = bool(np.all(agree | close))
    else:
        top1_ok = True
    record = {
        "dtype": "float16",
        "converter": "onnxruntime.transformers.float16 (keep_io_types)",
        "against": "float32 export, ORT CPU",
        "input": {"seed": SEED, "shape": [len(logits), *shape[1:]], "distribution": "normal"},
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "tolerance": dict(TOLERANCE),
        "top1_agreement": agreement,
        "top1_ties": ambiguous,
        "passed": within and top1_ok,
    }
    if not record["passed"]:
        raise ParityError(
            f"float16: output differs from float32 (max abs diff {max_abs:.3g}, top-1 agreement "
            f"{agreement:.0%}, tolerance atol={TOLERANCE['atol']} rtol={TOLERANCE['rtol']}); "
            "keep --dtype float32 for this model"
        )
    return record
