"""``zoo bulk`` against a plain loop of ``zoo pull`` processes, and the Ray path's overhead.

The models: timm's 18 ``test_*`` architectures (``--weights none``, the default exporter),
each configuration into a fresh store:

- loop: ``zoo pull timm:NAME --weights none`` for each model, one process after another
  (what a shell script does);
- bulk --workers 1 and --workers 2: ``zoo bulk`` with the same names (``--from FILE``);
- ray: ``zoo bulk --ray ADDRESS --remote file://...`` on a local ``ray.init(num_cpus=2)``
  instance (not counted: starting Ray), each model a task.

Target: bulk --workers 2 >= 1.7x the loop. The Ray overhead per model is (ray - bulk
--workers 2) / models, both on 2 CPUs. The load average is recorded before each run: on a
shared machine the other users' load moves every figure.

Run: python benchmarks/bench_bulk.py [--only loop,w1,w2,ray] [--out benchmarks/results/bulk.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = ["test_byobnet", "test_coatnet", "test_convnext", "test_convnext2", "test_convnext3", "test_efficientnet",
          "test_efficientnet_evos", "test_efficientnet_gn", "test_efficientnet_ln", "test_mambaout", "test_maxvit",
          "test_nfnet", "test_resnet", "test_vit", "test_vit2", "test_vit3", "test_vit4", "test_vit_relpos"]
HEAD = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, _temp_dir=sys.argv[1], logging_level="ERROR")
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
"""


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(ZOO_HOME=str(home), ZOO_CONFIG_DIR=str(home / "config"), **extra)
    return env


def zoo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zoo", *args], env=env, capture_output=True, text=True, cwd=REPO)


def timed(label: str, work, runs: list[dict]) -> dict:
    load = os.getloadavg()[0]
    started = time.perf_counter()
    detail = work()
    seconds = time.perf_counter() - started
    row = {"run": label, "seconds": round(seconds, 1), "load_before": round(load, 2),
           "load_after": round(os.getloadavg()[0], 2), **detail}
    runs.append(row)
    print(json.dumps(row), flush=True)
    return row


def loop(root: Path) -> dict:
    env = env_for(root / "loop")
    failed = [m for m in MODELS if zoo("pull", f"timm:{m}", "--weights", "none", env=env).returncode != 0]
    return {"failed": failed}


def bulk(root: Path, workers: int, listing: Path) -> dict:
    home = root / f"w{workers}"
    report = root / f"w{workers}.json"
    proc = zoo("bulk", "--from", str(listing), "--weights", "none", "--workers", str(workers), "--report",
               str(report), env=env_for(home))
    return summary_of(report, proc)


def summary_of(report: Path, proc: subprocess.CompletedProcess[str]) -> dict:
    if not report.exists():
        return {"failed": proc.stderr.strip().splitlines()[-1:]}
    data = json.loads(report.read_text())
    rows = data["models"]
    return {"counts": {k: v for k, v in data["summary"]["counts"].items() if v},
            "failed": [r["name"] for r in rows if r["status"] not in ("exported", "hit", "remote")],
            "model_seconds_mean": round(sum(r["seconds"] for r in rows) / len(rows), 2),
            "peak_memory_max_mib": max((r["peak_memory"] or 0) for r in rows) >> 20}


def ray_run(root: Path, listing: Path) -> dict:
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex, "RAY_USAGE_STATS_ENABLED": "0"}
    short = tempfile.mkdtemp(prefix="zr", dir="/tmp")
    head = subprocess.Popen([sys.executable, "-c", HEAD, short], env=env_for(root / "ray-workers", **auth),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=REPO)
    try:
        address = head.stdout.readline().strip()
        report = root / "ray.json"

        def work() -> dict:
            proc = zoo("bulk", "--from", str(listing), "--weights", "none", "--ray", address, "--remote",
                       f"file://{root / 'remote'}", "--report", str(report), env=env_for(root / "ray-driver", **auth))
            return summary_of(report, proc)

        return work()
    finally:
        head.stdin.close()
        head.wait(timeout=120)
        shutil.rmtree(short, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="loop,w1,w2,ray")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bulk.json"))
    args = parser.parse_args()
    chosen = args.only.split(",")
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-bulk.") as tmp:
        root = Path(tmp)
        listing = root / "models.txt"
        listing.write_text("".join(f"timm:{m}\n" for m in MODELS))
        zoo("--version", env=env_for(root / "warm"))  # page cache warm for every run alike
        if "loop" in chosen:
            timed("loop of zoo pull", lambda: loop(root), runs)
        if "w1" in chosen:
            timed("bulk --workers 1", lambda: bulk(root, 1, listing), runs)
        if "w2" in chosen:
            timed("bulk --workers 2", lambda: bulk(root, 2, listing), runs)
        if "ray" in chosen:
            timed("bulk --ray (2 CPUs)", lambda: ray_run(root, listing), runs)
    by = {r["run"]: r["seconds"] for r in runs}
    derived = {}
    if "loop of zoo pull" in by:
        for name in ("bulk --workers 1", "bulk --workers 2"):
            if name in by:
                derived[f"{name} speed-up over the loop"] = round(by["loop of zoo pull"] / by[name], 2)
    if "bulk --ray (2 CPUs)" in by and "bulk --workers 2" in by:
        derived["ray overhead per model (s)"] = round((by["bulk --ray (2 CPUs)"] - by["bulk --workers 2"])
                                                      / len(MODELS), 2)
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "python": platform.python_version(), "models": len(MODELS), "runs": runs, "derived": derived,
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(derived, indent=2))


if __name__ == "__main__":
    main()
