"""Running models with ONNX Runtime: honest sessions, checked inputs, readable outputs.

``open_session`` never falls back silently. ONNX Runtime quietly drops to the CPU provider
when CUDA or TensorRT cannot load (a missing driver, CUDA or cuDNN library); zoo creates
the session, reads ``get_providers()`` and raises ``EnvironmentProblem`` (exit 4) naming
what is installed, why the provider did not load and how to fix it. ``auto`` tries CUDA,
then CPU, and records why each better provider was passed over. TensorRT is only used
when asked for: it builds an engine per input shape (minutes, cached under the store),
which a plain ``zoo run`` should not do behind the user's back.

Imports onnxruntime and numpy inside functions only; torch is never imported here.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import EnvironmentProblem, UserError, ZooError
from .integrity import check_external_data
from .record import Record, RecordError
from .spec import Preprocessing

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
CHOICES = (*PROVIDERS, "auto")
AUTO_ORDER = ("cuda", "cpu")
CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
ARENA_STRATEGIES = ("kNextPowerOfTwo", "kSameAsRequested")
RANDOM_SEED = 0
MAX_RANDOM_INPUT_BYTES = 4 << 30
_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64",
}


@dataclass
class ProviderOptions:
    """Settings that matter per provider. ``None`` keeps ONNX Runtime's default.

    CPU: ``threads`` (intra-op threads). CUDA: ``device_id``, ``cudnn_conv_algo_search``
    (EXHAUSTIVE times every cuDNN algorithm once per input shape; HEURISTIC picks one at
    once), ``arena_extend_strategy``, ``prefer_nhwc``. TensorRT: ``trt_fp16`` and an engine
    cache in ``trt_cache_dir``. ``cuda_graph`` captures the whole run as one CUDA graph
    (static shapes, IO binding, every node on the GPU).
    """

    threads: int | None = None
    device_id: int = 0
    cudnn_conv_algo_search: str | None = None
    arena_extend_strategy: str | None = None
    prefer_nhwc: bool | None = None
    trt_fp16: bool = False
    trt_cache_dir: Path | None = None
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, not {self.threads}")
        if self.device_id < 0:
            raise UserError(f"--device-id must be 0 or more, not {self.device_id}")
        if self.cudnn_conv_algo_search is not None:
            self.cudnn_conv_algo_search = self.cudnn_conv_algo_search.upper()
            if self.cudnn_conv_algo_search not in CONV_ALGO_SEARCH:
                raise UserError(f"unknown --cudnn-conv-algo-search {self.cudnn_conv_algo_search!r}: "
                                f"use one of {', '.join(CONV_ALGO_SEARCH)}")
        if self.arena_extend_strategy is not None and self.arena_extend_strategy not in ARENA_STRATEGIES:
            raise UserError(f"unknown --arena-extend-strategy {self.arena_extend_strategy!r}: "
                            f"use one of {', '.join(ARENA_STRATEGIES)}")

    def cuda(self) -> dict[str, str]:
        options = {"device_id": str(self.device_id)}
        if self.cudnn_conv_algo_search:
            options["cudnn_conv_algo_search"] = self.cudnn_conv_algo_search
        if self.arena_extend_strategy:
            options["arena_extend_strategy"] = self.arena_extend_strategy
        if self.prefer_nhwc is not None:
            options["prefer_nhwc"] = str(int(self.prefer_nhwc))
        if self.cuda_graph:
            options["enable_cuda_graph"] = "1"
        return options

    def tensorrt(self) -> dict[str, str]:
        options = {"device_id": str(self.device_id), "trt_fp16_enable": str(self.trt_fp16)}
        if self.trt_cache_dir is not None:
            self.trt_cache_dir.mkdir(parents=True, exist_ok=True)
            options.update(trt_engine_cache_enable="True", trt_engine_cache_path=str(self.trt_cache_dir),
                           trt_timing_cache_enable="True", trt_timing_cache_path=str(self.trt_cache_dir))
        if self.cuda_graph:
            options["trt_cuda_graph_enable"] = "True"
        return options

    def providers(self, provider: str) -> list[Any]:
        """The list handed to ``InferenceSession``: CUDA and TensorRT keep CPU for the few
        nodes they do not implement (shape arithmetic), as ONNX Runtime intends."""
        if provider == "cpu":
            return ["CPUExecutionProvider"]
        cuda = ("CUDAExecutionProvider", self.cuda())
        if provider == "cuda":
            return [cuda, "CPUExecutionProvider"]
        return [("TensorrtExecutionProvider", self.tensorrt()), cuda, "CPUExecutionProvider"]


@dataclass
class Session:
    """An ONNX Runtime session and the provider that really runs it."""

    ort: Any
    provider: str
    requested: str
    active: list[str]
    create_ms: float
    options: ProviderOptions
    passed_over: list[dict[str, str]] = field(default_factory=list)

    @property
    def device(self) -> str:
        """Where bound inputs and outputs live: ``cpu`` or ``cuda``."""
        return "cpu" if self.provider == "cpu" else "cuda"

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return [_describe(value) for value in self.ort.get_inputs()]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return [_describe(value) for value in self.ort.get_outputs()]

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {"provider": self.provider, "requested_provider": self.requested,
                                "session_providers": self.active}
        if self.passed_over:
            data["passed_over"] = self.passed_over
        return data

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Every output for ``feeds`` (host numpy in and out), after checking names, shapes, dtypes."""
        check_feeds(self.inputs, feeds)
        with running():
            return self.ort.run(None, feeds)


