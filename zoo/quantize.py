"""``--dtype int8``: static quantization of an exported float32 model, checked against it.

ONNX Runtime's tool chain, as its documentation recommends for CNNs on CPU: ``quant_pre_process``
(symbolic shape inference and graph optimisation), then ``quantize_static`` in QDQ format with
per-channel int8 weights and MinMax ranges calibrated on real images, read with the model's own
preprocessing. Activations are uint8 (asymmetric, U8S8): on x86 with AVX-512 VNNI or AMX these are
ORT's fastest kernels (resnet50 on a VNNI box: 2.9x float32, where int8 activations ran no faster
than float32), and ReLU outputs use the whole range. Without VNNI/AMX (``zoo.cpu``), U8S8
saturates int16 pair sums, so weights are quantized with ``reduce_range`` (7 bits), ORT's
documented remedy, and the user is told before the build that int8 is unlikely to be faster there.
TensorRT wants symmetric int8 activations; a QDQ file still runs there, only not at TensorRT's best.

The check measures what a user loses, not flips among near-ties: every third calibration image is
held out of calibration, and on those the int8 file and its float32 parent (ORT's CPU provider)
are compared: top-1 agreement where float32 is confident, float32's top-1 within int8's top 5, the
mean total-variation distance of the probability vectors and, when the calibration folder is
labelled (``DIR/<class>/<image>``, as ``zoo eval`` reads it), the top-1 drop against the labels.
Figures, thresholds, the CPU and ORT's version go into ``validation.int8``. A check with too few
images to decide is recorded without judging, with a warning.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import NotInStoreError, ParityError, UserError, ZooWarning, one_line
from .imageset import calibration_set
from .spec import Preprocessing

CONFIDENCE = 0.2  # float32 top-1 probability from which a flip is a loss, not a near-tie among unfit classes
MIN_CONFIDENT_AGREEMENT = 0.90
MIN_TOP5_CONTAINMENT = 0.95
MAX_MEAN_TV_DISTANCE = 0.2
MAX_TOP1_DROP = 0.02  # against labels: two points
MIN_HELDOUT = 20  # held-out images below which the figures are too coarse to fail an export on
MIN_CONFIDENT = 10  # confident images below which their agreement is not judged
MIN_LABELLED = 50  # labelled held-out images below which one image is more than the allowed drop
HOLD_OUT_EVERY = 3  # every third image is kept out of calibration to check on
CALIBRATION_BATCH = 8
CALIBRATION_FIELDS = ("calibration", "calibration_size")
TOPK = 5


def require_calibration(recipe: Any) -> None:
    """The one-line refusal for ``--dtype int8`` without ``--calibration``, before anything is built."""
    if recipe.dtype == "int8" and not recipe.calibration:
        raise UserError("--dtype int8 needs calibration images: add --calibration DIR, a folder of images like "
                        "those the model will see (a few hundred; --calibration-size N picks how many)")


def before_build(recipe: Any) -> None:
    """What int8 needs checked or said before anything is built: calibration images, and a warning
    when this CPU's int8 kernels are unlikely to beat float32."""
    require_calibration(recipe)
    if recipe.dtype != "int8":
        return
    from .cpu import detect

    cpu = detect()
    if not cpu.fast_int8:
        warnings.warn(ZooWarning(f"this CPU (int8 kind {cpu.kind}: no AVX-512 VNNI, AVX-VNNI or AMX) has no fast "
                                 "int8 kernels: int8 is unlikely to be faster than float32 here; quantizing with "
                                 "reduce_range (7-bit weights) to avoid U8S8 saturation"), stacklevel=2)


def uncovered_cpu(record: Any) -> str | None:
    """The warning for running an int8 entry on this CPU when its ``validation.int8`` was measured on a
    CPU of another kind (``zoo.cpu.covers``), else None (also for records that name no CPU)."""
    from .cpu import covers, detect

    int8 = record.validation.int8 if record is not None and record.validation else None
    if int8 is None or int8.cpu is None:
        return None
    here = detect()
    if covers(int8.cpu.kind, here.kind):
        return None
    scheme_note = " (made with reduce_range)" if int8.reduce_range else ""
    return (f"this int8 file{scheme_note} was checked on a CPU of int8 kind {int8.cpu.kind}, not on this one "
            f"({here.kind}): its accuracy and speed here are unmeasured; `zoo eval` it, or pull it again here")


