"""Runtime timings on CPU: `zoo bench`'s loop against a bare `session.run` loop, and ONNX
Runtime against PyTorch eager.

1. Overhead, resnet50 --weights none, batch 1: the latency `zoo bench` reports
   (`zoo.benchmark.bench`, the function behind the command; the CLI adds nothing inside the
   timed loop) against the loop a user writes by hand: `InferenceSession(path)` and
   `session.run(None, {"input": x})`, each call timed with perf_counter. Target: <= 3%.
2. ONNX Runtime CPU (`zoo bench`'s naive loop) against PyTorch eager (`--compare torch`'s
   loop, the model rebuilt by its source plugin) for resnet50 and repvit_m0_9 at batch 1.
   Target: >= 1.5x.

Both run in one process and alternate, many short rounds, because the dev box is shared:
load from other processes only ever adds time, so the figure is the best round of each
side (the least disturbed), with the median of per-round ratios next to it.

Run: python benchmarks/bench_runtime.py [--rounds N] [--iterations N] [--home DIR]
Prints a markdown table and writes the raw numbers to benchmarks/results/runtime.json.
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

REPO = Path(__file__).resolve().parent.parent


def bare_loop(path: str, warmup: int, iterations: int) -> float:
    """The hand-written loop; returns its p50 in ms."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {"input": x})
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        session.run(None, {"input": x})
        times.append(time.perf_counter() - start)
    return float(np.percentile(np.asarray(times) * 1000, 50))


def pull(name: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "zoo", "pull", name, "--weights", "none"], env=env, check=True,
                   capture_output=True, cwd=REPO)


def summary(first: list[float], second: list[float]) -> dict:
    return {"best": [min(first), min(second)], "ratio_of_best": min(second) / min(first),
            "median_ratio": statistics.median(b / a for a, b in zip(first, second, strict=True)),
            "rounds": [first, second]}


def overhead(rounds: int, warmup: int, iterations: int) -> dict:
    from zoo.api import locate
    from zoo.benchmark import bench

    target = locate("resnet50", weights="none")
    bare_ms, zoo_ms = [], []
    for _ in range(rounds):
        bare_ms.append(bare_loop(str(target.path), warmup, iterations))
        zoo_ms.append(bench(target, "cpu", (1,), ("naive",), warmup, iterations)[0]["p50_ms"])
    return {"model": "resnet50 --weights none", "batch": 1, "iterations": iterations,
            "p50_ms": summary(bare_ms, zoo_ms)}


def versus_torch(name: str, rounds: int, warmup: int, iterations: int) -> dict:
    from zoo.api import locate, torch_module
    from zoo.benchmark import _measure, torch_eager
    from zoo.runtime import open_session

    target = locate(name, weights="none")
    built = torch_module(target)
    session = open_session(target.path, "cpu")
    torch_ms, ort_ms = [], []
    for _ in range(rounds):
        ort_ms.append(_measure(target, session, "naive", 1, warmup, iterations)["p50_ms"])
        torch_ms.append(torch_eager(target, built, 1, warmup, iterations, {"kind": "cpu"})["p50_ms"])
    import torch

    return {"model": f"{name} --weights none", "ref": target.record.ref, "batch": 1,
            "torch_threads": torch.get_num_threads(), "p50_ms": summary(ort_ms, torch_ms)}


def machine() -> str:
    from zoo.benchmark import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "zoo-bench-runtime",
                        help="Store to export into (kept between runs: exports happen once).")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(ZOO_HOME=str(args.home), ZOO_CONFIG_DIR=str(args.home / "config"))
    for name in ("resnet50", "repvit_m0_9"):
        pull(name, env)
    os.environ.update(ZOO_HOME=env["ZOO_HOME"], ZOO_CONFIG_DIR=env["ZOO_CONFIG_DIR"])

    cost = overhead(args.rounds, args.warmup, args.iterations)
    compared = [versus_torch(name, args.rounds, args.warmup, args.iterations) for name in ("resnet50", "repvit_m0_9")]
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "load_average": os.getloadavg(), "rounds": args.rounds, "overhead": cost, "versus_torch": compared}
    out = REPO / "benchmarks" / "results" / "runtime.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{report['date']} on {report['machine']}; {args.rounds} alternating rounds of {args.iterations} runs\n")
    row = cost["p50_ms"]
    print("| resnet50, batch 1, p50 | bare session.run | zoo bench | overhead (best rounds) | (median ratio) |")
    print("|---|---|---|---|---|")
    print(f"| CPU | {row['best'][0]:.2f} ms | {row['best'][1]:.2f} ms | {row['ratio_of_best'] - 1:+.1%} "
          f"| {row['median_ratio'] - 1:+.1%} |\n")
    print("| model, batch 1, p50 | ORT CPU | PyTorch eager | speedup (best rounds) | (median ratio) |")
    print("|---|---|---|---|---|")
    for item in compared:
        row = item["p50_ms"]
        print(f"| {item['ref']} | {row['best'][0]:.2f} ms | {row['best'][1]:.2f} ms | {row['ratio_of_best']:.2f}x "
              f"| {row['median_ratio']:.2f}x |")


if __name__ == "__main__":
    main()
