"""``zoo bench``: latency and throughput of a model on ONNX Runtime, per batch and mode.

Modes are the loops users write:

- ``naive``: host numpy in, host numpy out (``session.run(None, {name: array})``).
- ``iobinding``: input and outputs bound once on the provider's device; each run reads and
  writes device memory only (on CPU: preallocated outputs).
- ``cudagraph``: IO binding plus CUDA graph capture, replayed each run (static shapes;
  a session per batch size, since a graph is captured for one shape).

Inputs are made once before timing; the timed loop holds the run call and, for the bound
modes, the wait for the device to finish, nothing else. Each iteration is timed on its own
with ``perf_counter`` so percentiles are real.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .errors import UserError
from .runtime import Binding, ProviderOptions, Session, Target, open_session, random_feeds, running, with_defaults

MODES = ("naive", "iobinding", "cudagraph")


def parse_list(text: str, what: str, convert: Callable[[str], Any] = str) -> list[Any]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; a one-line ``UserError`` on anything else."""
    try:
        items = [convert(part.strip()) for part in str(text).split(",") if part.strip()]
    except ValueError:
        items = []
    if not items:
        raise UserError(f"cannot read {what} from {text!r}: give a comma-separated list such as 1,8,32")
    return items


def bench(
    target: Target,
    provider: str = "cpu",
    batches: Sequence[int] = (1,),
    modes: Sequence[str] = ("naive",),
    warmup: int = 10,
    iterations: int = 50,
    options: ProviderOptions | None = None,
    torch_reference: Callable[[], tuple[Any, Any]] | None = None,
    other: Target | None = None,
) -> list[dict[str, Any]]:
    """One result per (mode, batch): the contract keys plus timings of session and first run.

    ``torch_reference`` builds the PyTorch module and dtype ``target`` was exported from; when
    given, each result also times it in eager mode (``--compare torch``). ``other`` (another
    model, e.g. the float32 parent of an int8 entry) is timed right after, per mode and batch.
    """
    for mode in modes:
        if mode not in MODES:
            raise UserError(f"unknown --mode {mode!r}: use one of {', '.join(MODES)}")
    if any(b < 1 for b in batches):
        raise UserError(f"batch sizes must be at least 1, not {list(batches)}")
    if warmup < 0 or iterations < 1:
        raise UserError("--warmup must be 0 or more and --iterations at least 1")
    if "cudagraph" in modes and provider == "cpu":
        raise UserError("cudagraph mode needs --provider cuda or tensorrt (CUDA graphs are a GPU feature)")
    options = with_defaults(options, target, provider, "EXHAUSTIVE")  # the warm-up pays for the search once per shape

    results = []
    shared: Session | None = None
    for mode in modes:
        for batch in batches:
            if mode == "cudagraph":
                graph_options = replace(options, cuda_graph=True)
                session = open_session(target.path, provider, graph_options, checked=target.verified)
                if session.device == "cpu":
                    raise UserError(f"cudagraph mode needs CUDA, but the session runs on cpu "
                                    f"({_why_cpu(session)}): use --mode naive or iobinding")
            else:
                if shared is None:
                    shared = open_session(target.path, provider, options, checked=target.verified)
                session = shared
            results.append(_measure(target, session, mode, batch, warmup, iterations))
    if other is not None:
        _compare_with(other, results, provider, options, warmup, iterations)
    if torch_reference is not None:
        built = torch_reference()
        for result in results:
            eager = torch_eager(target, built, result["batch"], warmup, iterations, result["device"], options.threads)
            result["compare"] = {"torch": eager,
                                 "speedup_p50": round(eager["p50_ms"] / result["p50_ms"], 3),
                                 "speedup_throughput": round(result["throughput"] / eager["throughput"], 3)}
    return results


def _compare_with(other: Target, results: list[dict[str, Any]], provider: str, options: ProviderOptions,
                  warmup: int, iterations: int) -> None:
    """Time ``other`` per result (same provider, mode and batch) right after this model."""
    session = open_session(other.path, provider, options)
    for result in results:
        if result["mode"] == "cudagraph":
            session_for = open_session(other.path, provider, replace(options, cuda_graph=True))
        else:
            session_for = session
        theirs = _measure(other, session_for, result["mode"], result["batch"], warmup, iterations)
        keep = ("batch", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "throughput", "mode", "provider",
                "first_run_ms", "session_create_ms", "input_shape", "model")
        result["compare"] = {"other": {k: theirs[k] for k in keep},
                             "speedup_p50": round(theirs["p50_ms"] / result["p50_ms"], 3),
                             "speedup_throughput": round(result["throughput"] / theirs["throughput"], 3)}