def scheme(kind: str) -> dict[str, Any]:
    """The quantization settings for a CPU of int8 ``kind`` (``zoo.cpu.KINDS``)."""
    from .cpu import EXACT

    return {"activations": "uint8, asymmetric", "weights": "int8, per channel",
            "reduce_range": kind not in EXACT}


def quantize(path: Path, preprocessing: Preprocessing, recipe: Any, say: Callable[[str], None],
             labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Rewrite the float32 model at ``path`` as int8 QDQ in place; return the ``validation.int8`` record.

    ``labels`` (the model's class names) help name the classes of a labelled calibration folder.
    """
    import numpy as np
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from .cpu import detect
    from .record import Int8Validation, as_json

    require_calibration(recipe)
    cpu = detect()
    settings = scheme(cpu.kind)
    images = calibration_set(recipe.calibration, recipe.calibration_size)
    say(f"reading {len(images.files)} calibration images")
    tensors, failed = read_tensors(images.files, preprocessing)
    if not len(tensors):
        raise UserError(f"--calibration {recipe.calibration}: none of its {len(images.files)} images could be read "
                        f"({failed[0]['error']})")
    bad = {item["path"] for item in failed}
    read = [file for file in images.files if str(file) not in bad]
    held = [i for i in range(len(tensors)) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    fitted = [i for i in range(len(tensors)) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    static = _static_batch(path)
    chunk = static or CALIBRATION_BATCH
    name = _input_name(path)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches(tensors[fitted], chunk, static is not None))

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self._batches, None)
            return None if batch is None else {name: batch[0]}

    with tempfile.TemporaryDirectory(prefix="zoo-int8.", dir=path.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        say("preparing the graph for quantization (quant_pre_process)")
        preprocess_step = _pre_process(path, prepared)
        quantized = Path(scratch) / "int8.onnx"
        say(f"calibrating on {len(fitted)} images and quantizing to int8"
            + (" (reduce_range)" if settings["reduce_range"] else ""))
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared if prepared.is_file() else path), str(quantized), Reader(),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                reduce_range=settings["reduce_range"],
                # MinMax reduces each activation to its min and max inside the calibration graph, so memory
                # stays small. (CalibMaxIntermediateOutputs would bound it too, but ORT drops the batches it
                # clears instead of merging their ranges.)
                calibrate_method=CalibrationMethod.MinMax,
            )
        say(f"comparing int8 with float32 on {len(held)} held-out images")
        want = run_cpu(path, tensors[held], chunk, static is not None)
        got = run_cpu(quantized, tensors[held], chunk, static is not None)
        shutil.move(str(quantized), str(path))
    truth = folder_labels(images.root, [read[i] for i in held], labels, want.shape[1] if want.ndim == 2 else None)
    figures = compare(got, want, truth)
    judged, losses = judge(figures)
    check = Int8Validation(
        dtype="int8", quantizer="onnxruntime.quantization.quantize_static", onnxruntime=onnxruntime.__version__,
        format="QDQ", **settings, calibration_method="MinMax", pre_process=preprocess_step,
        cpu=_cpu_record(cpu),
        calibration={**images.describe(), "read": len(tensors), "calibrated_on": len(fitted),
                     "held_out": len(held), "failed": failed},
        against=f"float32 export, ORT CPU, on every {_ordinal(HOLD_OUT_EVERY)} calibration image, held out",
        **figures, judged=judged, passed=not losses,
        threshold={"confidence": CONFIDENCE, "min_confident_agreement": MIN_CONFIDENT_AGREEMENT,
                   "min_top5_containment": MIN_TOP5_CONTAINMENT, "max_mean_tv_distance": MAX_MEAN_TV_DISTANCE,
                   "max_top1_drop": MAX_TOP1_DROP, "min_images": MIN_HELDOUT,
                   "min_confident_images": MIN_CONFIDENT, "min_labelled_images": MIN_LABELLED},
    )
    if figures["max_abs_diff"] is not None and not np.isfinite(figures["max_abs_diff"]):
        raise ParityError("int8: outputs are not finite; keep float32 for this model")
    if losses:
        raise ParityError(f"int8 loses too much against float32 on {figures['images']} held-out calibration images: "
                          f"{'; '.join(losses)}; keep float32 or float16 for this model, or calibrate on images "
                          "closer to its data")
    if not figures["images"]:
        check.warning = (f"int8 not checked: {len(tensors)} calibration image(s) leave none to hold out; calibrate "
                         f"on {MIN_HELDOUT * HOLD_OUT_EVERY}+ images")
        warnings.warn(ZooWarning(check.warning), stacklevel=2)
    elif figures["images"] < MIN_HELDOUT and figures["top1_agreement"] is not None:
        check.warning = (f"int8 checked on {figures['images']} held-out images only (top-1 agreement "
                         f"{figures['top1_agreement']:.1%}, top-5 {figures['top5_containment']:.1%}): too few to "
                         f"judge; calibrate on {MIN_HELDOUT * HOLD_OUT_EVERY}+ images")
        warnings.warn(ZooWarning(check.warning), stacklevel=2)
    return as_json(check)


def compare(got: Any, want: Any, labels: Sequence[int] | None = None) -> dict[str, Any]:
    """What int8 outputs ``got`` lose against float32 outputs ``want`` (logits or probabilities,
    one row per image); with ``labels`` (a class per row), both models' top-1 against them."""
    import numpy as np

    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    out: dict[str, Any] = {
        "images": int(len(want)), "top1_agreement": None, "confident_images": None, "confident_agreement": None,
        "top5_containment": None, "mean_tv_distance": None,
        "max_abs_diff": float(np.abs(got - want).max(initial=0.0)) if got.shape == want.shape else None,
        "labelled": None,
    }
    if got.shape != want.shape or want.ndim != 2 or want.shape[1] < 2 or not len(want):
        return out
    p, q = probabilities(want), probabilities(got)
    first = want.argmax(1)
    same = got.argmax(1) == first
    confident = p.max(1) >= CONFIDENCE
    top = np.argsort(-got, axis=1, kind="stable")[:, :TOPK]
    out.update(
        top1_agreement=float(same.mean()),
        confident_images=int(confident.sum()),
        confident_agreement=float(same[confident].mean()) if confident.any() else None,
        top5_containment=float((top == first[:, None]).any(1).mean()),
        mean_tv_distance=float(np.clip(0.5 * np.abs(p - q).sum(1), 0, 1).mean()),
    )
    if labels is not None and len(labels) == len(want):
        truth = np.asarray(labels)
        float32, int8 = float((first == truth).mean()), float((got.argmax(1) == truth).mean())
        out["labelled"] = {"images": int(len(truth)), "float32_top1": float32, "int8_top1": int8,
                           "top1_drop": float32 - int8}
    return out


def judge(figures: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The checks the figures have enough images for, and those of them that fail, each as a phrase."""
    judged: list[str] = []
    losses: list[str] = []

    def check(name: str, value: float, limit: float, low: bool, text: str) -> None:
        judged.append(name)
        if (value < limit) if low else (value > limit):
            losses.append(text)

    if figures["top1_agreement"] is not None and figures["images"] >= MIN_HELDOUT:
        confident = figures["confident_images"]
        if confident >= MIN_CONFIDENT:
            check("confident_agreement", figures["confident_agreement"], MIN_CONFIDENT_AGREEMENT, True,
                  f"top-1 agrees on {figures['confident_agreement']:.1%} of the {confident} images float32 is "
                  f"confident about (p >= {CONFIDENCE:g}; needs {MIN_CONFIDENT_AGREEMENT:.0%})")
        check("top5_containment", figures["top5_containment"], MIN_TOP5_CONTAINMENT, True,
              f"float32's top-1 is in int8's top 5 on {figures['top5_containment']:.1%} (needs "
              f"{MIN_TOP5_CONTAINMENT:.0%})")
        check("mean_tv_distance", figures["mean_tv_distance"], MAX_MEAN_TV_DISTANCE, False,
              f"the probabilities differ by {figures['mean_tv_distance']:.3f} in mean total variation (at most "
              f"{MAX_MEAN_TV_DISTANCE:g})")
    labelled = figures["labelled"]
    if labelled and labelled["images"] >= MIN_LABELLED:
        check("top1_drop", labelled["top1_drop"], MAX_TOP1_DROP, False,
              f"top-1 against the labels drops {labelled['top1_drop'] * 100:.1f} points "
              f"({labelled['float32_top1']:.1%} -> {labelled['int8_top1']:.1%}; at most {MAX_TOP1_DROP * 100:g})")
    return judged, losses


def probabilities(scores: Any) -> Any:
    """Rows of ``scores`` as probabilities: kept when they already are (non-negative, summing to 1),
    else a softmax of the logits."""
    import numpy as np

    if (scores >= 0).all() and np.allclose(scores.sum(1), 1.0, atol=1e-3):
        return scores
    shifted = np.exp(scores - scores.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def folder_labels(root: Path, files: Sequence[Path], labels: Sequence[str] | None,
                  classes: int | None) -> list[int] | None:
    """The class of each file when ``root`` is laid out as ``zoo eval`` reads it (every file in a
    ``<class>/`` folder that names a class), else None: a folder of unlabelled images."""
    from .accuracy import class_index, label_names

    names = label_names(labels)
    found: dict[str, int | None] = {}
    out = []
    for file in files:
        parts = file.relative_to(root).parts
        if len(parts) != 2:  # at the top, or nested deeper than DIR/<class>/<image>
            return None
        if parts[0] not in found:
            try:
                found[parts[0]] = class_index(parts[0], names, classes)
            except Exception:  # e.g. WordNet ids without timm: unlabelled, as any unknown folder
                found[parts[0]] = None
        if found[parts[0]] is None:
            return None
        out.append(found[parts[0]])
    return out or None


def _cpu_record(cpu: Any) -> Any:
    from .record import CpuRecord

    return CpuRecord(kind=cpu.kind, name=cpu.name, flags=list(cpu.flags),
                     detected=cpu.detected if cpu.detected != cpu.kind else None)


def _ordinal(n: int) -> str:
    return {2: "second", 3: "third", 4: "fourth"}.get(n, f"{n}th")


def read_tensors(files: Sequence[Path], preprocessing: Preprocessing) -> tuple[Any, list[dict[str, str]]]:
    """The images as one float32 array (N, C, H, W), and those that could not be read, named."""
    import numpy as np

    from . import images

    arrays, failed = [], []
    for file in files:
        try:
            arrays.append(images.preprocess(images.load(file), preprocessing))
        except Exception as exc:  # undecodable, truncated, over Pillow's pixel cap...
            failed.append({"path": str(file), "error": one_line(exc, limit=300)})
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
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0,))


def stored_int8(store: Any, resolved: Any) -> Any:
    """The one stored int8 entry of this model and recipe, whatever its calibration set."""
    spec, recipe = resolved.spec, resolved.recipe
    want = {k: v for k, v in recipe.to_dict().items() if k not in CALIBRATION_FIELDS}
    options = json.loads(json.dumps(dict(spec.options), default=str))
    found = [
        entry for entry in store.named(spec.ref)  # the index of names: not every record read
        if entry.ref == spec.ref
        and entry.record.weights_tag == spec.weights
        and entry.record.options == options
        and {k: v for k, v in entry.record.recipe.to_dict().items() if k not in CALIBRATION_FIELDS} == want
    ]
    if len(found) > 1:  # made for several CPU kinds (ZOO_CPU_KIND): the one whose scheme suits this CPU
        from .cpu import detect

        suited = [e for e in found if e.record.validation and e.record.validation.int8
                  and e.record.validation.int8.reduce_range == scheme(detect().kind)["reduce_range"]]
        found = suited if len(suited) == 1 else found
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
    int8 = validation.int8 if validation else None
    calibration = (int8.calibration if int8 else None) or {}
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
        return f"skipped ({one_line(exc, limit=300)})"


def _static_batch(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name