class Binding:
    """IO binding: the inputs copied to the session's device once and the outputs
    preallocated there, so each ``run`` reads and writes device memory only. A CUDA graph
    replays exactly these addresses, so it needs this too.

    Output buffers are preallocated from the model's output shapes (a symbolic batch taken
    from the input); an output with other free dimensions is left for ONNX Runtime to
    allocate on the device, each run.
    """

    def __init__(self, session: Session, feeds: dict[str, Any]) -> None:
        check_feeds(session.inputs, feeds)
        with running():  # preallocating the outputs can fail like a run
            self._bind(session, feeds)

    def _bind(self, session: Session, feeds: dict[str, Any]) -> None:
        import onnxruntime as ort

        device, device_id = session.device, session.options.device_id
        self._binding = session.ort.io_binding()
        self.values: list[Any] = []  # the bound OrtValues must outlive the binding
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(array, device, device_id)
            self._binding.bind_ortvalue_input(name, value)
            self.values.append(value)
        batch = next(iter(feeds.values())).shape[0]
        self.outputs: dict[str, Any] = {}
        for spec in session.outputs:
            shape = [batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(spec["shape"])]
            if all(isinstance(d, int) for d in shape):
                value = ort.OrtValue.ortvalue_from_shape_and_type(shape, spec["dtype"], device, device_id)
                self._binding.bind_ortvalue_output(spec["name"], value)
                self.outputs[spec["name"]] = value
            else:
                self._binding.bind_output(spec["name"], device, device_id)
        self._run = session.ort.run_with_iobinding

    def run(self) -> None:
        """One run; returns when the device has finished (a real loop waits before reading)."""
        with running():
            self._run(self._binding)
            self._binding.synchronize_outputs()

    def results(self) -> list[Any]:
        """The outputs of the last run, copied to host numpy arrays."""
        return self._binding.copy_outputs_to_cpu()


def _describe(value: Any) -> dict[str, Any]:
    shape = [d if isinstance(d, int) else (d or "?") for d in value.shape]
    return {"name": value.name, "shape": shape, "dtype": _ORT_TYPES.get(value.type, value.type)}


def open_session(path: str | Path, provider: str = "cpu", options: ProviderOptions | None = None,
                 checked: bool = False) -> Session:
    """A session on ``provider`` (cpu, cuda, tensorrt or auto), or ``EnvironmentProblem``.

    ``checked``: the caller has verified the model's external-data references already (a store
    entry that ``Store.verify`` passed); else they are checked here first.
    """
    options = options or ProviderOptions()
    if provider not in CHOICES:
        raise UserError(f"unknown provider {provider!r}: use one of {', '.join(CHOICES)}")
    if not checked:
        check_external_data(path)  # before ONNX Runtime opens any file the model names
    if provider != "auto":
        return _create(Path(path), provider, options, provider)
    passed_over = []
    for candidate in AUTO_ORDER:
        try:
            session = _create(Path(path), candidate, options, "auto")
        except EnvironmentProblem as exc:
            passed_over.append({"provider": candidate, "reason": str(exc)})
            continue
        session.passed_over = passed_over
        return session
    raise EnvironmentProblem("no provider could run this model: "
                             + "; ".join(f"{p['provider']}: {p['reason']}" for p in passed_over))


