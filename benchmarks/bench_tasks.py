"""torchvision's detectors and segmenters: ONNX Runtime (CPU) against PyTorch eager, batch 1, and
the cold export time.

Each model is exported with zoo into a temporary store (`zoo pull torchvision:NAME --weights W`,
timed: the cold export, build and parity included), then the same images (photo-like synthetic
ones, preprocessed by zoo's own preprocessing) go through the exported file on ORT's CPU
provider and through the PyTorch module zoo exported (torchvision's model in zoo's wrapper), in
alternating rounds so that background load hits both alike. Prints one JSON document.

Weights: no weights can be downloaded here, so the default is a seeded random checkpoint whose
batch-norm statistics are measured on random images (`--weights calibrated`): with plain random
initialisation SSDlite's activations vanish and every score ties at 1/91, which changes how much
work its NMS does. `--weights none` or a path to a state_dict work too.

Run: python benchmarks/bench_tasks.py [--models a,b] [--rounds 5] [--iterations 10] [--out FILE]
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

MODELS = ("ssdlite320_mobilenet_v3_large", "lraspp_mobilenet_v3_large")
SIDES = {"ssdlite320_mobilenet_v3_large": 320, "ssd300_vgg16": 300, "fasterrcnn_mobilenet_v3_large_320_fpn": 320}


def calibrated_checkpoint(name: str, path: Path) -> Path:
    """Seeded random weights, batch-norm statistics measured on random images (see the module doc)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import decisive_checkpoint  # the tests' own checkpoint, so both measure one thing

    side = SIDES.get(name, 520 if name.startswith(("deeplab", "fcn", "lraspp")) else 800)
    settings = {} if name.startswith(("ssd", "deeplab", "fcn", "lraspp")) else {"min_size": side, "max_size": side}
    return decisive_checkpoint(name, path, side, **settings)


def pull(home: Path, name: str, weights: str) -> tuple[dict, float]:
    env = {**os.environ, "ZOO_HOME": str(home)}
    cmd = [sys.executable, "-m", "zoo", "pull", f"torchvision:{name}", "--weights", weights, "--json"]
    start = time.perf_counter()
    out = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    seconds = time.perf_counter() - start
    return json.loads((Path(out["path"]).parent / "zoo.json").read_text()) | {"path": out["path"]}, seconds


def images(directory: Path, count: int) -> list[Path]:
    """Photo-like images of a few sizes: smooth gradients plus noise."""
    import numpy as np
    from PIL import Image

    paths = []
    for i, (width, height) in enumerate([(640, 480), (480, 640), (800, 600), (500, 375)][:count]):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
        pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        path = directory / f"image{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def measure(session, module, batches: list, args: argparse.Namespace) -> dict[str, list[float]]:
    """Milliseconds per image, per runtime: rounds alternate ORT and PyTorch on the same arrays."""
    import torch

    feed = session.get_inputs()[0].name

    def run_ort() -> None:
        for x in batches:
            session.run(None, {feed: x})

    def run_torch() -> None:
        with torch.inference_mode():
            for x in batches:
                module(torch.from_numpy(x))

    for _ in range(args.warmup):
        run_ort()
        run_torch()
    times: dict[str, list[float]] = {"ort": [], "torch": []}
    for _ in range(args.rounds):
        for label, fn in (("ort", run_ort), ("torch", run_torch)):
            for _ in range(args.iterations):
                start = time.perf_counter()
                fn()
                times[label].append((time.perf_counter() - start) * 1000 / len(batches))
    return times


def main() -> None:
    import onnxruntime as ort
    import torch
    from zoo_torchvision import _fetch, _weights_enum, tasks

    from zoo import images as image_io
    from zoo.plugin import ModelSpec, Recipe

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--weights", default="calibrated", help="calibrated (default), none, or a state_dict path")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10, help="timed runs per image per runtime per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", default=None, help="also write the JSON document here")
    args = parser.parse_args()

    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        files = images(tmp_path, args.images)
        for name in args.models.split(","):
            weights = args.weights
            if weights == "calibrated":
                weights = str(calibrated_checkpoint(name, tmp_path / f"{name}.pth"))
            record, cold = pull(tmp_path / "store", name, weights)
            built = tasks.build(ModelSpec("torchvision", name, weights), Recipe(), _weights_enum, _fetch)
            module = built.module.eval()
            session = ort.InferenceSession(record["path"], providers=["CPUExecutionProvider"])
            batches = [image_io.batch([f], built.preprocessing) for f in files]  # batch 1, the same arrays

            times = measure(session, module, batches, args)
            ort_ms, torch_ms = statistics.median(times["ort"]), statistics.median(times["torch"])
            rows.append({"model": name, "task": record["task"], "input": record["inputs"][0]["shape"],
                         "exporter": record["exporter"], "cold_export_s": round(cold, 1),
                         "export_seconds_recorded": record.get("export_seconds"),
                         "ort_cpu_ms_p50": round(ort_ms, 2), "torch_eager_ms_p50": round(torch_ms, 2),
                         "speedup": round(torch_ms / ort_ms, 2),
                         "parity": record["validation"].get("parity", "tensors"),
                         "samples": len(times["ort"])})
            print(json.dumps(rows[-1]), file=sys.stderr)
    document = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_before": load_before},
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                     "torch_threads": torch.get_num_threads()},
        "weights": args.weights if args.weights in ("calibrated", "none") else "file",
        "images": [f"{p.name}" for p in files], "batch": 1, "rows": rows,
        "load_after": os.getloadavg(),
    }
    text = json.dumps(document, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
