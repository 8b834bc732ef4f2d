"""Runtime timings on CPU: `zoo bench` against a bare `session.run` loop, and ONNX Runtime
against PyTorch eager.

1. Overhead: `zoo bench resnet50 --weights none --batch 1` (a whole CLI process) against
   the loop a user writes by hand in a fresh process (`InferenceSession` +
   `session.run(None, {"input": x})`, each call timed with perf_counter). Rounds alternate
   the two so load from other processes hits both; the figure is the best round of each
   (least disturbed), with the median of per-round ratios next to it. Target: <= 3%.
2. `zoo bench NAME --weights none --batch 1 --compare torch` for resnet50 and repvit_m0_9:
   ONNX Runtime CPU against PyTorch eager on the same model, best p50 of the rounds for
   each side. Target: >= 1.5x.

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
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BARE_LOOP = """
import json, sys, time
import numpy as np, onnxruntime as ort
path, warmup, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
for _ in range(warmup):
    session.run(None, {"input": x})
times = []
for _ in range(iterations):
    start = time.perf_counter()
    session.run(None, {"input": x})
    times.append(time.perf_counter() - start)
ms = np.asarray(times) * 1000
print(json.dumps({"p50_ms": float(np.percentile(ms, 50)), "mean_ms": float(ms.mean())}))
"""


def zoo(env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "zoo", *args, "--json"], env=env, capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"zoo {' '.join(args)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def bare(env: dict[str, str], path: str, warmup: int, iterations: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", BARE_LOOP, path, str(warmup), str(iterations)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def overhead(env: dict[str, str], rounds: int, warmup: int, iterations: int) -> dict:
    path = zoo(env, "pull", "resnet50", "--weights", "none")["path"]
    bare_runs, zoo_runs = [], []
    for _ in range(rounds):
        bare_runs.append(bare(env, path, warmup, iterations))
        zoo_runs.append(zoo(env, "bench", "resnet50", "--weights", "none", "--batch", "1",
                            "--warmup", str(warmup), "--iterations", str(iterations)))
    result = {"model": "resnet50 --weights none", "batch": 1, "rounds": rounds, "iterations": iterations}
    for stat in ("p50_ms", "mean_ms"):
        bare_ms, zoo_ms = [r[stat] for r in bare_runs], [r[stat] for r in zoo_runs]
        result[stat] = {
            "bare": bare_ms, "zoo": zoo_ms, "bare_best": min(bare_ms), "zoo_best": min(zoo_ms),
            "overhead_best": min(zoo_ms) / min(bare_ms) - 1,
            "overhead_median_ratio": statistics.median(z / b for z, b in zip(zoo_ms, bare_ms, strict=True)) - 1,
        }
    return result


def versus_torch(env: dict[str, str], name: str, rounds: int, warmup: int, iterations: int) -> dict:
    zoo(env, "pull", name, "--weights", "none")
    runs = [zoo(env, "bench", name, "--weights", "none", "--batch", "1", "--compare", "torch",
                "--warmup", str(warmup), "--iterations", str(iterations)) for _ in range(rounds)]
    ort_p50 = min(r["p50_ms"] for r in runs)
    torch_p50 = min(r["compare"]["torch"]["p50_ms"] for r in runs)
    return {"model": f"{name} --weights none", "ref": runs[0]["model"]["ref"], "batch": 1, "rounds": rounds,
            "ort_p50_ms": ort_p50, "torch_p50_ms": torch_p50, "speedup_p50": torch_p50 / ort_p50,
            "ort_p50_rounds": [r["p50_ms"] for r in runs],
            "torch_p50_rounds": [r["compare"]["torch"]["p50_ms"] for r in runs],
            "torch_threads": runs[0]["compare"]["torch"]["threads"]}


def machine() -> str:
    from zoo.bench import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "zoo-bench-runtime",
                        help="Store to export into (kept between runs: exports happen once).")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(ZOO_HOME=str(args.home), ZOO_CONFIG_DIR=str(args.home / "config"))

    cost = overhead(env, args.rounds, args.warmup, args.iterations)
    compared = [versus_torch(env, name, args.rounds, args.warmup, args.iterations)
                for name in ("resnet50", "repvit_m0_9")]
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "overhead": cost, "versus_torch": compared}
    out = REPO / "benchmarks" / "results" / "runtime.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{report['date']} on {report['machine']}\n")
    print("| resnet50, batch 1 | bare session.run | zoo bench | overhead (best round) | overhead (median ratio) |")
    print("|---|---|---|---|---|")
    for stat in ("p50_ms", "mean_ms"):
        row = cost[stat]
        print(f"| {stat[:-3]} of {cost['iterations']} runs, {cost['rounds']} rounds | {row['bare_best']:.2f} ms "
              f"| {row['zoo_best']:.2f} ms | {row['overhead_best']:+.1%} | {row['overhead_median_ratio']:+.1%} |")
    print()
    print("| model, batch 1 | ORT CPU p50 | PyTorch eager p50 | speedup (p50) |\n|---|---|---|---|")
    for row in compared:
        print(f"| {row['ref']} | {row['ort_p50_ms']:.2f} ms | {row['torch_p50_ms']:.2f} ms "
              f"| {row['speedup_p50']:.2f}x (target >= 1.5x) |")


if __name__ == "__main__":
    main()