def check_provider(provider: str, options: ProviderOptions | None = None) -> None:
    """Fail fast when ``provider`` cannot run here: a session on a one-node probe model, made
    before any model is pulled or exported (seconds, and nothing written to the store)."""
    if provider not in CHOICES:
        raise UserError(f"unknown provider {provider!r}: use one of {', '.join(CHOICES)}")
    if provider in ("cpu", "auto"):  # auto always has the CPU to fall back on, openly
        return
    probe_options = replace(options or ProviderOptions(), cuda_graph=False, trt_cache_dir=None)
    with tempfile.TemporaryDirectory(prefix="zoo-probe.") as tmp:
        probe = Path(tmp) / "probe.onnx"
        probe.write_bytes(_probe_model())
        try:
            open_session(probe, provider, probe_options)
        except EnvironmentProblem as exc:
            if provider != "tensorrt":
                raise
            try:
                open_session(probe, "cuda", probe_options)
            except EnvironmentProblem:  # TensorRT runs on CUDA: advising CUDA would not help
                raise EnvironmentProblem(str(exc).replace("or use --provider cuda", "or use --provider cpu "
                                                          "(CUDA cannot load here either)")) from None
            raise


def _probe_model() -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return model.SerializeToString()


def _create(path: Path, provider: str, options: ProviderOptions, requested: str) -> Session:
    import onnxruntime as ort

    from .env import debug

    wanted = PROVIDERS[provider]
    if wanted not in ort.get_available_providers():
        raise EnvironmentProblem(
            f"{_build()} has no {wanted} (it offers {', '.join(ort.get_available_providers())}); "
            + _advice(provider, missing_build=True))
    if provider != "cpu":
        _preload()
    session_options = ort.SessionOptions()
    # Fatal only: an error while running (an allocation that fails) is zoo's one line, not ORT's own
    # coloured log line before it (ZOO_DEBUG=1 shows ORT's log).
    session_options.log_severity_level = 1 if debug() else 4
    if options.threads is not None:
        session_options.intra_op_num_threads = options.threads
    start = time.perf_counter()
    with _captured_stderr() as log:
        try:
            session = ort.InferenceSession(str(path), session_options, providers=options.providers(provider))
        except Exception as exc:
            session, error = None, _first_logged(str(exc))
    create_ms = (time.perf_counter() - start) * 1000
    if debug() and log.text:
        sys.stderr.write(log.text)
    if session is None:
        if provider == "cpu" or "INVALID_PROTOBUF" in error or "NO_SUCHFILE" in error:
            raise UserError(f"cannot load {path} with ONNX Runtime: {error}")
        if options.cuda_graph and "graph" in error.lower():
            raise UserError(f"this model cannot run as a CUDA graph ({error}); it needs static shapes and every "
                            "node on the GPU: pull it with --static-batch, or use --mode iobinding")
        raise EnvironmentProblem(f"{wanted} failed to create a session ({error}); {_advice(provider)}")
    active = session.get_providers()
    if active[0] != wanted:
        reason = _load_failure(log.text) or f"the session runs on {', '.join(active)}"
        raise EnvironmentProblem(f"{wanted} is installed ({_build()}) but did not load: {reason}; "
                                 + _advice(provider))
    return Session(ort=session, provider=provider, requested=requested, active=active,
                   create_ms=round(create_ms, 3), options=options)


@contextlib.contextmanager
def running() -> Iterator[None]:
    """Around ONNX Runtime calls that run a model: its failures become one-line zoo errors."""
    try:
        yield
    except Exception as exc:
        # ORT's own exception types, and MemoryError: pybind11's translation of std::bad_alloc
        if type(exc).__module__.startswith("onnxruntime.") or isinstance(exc, MemoryError):
            raise run_failure(exc) from None
        raise


