"""Start-up time with a third-party plugin installed: `zoo --help` and `zoo list`.

Installs examples/zoo-hubconf with pip into a temporary folder (put on PYTHONPATH, so the
shared environment is untouched), then times whole processes as a user sees them (python
start-up and imports included), against the same commands with `ZOO_LOAD_PLUGINS=""`
(built-ins only) and a bare `python -c pass`. Fails (exit 1) if a median is over the budget.

Run: python benchmarks/bench_startup.py [--repeat N] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "zoo-hubconf"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def install_example(root: Path) -> Path:
    source, site = root / "src", root / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, capture_output=True)
    return site


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--budget", type=float, default=0.5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="zoo-bench-startup.") as tmp:
        root = Path(tmp)
        site = install_example(root)
        base = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
        pythonpath = os.pathsep.join(p for p in [str(site), base.get("PYTHONPATH", "")] if p)
        env = {**base, "ZOO_HOME": str(root / "home"), "ZOO_CONFIG_DIR": str(root / "config"),
               "PYTHONPATH": pythonpath}
        listed = json.loads(subprocess.run([sys.executable, "-m", "zoo", "plugins", "--json"], env=env,
                                           check=True, capture_output=True, text=True).stdout)
        loaded = {p["name"]: p["status"] for p in listed}
        if loaded.get("hubconf") != "loaded":
            print(f"the example plugin did not load: {loaded}", file=sys.stderr)
            return 1

        zoo = [sys.executable, "-m", "zoo"]
        cases = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "zoo --help (with hubconf)": ([*zoo, "--help"], env),
            "zoo list (with hubconf)": ([*zoo, "list"], env),
            "zoo --help (built-ins only)": ([*zoo, "--help"], {**env, "ZOO_LOAD_PLUGINS": ""}),
            "zoo list (built-ins only)": ([*zoo, "list"], {**env, "ZOO_LOAD_PLUGINS": ""}),
        }
        for cmd, case_env in cases.values():  # warm the file cache and .pyc files
            timed(cmd, case_env)
        results = {}
        for label, (cmd, case_env) in cases.items():
            runs = [timed(cmd, case_env) for _ in range(args.repeat)]
            results[label] = {"median_s": round(statistics.median(runs), 3), "min_s": round(min(runs), 3),
                              "max_s": round(max(runs), 3)}

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, load average {load:.1f}; {args.repeat} runs each")
    print(f"{'case':<32} {'median':>8} {'min':>8} {'max':>8}")
    for label, r in results.items():
        print(f"{label:<32} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s {r['max_s']:>7.3f}s")
    over = [label for label in results if label.startswith("zoo") and "with hubconf" in label
            and results[label]["median_s"] > args.budget]
    print(json.dumps({"budget_s": args.budget, "load_average": load, "results": results, "over_budget": over}))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
