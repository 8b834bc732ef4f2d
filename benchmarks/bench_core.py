"""Core timings: the walk of a name from the command line to the store.

`zoo list --json` over N entries (500 by default), a cache-hit `zoo pull`, a miss's
resolution (`zoo info` of a model that resolves but is not stored: everything a miss does
before the export starts), `zoo info` by a stored bare name, and (with --cold-repeat) a cold
`zoo pull resnet50 --weights none` against a bare `torch.onnx.export` script.

Every figure is a whole process, as a user sees it (python start-up and imports included).
Run: python benchmarks/bench_core.py [--repeat N] [--entries N] [--cold-repeat N] [--before TREE]
(TREE: e.g. `git archive main | tar -x -C /tmp/before`, timed alternately on the same store)
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

BARE_EXPORT = """
import torch, torchvision
model = torchvision.models.resnet50(weights=None).eval()
x = torch.randn(2, 3, 224, 224)
torch.onnx.export(model, (x,), {path!r}, dynamo=True, opset_version=18, input_names=["input"],
                  output_names=["logits"], dynamic_shapes=({{0: torch.export.Dim("batch")}},))
"""


def timed(cmd: list[str], env: dict[str, str], code: int = 0) -> float:
    """Seconds ``cmd`` took; run in the tree on its PYTHONPATH (``python -m`` imports from the cwd first)."""
    cwd = (env.get("PYTHONPATH") or os.getcwd()).split(os.pathsep)[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    elapsed = time.perf_counter() - start
    if proc.returncode != code:
        raise SystemExit(f"{' '.join(cmd[2:])} exited {proc.returncode}, not {code}: {proc.stderr.strip()}")
    return elapsed


def zoo(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoo", *args]


def fill_store(home: Path, env: dict[str, str], count: int) -> None:
    """One real export, then copies of it under other keys and names (listing reads zoo.json only)."""
    out = json.loads(subprocess.run(zoo("pull", "mobilenet_v3_small", "--weights", "none", "--json"),
                                    env=env, check=True, capture_output=True, text=True).stdout)
    source = Path(out["path"]).parent
    for i in range(count - 1):
        key = f"{i:020x}"
        target = home / "models" / key
        shutil.copytree(source, target)
        metadata = json.loads((target / "zoo.json").read_text())
        metadata.update(name=f"model_{i}", key=key)
        (target / "zoo.json").write_text(json.dumps(metadata))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--cold-repeat", type=int, default=0)
    parser.add_argument("--before", type=Path, help="another source tree of zoo (e.g. `git archive main`), "
                        "timed on the same store, each run alternating with this one (fair on a busy machine)")
    args = parser.parse_args()
    trees = {"after": Path(__file__).resolve().parent.parent}
    if args.before:
        trees = {"before": args.before.resolve(), **trees}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "ZOO_HOME": str(home), "ZOO_CONFIG_DIR": str(Path(tmp) / "config")}
        envs = {label: {**env, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "plugins")])}
                for label, tree in trees.items()}
        fill_store(home, envs["after"], args.entries)
        assert len(json.loads(subprocess.run(zoo("list", "--json"), env=env, capture_output=True,
                                             check=True).stdout)) == args.entries
        time.sleep(2.5)  # past the racy window: what a store's memos may keep is settled
        stored = f"model_{args.entries // 2}"
        cases = {
            f"zoo list --json, {args.entries} entries": (zoo("list", "--json"), 0),
            "zoo pull (cache hit)": (zoo("pull", "mobilenet_v3_small", "--weights", "none"), 0),
            "a miss's resolution (zoo info, exit 1)": (zoo("info", "resnet50", "--weights", "none"), 1),
            "zoo info by stored bare name": (zoo("info", stored), 0),
        }
        for label in trees:  # warm the OS file cache (and any memo)
            for command, code in cases.values():
                timed(command, envs[label], code)
        times: dict[str, dict[str, list[float]]] = {case: {label: [] for label in trees} for case in cases}
        for case, (command, code) in cases.items():
            for _ in range(args.repeat):
                for label in trees:
                    times[case][label].append(timed(command, envs[label], code))

        cold, bare = [], []
        for i in range(args.cold_repeat):
            script = BARE_EXPORT.format(path=str(Path(tmp) / f"bare{i}.onnx"))
            bare.append(timed([sys.executable, "-c", script], env))
            cold.append(timed(zoo("pull", "resnet50", "--weights", "none", "--force"), envs["after"]))

    def fmt(values: list[float]) -> str:
        return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, n={len(values)})"

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}")
    for case, by_tree in times.items():
        for label, values in by_tree.items():
            print(f"{case:<42} {label:<6} {fmt(values)}")
    if cold:
        print(f"bare torch.onnx.export resnet50:        {fmt(bare)}")
        print(f"zoo pull resnet50 --weights none (cold): {fmt(cold)}")
        print(f"cold pull / bare export:                {statistics.median(cold) / statistics.median(bare):.2f}x")


if __name__ == "__main__":
    main()