def run_failure(exc: Exception) -> ZooError:
    """ONNX Runtime failing while it runs a model: out of memory is the machine (exit 4), anything
    else the model or its inputs (exit 1)."""
    full = str(exc)
    wanted = re.search(r"Failed to allocate memory for requested buffer of size (\d+)", full)
    if wanted or "bad_alloc" in full or isinstance(exc, MemoryError):
        size = f" (it asked for {int(wanted.group(1)) / 2**30:.1f} GiB)" if wanted else ""
        return EnvironmentProblem(f"ONNX Runtime ran out of memory running the model{size}; use a smaller "
                                  "batch or input, or a machine with more memory")
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", full.strip())
    text = re.sub(r"/onnxruntime_src/\S+ [^)]*\) ", "", text)  # the C++ source line and signature
    return UserError(f"ONNX Runtime failed running the model: {_first_logged(text)}")


def _build() -> str:
    import onnxruntime as ort

    try:
        from onnxruntime.capi import build_and_package_info as info

        package, cuda = info.package_name, getattr(info, "cuda_version", None)
    except ImportError:
        package, cuda = "onnxruntime", None
    return f"{package} {ort.__version__}" + (f" built for CUDA {cuda}" if cuda else "")


def _advice(provider: str, missing_build: bool = False) -> str:
    if missing_build:
        return ("install the GPU build instead of the CPU one (`pip uninstall onnxruntime && "
                "pip install onnxruntime-gpu`), or use --provider cpu")
    if provider == "tensorrt":
        return ("install TensorRT 10 (`pip install tensorrt`, or libnvinfer on LD_LIBRARY_PATH) "
                "next to the CUDA and cuDNN libraries, or use --provider cuda")
    return ("check the NVIDIA driver with `nvidia-smi` and install the CUDA and cuDNN 9 libraries "
            "onnxruntime-gpu was built for (`pip install \"onnxruntime-gpu[cuda,cudnn]\"`), "
            "or use --provider cpu")


_PRELOADED = False


def _preload() -> None:
    """Load CUDA and cuDNN from pip's nvidia packages (or torch's) before the first GPU session."""
    global _PRELOADED
    if _PRELOADED:
        return
    import onnxruntime as ort

    _PRELOADED = True
    if hasattr(ort, "preload_dlls"):  # onnxruntime >= 1.21
        with contextlib.redirect_stdout(io.StringIO()):  # it prints warnings; stdout is for --json
            try:
                ort.preload_dlls()
            except Exception:  # a missing library shows up as the provider failing to load
                pass


@dataclass
class _Log:
    text: str = ""