def _why_cpu(session: Session) -> str:
    return "; ".join(f"{p['provider']}: {p['reason']}" for p in session.passed_over) or "asked for"


def _measure(target: Target, session: Session, mode: str, batch: int, warmup: int, iterations: int) -> dict[str, Any]:
    feeds = random_feeds(session.inputs, batch, target.preprocessing)
    with running():  # ONNX Runtime failing mid-run (out of memory) is one line; no cost per step
        step = _naive(session, feeds) if mode == "naive" else _bound(session, feeds)
        first_start = time.perf_counter()
        step()
        first_ms = (time.perf_counter() - first_start) * 1000
        for _ in range(warmup):
            step()
        clock = time.perf_counter
        times = [0.0] * iterations
        for i in range(iterations):
            start = clock()
            step()
            times[i] = clock() - start
    return {
        **_stats(times, batch),
        "mode": mode,
        "provider": session.provider,
        "requested_provider": session.requested,
        "session_providers": session.active,
        **({"passed_over": session.passed_over} if session.passed_over else {}),
        "session_create_ms": session.create_ms,
        "first_run_ms": round(first_ms, 3),
        "warmup": warmup,
        "iterations": iterations,
        "input_shape": {k: list(v.shape) for k, v in feeds.items()},
        "model": target.summary(),
        "device": device_info(session),
        "versions": versions(),
    }


def _stats(seconds: Sequence[float], batch: int) -> dict[str, Any]:
    import numpy as np

    ms = np.asarray(seconds) * 1000
    mean = float(ms.mean())
    return {
        "batch": batch,
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p90_ms": round(float(np.percentile(ms, 90)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(mean, 4),
        "min_ms": round(float(ms.min()), 4),
        "throughput": round(batch * 1000 / mean, 3),
    }


def _naive(session: Session, feeds: dict[str, Any]) -> Callable[[], Any]:
    run = session.ort.run

    def step() -> Any:
        return run(None, feeds)

    return step


def _bound(session: Session, feeds: dict[str, Any]) -> Callable[[], Any]:
    return Binding(session, feeds).run


def torch_eager(target: Target, built: tuple[Any, Any], batch: int, warmup: int, iterations: int,
                device: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """``built`` (the module ``target`` was exported from, and its dtype) in PyTorch eager mode,
    timed like ``naive``: the input is made once, each call waits for the result."""
    import torch

    module, dtype = built
    on_gpu = device["kind"] == "cuda"
    torch_device = torch.device(f"cuda:{device['device_id']}" if on_gpu else "cpu")
    if on_gpu and not torch.cuda.is_available():
        raise UserError("--compare torch on CUDA needs a CUDA build of torch")
    if threads is not None:
        torch.set_num_threads(threads)
    dtype = dtype if on_gpu else torch.float32  # float16 convolutions on CPU are not a fair baseline
    module = module.to(torch_device, dtype)
    shape = random_feeds([{"name": "x", "shape": list(target.record.inputs[0].shape),
                           "dtype": "float32"}], batch, target.preprocessing)["x"].shape
    x = torch.randn(*shape, device=torch_device, dtype=dtype, generator=None)
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)

    def step() -> None:
        module(x)
        sync()

    with torch.inference_mode():
        first_start = time.perf_counter()
        step()
        first_ms = (time.perf_counter() - first_start) * 1000
        for _ in range(warmup):
            step()
        times = [0.0] * iterations
        for i in range(iterations):
            start = time.perf_counter()
            step()
            times[i] = time.perf_counter() - start
    return {**_stats(times, batch), "mode": "eager", "dtype": str(dtype).removeprefix("torch."),
            "device": str(torch_device), "threads": torch.get_num_threads(), "first_run_ms": round(first_ms, 3),
            "torch": torch.__version__}


def versions() -> dict[str, str | None]:
    from .metadata import toolchain

    wanted = ("python", "zoo", "onnxruntime", "onnxruntime-gpu", "numpy")
    return {k: v for k, v in toolchain().items() if k in wanted}


def device_info(session: Session) -> dict[str, Any]:
    if session.device == "cpu":
        return {"kind": "cpu", "name": cpu_name(), "cores": os.cpu_count(),
                "threads": session.options.threads or "onnxruntime default"}
    return {"kind": "cuda", "name": gpu_name(session.options.device_id), "device_id": session.options.device_id}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name(device_id: int) -> str:
    """The GPU's name from the CUDA driver (no torch needed)."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1" if os.name != "nt" else "nvcuda.dll")
        device = ctypes.c_int()
        name = ctypes.create_string_buffer(256)
        if cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(device), device_id):
            return "unknown CUDA device"
        cuda.cuDeviceGetName(name, 256, device)
        return name.value.decode()
    except OSError:
        return "unknown CUDA device"
