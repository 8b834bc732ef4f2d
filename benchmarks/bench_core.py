"""Core timings: `zoo list` over 50 entries, a cache-hit `zoo pull`, and a cold
`zoo pull resnet50 --weights none` against a bare `torch.onnx.export` script.

Every figure is a whole process, as a user sees it (python start-up and imports included).
Run: python benchmarks/bench_core.py [--repeat N]
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


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


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
    parser.add_argument("--cold-repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "ZOO_HOME": str(home), "ZOO_CONFIG_DIR": str(Path(tmp) / "config")}
        fill_store(home, env, 50)
        assert len(json.loads(subprocess.run(zoo("list", "--json"), env=env, capture_output=True,
                                             check=True).stdout)) == 50
        timed(zoo("list"), env)  # warm the OS file cache
        listing = [timed(zoo("list", "--json"), env) for _ in range(args.repeat)]
        hit = [timed(zoo("pull", "mobilenet_v3_small", "--weights", "none"), env) for _ in range(args.repeat)]

        cold, bare = [], []
        for i in range(args.cold_repeat):
            script = BARE_EXPORT.format(path=str(Path(tmp) / f"bare{i}.onnx"))
            bare.append(timed([sys.executable, "-c", script], env))
            cold.append(timed(zoo("pull", "resnet50", "--weights", "none", "--force"), env))

    def fmt(values: list[float]) -> str:
        return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, n={len(values)})"

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"zoo list --json, 50 entries:           {fmt(listing)}")
    print(f"zoo pull (cache hit):                   {fmt(hit)}")
    print(f"bare torch.onnx.export resnet50:        {fmt(bare)}")
    print(f"zoo pull resnet50 --weights none (cold): {fmt(cold)}")
    print(f"cold pull / bare export:                {statistics.median(cold) / statistics.median(bare):.2f}x")


if __name__ == "__main__":
    main()