@contextlib.contextmanager
def _captured_stderr() -> Iterator[_Log]:
    """Capture what ONNX Runtime's C++ logger writes to fd 2 while a session is created.

    The default logger reports provider load failures there, whatever the session's log
    level; zoo turns them into its one-line error instead (ZOO_DEBUG=1 shows them).
    """
    log = _Log()
    printed = io.StringIO()  # its Python layer prints provider fallbacks to stdout, which is for --json
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink, contextlib.redirect_stdout(printed):
        os.dup2(sink.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.text = sink.read().decode(errors="replace") + printed.getvalue()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _load_failure(text: str) -> str:
    """The reason a provider library did not load, from ONNX Runtime's log."""
    text = _ANSI.sub("", text)
    found = re.search(r"with error: ([^\n]+)", text)
    if found:
        return found.group(1).strip()
    found = re.search(r"Failed to create \w+ExecutionProvider\. ([^\n]+?)(?: Please|$)", text)
    return found.group(1).strip() if found else ""


def _first_logged(text: str) -> str:
    """The first line of ONNX Runtime's log or message (the rest is its context dump)."""
    from .errors import one_line

    lines = [line for line in text.splitlines() if line.strip()]
    return one_line(lines[0], limit=300) if lines else "unknown error"


# -- inputs and outputs ---------------------------------------------------------------------
def expected(inputs: Sequence[dict[str, Any]]) -> str:
    """The model's inputs in words, for error messages."""
    return ", ".join(f"{i['name']!r} {i['dtype']} [{', '.join(map(str, i['shape']))}]" for i in inputs)


def check_feeds(inputs: Sequence[dict[str, Any]], feeds: dict[str, Any]) -> None:
    """A one-line ``UserError`` unless ``feeds`` match the model's input names, dtypes and shapes."""
    names = [i["name"] for i in inputs]
    if sorted(feeds) != sorted(names):
        raise UserError(f"got inputs {sorted(feeds)} but the model expects {expected(inputs)}")
    for spec in inputs:
        array = feeds[spec["name"]]
        shape_ok = len(array.shape) == len(spec["shape"]) and all(
            not isinstance(want, int) or want == got for want, got in zip(spec["shape"], array.shape, strict=False))
        if not shape_ok or str(array.dtype) != spec["dtype"]:
            raise UserError(f"input {spec['name']!r} is {array.dtype} {list(array.shape)} but the model expects "
                            f"{expected(inputs)}")


def concrete_shape(spec: dict[str, Any], batch: int | None, preprocessing: Preprocessing | None) -> list[int]:
    """``spec``'s shape with the batch and any other symbolic dimension filled in."""
    shape = list(spec["shape"])
    fallback = list(preprocessing.input_size) if preprocessing else []
    for i, dim in enumerate(shape):
        if isinstance(dim, int) and dim > 0:
            if i == 0 and batch is not None and dim != batch:
                raise UserError(f"the model has a static batch of {dim}, not {batch}: use --batch {dim}, "
                                "or pull it with --dynamic-batch")
            continue
        if i == 0:
            shape[i] = batch or 1
        elif len(fallback) == len(shape) - 1:
            shape[i] = int(fallback[i - 1])
        else:
            raise UserError(f"input {spec['name']!r} has a free dimension {dim!r}: give the tensor "
                            "with --input FILE.npy")
    return shape


def random_feeds(inputs: Sequence[dict[str, Any]], batch: int | None = None,
                 preprocessing: Preprocessing | None = None, seed: int = RANDOM_SEED) -> dict[str, Any]:
    """Seeded random inputs of the model's shapes (normal for floats, zeros otherwise)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        if spec["dtype"] not in _ORT_TYPES.values():  # tensor(string), bfloat16, sequences, maps...
            raise UserError(f"input {spec['name']!r} is {spec['dtype']}: zoo feeds numeric tensors only (random "
                            "or --input FILE.npy); run this model with ONNX Runtime directly")
        shape = concrete_shape(spec, batch, preprocessing)
        size = math.prod(shape) * 8  # standard_normal draws float64 before the cast
        if size > MAX_RANDOM_INPUT_BYTES:  # a declared input of 224 GiB is refused, not allocated
            raise UserError(f"input {spec['name']!r} of shape {shape} needs {size / 2**30:.1f} GiB, more than zoo "
                            f"allocates for a random input ({MAX_RANDOM_INPUT_BYTES >> 30} GiB); give --input FILE.npy")
        if spec["dtype"].startswith("float"):
            feeds[spec["name"]] = rng.standard_normal(shape).astype(spec["dtype"])
        else:
            feeds[spec["name"]] = np.zeros(shape, dtype=spec["dtype"])
    return feeds


def read_feeds(path: str | Path, inputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Inputs from a ``.npy`` file (the single input) or ``.npz`` (arrays named as the inputs)."""
    import numpy as np

    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"input file not found: {path}")
    if file.suffix not in (".npy", ".npz"):
        raise UserError(f"--input takes a .npy or .npz file, not {file.name}")
    try:
        loaded = np.load(file, allow_pickle=False)
    except Exception as exc:
        raise UserError(f"cannot read {path} as a numpy file: {_first_logged(str(exc))}") from None
    if file.suffix == ".npy":
        if len(inputs) != 1:
            raise UserError(f"the model has several inputs ({expected(inputs)}): give an .npz with one array each")
        feeds = {inputs[0]["name"]: loaded}
    else:
        with loaded:
            arrays = {key: loaded[key] for key in loaded.files}
        if len(inputs) == 1 and len(arrays) == 1:
            feeds = {inputs[0]["name"]: next(iter(arrays.values()))}
        else:
            feeds = arrays
    check_feeds(inputs, feeds)
    return feeds


def write_outputs(path: str | Path, outputs: Sequence[dict[str, Any]], values: Sequence[Any]) -> Path:
    import numpy as np

    file = output_path(path)
    try:
        np.savez(file, **{spec["name"]: value for spec, value in zip(outputs, values, strict=True)})
    except OSError as exc:
        from .files import refused_write

        refused = refused_write(exc, file, file.parent)
        if refused is not None:
            raise refused from None
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return file


def output_path(path: str | Path) -> Path:
    """Where ``--output`` writes, checked before anything runs: a new or regular ``.npz`` file."""
    file = Path(path).expanduser()
    if file.suffix != ".npz":
        raise UserError(f"--output writes an .npz file, not {file.name}")
    if file.is_dir():
        raise UserError(f"--output {path} is a directory; name an .npz file to write")
    if not file.parent.is_dir():
        raise UserError(f"cannot write {path}: directory {file.parent} does not exist")
    return file


