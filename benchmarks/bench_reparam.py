"""ONNX Runtime CPU latency of RepViT-M0.9 re-parameterised vs un-fused, batch 1.

Exports both with zoo (`zoo pull repvit_m0_9 --weights none [--no-reparameterize]`, static
batch 1) into a temporary store, then times them on ORT's CPU provider in alternating runs
so that background load hits both alike. Prints one JSON document.
Run: python benchmarks/bench_reparam.py [--rounds 10] [--iterations 50] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

VARIANTS = {"reparameterized": [], "unfused": ["--no-reparameterize"]}


def pull(home: Path, name: str, extra: list[str]) -> dict:
    env = {**os.environ, "ZOO_HOME": str(home)}
    cmd = [sys.executable, "-m", "zoo", "pull", name, "--weights", "none", "--batch", "1", "--static-batch",
           *extra, "--json"]
    out = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    return {"path": out["path"], **json.loads((Path(out["path"]).parent / "zoo.json").read_text())}


def session(path: str, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="repvit_m0_9")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=50, help="timed runs per model per round")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: ORT's)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        entries = {label: pull(Path(tmp), args.model, extra) for label, extra in VARIANTS.items()}
        sessions = {label: session(e["path"], args.threads) for label, e in entries.items()}
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        for s in sessions.values():
            for _ in range(args.warmup):
                s.run(None, {"input": x})
        # Alternate the two models run by run: each pair sees the same background load, so
        # the per-pair ratio stays meaningful on a busy machine where absolute times drift.
        times: dict[str, list[float]] = {label: [] for label in sessions}
        for _ in range(args.rounds * args.iterations):
            for label, s in sessions.items():
                start = time.perf_counter()
                s.run(None, {"input": x})
                times[label].append((time.perf_counter() - start) * 1000)

    def summary(label: str) -> dict:
        ms = sorted(times[label])
        return {
            "p50_ms": round(statistics.median(ms), 3),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3),
            "min_ms": round(ms[0], 3),
            "mean_ms": round(statistics.fmean(ms), 3),
            "runs": len(ms),
            "onnx_nodes": entries[label]["stats"]["onnx_nodes"],
            "params": entries[label]["stats"]["params"],
        }

    results = {label: summary(label) for label in times}
    fused, plain = results["reparameterized"]["p50_ms"], results["unfused"]["p50_ms"]
    import onnxruntime

    print(json.dumps({
        "model": args.model,
        "batch": 1,
        "provider": "CPUExecutionProvider",
        "threads": args.threads or "ort default",
        "results": results,
        "p50_reduction_pct": round(100 * (plain - fused) / plain, 1),
        "paired_median_reduction_pct": round(100 * (1 - statistics.median(
            f / p for f, p in zip(times["reparameterized"], times["unfused"], strict=True))), 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
        "onnxruntime": onnxruntime.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2))


if __name__ == "__main__":
    main()