def top_k(logits: Any, labels: Sequence[str] | None, k: int) -> list[list[dict[str, Any]]]:
    """Per row of ``logits``, the ``k`` best classes with softmax scores."""
    import numpy as np

    scores = np.asarray(logits, dtype=np.float64)
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    named = labels if labels and len(labels) == scores.shape[1] else None
    rows = []
    for row in scores:
        best = np.argsort(-row, kind="stable")[:k]
        rows.append([{"index": int(i), "label": named[i] if named else None, "score": float(row[i])}
                     for i in best])
    return rows


def summarize(spec: dict[str, Any], value: Any) -> dict[str, Any]:
    import numpy as np

    data = {"name": spec["name"], "shape": list(value.shape), "dtype": str(value.dtype)}
    if value.size and np.issubdtype(value.dtype, np.number):
        data.update(min=float(value.min()), max=float(value.max()), mean=float(value.mean()))
    if value.size <= 16:
        data["values"] = value.tolist()
    return data


# -- what to run ------------------------------------------------------------------------------
@dataclass
class Target:
    """A model file and its record: a store entry, or a bare ``.onnx`` file (``record`` is
    ``None`` for a file zoo did not make)."""

    path: Path
    record: Record | None
    entry: Any = None
    verified: bool = False  # its files (and external-data references) checked against the record

    @property
    def preprocessing(self) -> Preprocessing | None:
        return self.record.preprocessing if self.record else None

    @property
    def labels(self) -> list[str] | None:
        return self.record.labels if self.record else None

    def summary(self) -> dict[str, Any]:
        record = self.record
        return {"name": (record.name if record else None) or self.path.name, "ref": record.ref if record else None,
                "path": str(self.path), "key": self.entry.key if self.entry else None,
                "dtype": record.dtype if record else None}


def read_file(name: str) -> Target:
    """A bare ``.onnx`` file as a target, with the record it carries (if any)."""
    from .files import FileRefused, check_regular
    from .metadata import read_props

    file = Path(name).expanduser()
    try:
        check_regular(file)
    except FileRefused as exc:
        raise UserError(str(exc)) from None
    except OSError:
        raise UserError(f"no such file: {name}") from None
    try:
        record = read_props(file)
    except RecordError:
        raise
    except Exception as exc:
        raise UserError(f"cannot read {name} as an ONNX model: {_first_logged(str(exc))}") from None
    return Target(path=file.resolve(), record=record)


def trt_cache_dir(target: Target) -> Path:
    """TensorRT engines live under the store (``tensorrt/<key>``, per model file), checked to
    stay inside it like every folder of the store; ``rm`` and ``gc`` remove them with the entry."""
    from .env import home
    from .layout import Layout

    if target.entry is not None:  # models/<key>: the entry's own store, which may not be ZOO_HOME's
        return Layout(target.entry.dir.parent.parent).engine_dir(target.entry.key)
    return Layout(home()).engine_dir(target.path.stem)


def with_defaults(options: ProviderOptions | None, target: Target, provider: str, search: str) -> ProviderOptions:
    """A copy of the caller's ``options`` with what this call fills in (the engine cache, the
    cuDNN search): a caller reusing one object for ``run`` then ``bench`` gets each one's default."""
    options = replace(options) if options is not None else ProviderOptions()
    if provider == "tensorrt" and options.trt_cache_dir is None:
        options.trt_cache_dir = trt_cache_dir(target)
    if options.cudnn_conv_algo_search is None:
        options.cudnn_conv_algo_search = search
    return options


def _predict(target: Target, session: Session, images: Sequence[str | Path], output_file: str | Path | None,
             topk: int, threshold: float | None, save: str | Path | None) -> dict[str, Any]:
    """``run`` on images through ``zoo.tasks.Predictor``: per-image results in the images' pixels."""
    from .tasks import CLASSIFICATION, Predictor

    if len(session.inputs) != 1:
        raise UserError(f"--image needs a model with one image input; this one expects {expected(session.inputs)}")
    if target.preprocessing is None:
        raise UserError(f"{target.path.name} carries no zoo preprocessing metadata: give a tensor with --input")
    predictor = Predictor(target, session=session, batch=len(images))
    start = time.perf_counter()
    results = predictor.predict(images, threshold, topk)
    run_ms = (time.perf_counter() - start) * 1000
    described = predictor.outputs
    result: dict[str, Any] = {**target.summary(), **session.summary(), "task": predictor.task,
                              "input": {"kind": "images", "files": [str(p) for p in images],
                                        "runs": predictor.runs, "batch": predictor.batch},
                              "session_create_ms": session.create_ms, "run_ms": round(run_ms, 3)}
    if predictor.task != CLASSIFICATION and described.threshold is not None or threshold is not None:
        result["threshold"] = described.threshold if threshold is None else threshold
    result["predictions"] = [r.to_json() for r in results]
    result["outputs"] = [summarize(spec, value) for spec, value in zip(session.outputs, predictor.last, strict=True)]
    if output_file:
        if predictor.runs > 1:
            raise UserError("--output writes one run's outputs; this model took the images one at a time: "
                            "give one --image")
        result["output_file"] = str(write_outputs(output_file, session.outputs, predictor.last))
    if save is not None:
        from .drawing import save as draw_all

        written = draw_all(images, results, save, described.skeleton, described.background)
        result["saved"] = [str(path) for path in written]
    return result


def run(
    target: Target,
    provider: str = "cpu",
    images: Sequence[str | Path] = (),
    input_file: str | Path | None = None,
    output_file: str | Path | None = None,
    topk: int = 5,
    batch: int | None = None,
    options: ProviderOptions | None = None,
    threshold: float | None = None,
    save: str | Path | None = None,
) -> dict[str, Any]:
    """Run ``target`` once on images, a tensor file or a random input; describe what ran.

    Images through a model of another task than classification, or with ``save`` (a
    directory for the images with results drawn), go through ``zoo.tasks.Predictor``.
    """
    from . import images as image_io
    from .tasks import CLASSIFICATION, task_of

    if images and input_file:
        raise UserError("give images (--image) or a tensor (--input), not both")
    if topk < 1:
        raise UserError(f"--topk must be at least 1, not {topk}")
    if output_file:
        output_path(output_file)
    options = with_defaults(options, target, provider, "HEURISTIC")  # one run: a search costs more than it saves
    if save is not None and not images:
        raise UserError("--save draws results on images: give --image")
    if threshold is not None and task_of(target.record) == CLASSIFICATION:
        raise UserError("--threshold is for detection models; a classifier takes --topk")
    session = open_session(target.path, provider, options, checked=target.verified)
    inputs = session.inputs
    if images and (task_of(target.record) != CLASSIFICATION or save is not None):
        return _predict(target, session, images, output_file, topk, threshold, save)
    if images:
        if len(inputs) != 1:
            raise UserError(f"--image needs a model with one image input; this one expects {expected(inputs)}")
        if target.preprocessing is None:
            raise UserError(f"{target.path.name} carries no zoo preprocessing metadata: say how to read images "
                            "with --size/--resize/--mean/--std (or --preprocess-like SOURCE:NAME), or give a "
                            "tensor with --input")
        feeds = {inputs[0]["name"]: image_io.batch(images, target.preprocessing).astype(inputs[0]["dtype"])}
        source = {"kind": "images", "files": [str(p) for p in images]}
    elif input_file:
        feeds = read_feeds(input_file, inputs)
        source = {"kind": "file", "file": str(input_file)}
    else:
        feeds = random_feeds(inputs, batch, target.preprocessing)
        source = {"kind": "random", "seed": RANDOM_SEED, "distribution": "normal"}
    source.update(shapes={k: list(v.shape) for k, v in feeds.items()})
    start = time.perf_counter()
    values = session.run(feeds)
    run_ms = (time.perf_counter() - start) * 1000
    outputs = session.outputs
    result: dict[str, Any] = {**target.summary(), **session.summary(), "input": source,
                              "session_create_ms": session.create_ms, "run_ms": round(run_ms, 3)}
    first = values[0]
    if first.ndim == 2 and first.shape[1] > 1 and first.dtype.kind == "f":
        result["predictions"] = top_k(first, target.labels, topk)
    result["outputs"] = [summarize(spec, value) for spec, value in zip(outputs, values, strict=True)]
    if output_file:
        result["output_file"] = str(write_outputs(output_file, outputs, values))
    return result
