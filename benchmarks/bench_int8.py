"""int8 against float32 on ONNX Runtime's CPU provider: throughput and top-1 agreement.

For resnet50 (torchvision) and EfficientNet-Lite0 (timm), `zoo pull` makes the float32 entry
and the int8 entry (`--dtype int8 --calibration DIR`, calibrated on crops of scikit-image's
sample photographs). Pretrained weights cannot be downloaded on the dev box, so both pulls take
one seeded random initialisation saved as a checkpoint (`--weights PATH`): with `--weights none`
each pull would draw other weights and the two files could not be compared.
Then, in one process, both sessions are timed alternately at batch 1 and 8, many short rounds:
load from other processes only ever adds time, so the figure is the best round of each side,
with the median of per-round ratios next to it. Top-1 agreement is measured on held-out photo
crops the calibration did not see. With random weights the logits are near ties, so agreement
says little about a trained model's accuracy; it is reported for completeness.

Targets (issue 14, a CPU with AVX-512 VNNI): int8 >= 2.5x float32 throughput at batch 8 for
resnet50, >= 2x for EfficientNet-Lite0.

Run: python benchmarks/bench_int8.py [--rounds N] [--iterations N] [--home DIR]
Prints a markdown table and writes the raw numbers to benchmarks/results/int8.json.
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
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = ("resnet50", "efficientnet_lite0")
BATCHES = (1, 8)
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")


def cpu() -> dict:
    info = {"name": platform.processor(), "cores": os.cpu_count(), "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name"):
            info["name"] = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            info["flags"] = [flag for flag in FLAGS if flag in present]
            break
    return info


def photos(root: Path) -> tuple[Path, Path]:
    """60 calibration crops and 30 held-out crops of scikit-image's photographs."""
    sys.path.insert(0, str(REPO / "tests"))
    from photos import real_photos

    everything = real_photos(root / "all", 90)
    calibration, heldout = root / "calibration", root / "heldout"
    calibration.mkdir()
    heldout.mkdir()
    for i, path in enumerate(everything):
        shutil.move(str(path), str((calibration if i < 60 else heldout) / path.name))
    return calibration, heldout


def checkpoint(name: str, folder: Path) -> Path:
    """A seeded random initialisation of ``name``, saved so both pulls use the same weights."""
    import torch

    torch.manual_seed(0)
    if name == "resnet50":
        import torchvision

        model = torchvision.models.resnet50()
    else:
        import timm

        model = timm.create_model(name)
    path = folder / f"{name}-seed0.pth"
    torch.save(model.state_dict(), path)
    return path


def pull(name: str, env: dict[str, str], *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "zoo", "pull", name, *extra, "--json"],
                         env=env, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout)


def agreement(float32: Path, int8: Path, heldout: Path, preprocessing: dict) -> dict:
    from zoo.imageset import image_files
    from zoo.quantize import agreement as compare
    from zoo.quantize import read_tensors, run_cpu

    tensors, _failed = read_tensors(image_files(heldout), preprocessing)
    return compare(run_cpu(int8, tensors, 8, False), run_cpu(float32, tensors, 8, False))


def timed(session, feeds: dict, iterations: int) -> float:
    """Mean seconds per run over ``iterations`` runs (after one untimed run)."""
    session.run(None, feeds)
    start = time.perf_counter()
    for _ in range(iterations):
        session.run(None, feeds)
    return (time.perf_counter() - start) / iterations


def measure(paths: dict[str, Path], rounds: int, iterations: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = {dtype: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for dtype, path in paths.items()}
    results = {}
    for batch in BATCHES:
        shape = [batch, *sessions["float32"].get_inputs()[0].shape[1:]]
        feeds = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        seconds: dict[str, list[float]] = {"float32": [], "int8": []}
        for _ in range(rounds):  # alternate, so both sides see the same load
            for dtype in ("float32", "int8"):
                seconds[dtype].append(timed(sessions[dtype], feeds, iterations))
        best = {dtype: batch / min(values) for dtype, values in seconds.items()}
        ratios = [f / q for f, q in zip(seconds["float32"], seconds["int8"], strict=True)]
        results[batch] = {"throughput_best": best, "ratio_of_best": best["int8"] / best["float32"],
                          "median_round_ratio": statistics.median(ratios), "seconds": seconds}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--home", type=Path, help="a ZOO_HOME to reuse (default: a temporary one)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-int8."))
    home = args.home or scratch / "zoo-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(ZOO_HOME=str(home), ZOO_CONFIG_DIR=str(home / "config"))
    calibration, heldout = photos(scratch)
    import onnxruntime

    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu(),
              "load_average_start": os.getloadavg(), "onnxruntime": onnxruntime.__version__,
              "weights": "seeded random initialisation (torch.manual_seed(0)), one checkpoint for both dtypes",
              "photos": "scikit-image sample photographs, cropped",
              "models": {}}
    for name in MODELS:
        weights = str(checkpoint(name, scratch))
        float32 = pull(name, env, "--weights", weights)
        int8 = pull(name, env, "--weights", weights, "--dtype", "int8", "--calibration", str(calibration))
        record = json.loads((Path(int8["path"]).parent / "zoo.json").read_text())
        paths = {"float32": Path(float32["path"]), "int8": Path(int8["path"])}
        timings = measure(paths, args.rounds, args.iterations)
        report["models"][name] = {
            "sizes_mb": {k: round(p.stat().st_size / 1e6, 1) for k, p in paths.items()},
            "timings": timings,
            "check_on_calibration": {k: record["validation"]["int8"][k] for k in ("images", "top1_agreement",
                                                                                 "max_abs_diff")},
            "heldout": agreement(paths["float32"], paths["int8"], heldout, record["preprocessing"]),
        }
    report["load_average_end"] = os.getloadavg()
    shutil.rmtree(scratch, ignore_errors=True)  # the photos, and the store unless --home kept it elsewhere

    out = REPO / "benchmarks" / "results" / "int8.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    c = report["cpu"]
    print(f"CPU: {c['name']}, {c['cores']} cores, flags: {', '.join(c['flags']) or 'none of ' + ', '.join(FLAGS)}")
    print(f"load average: start {report['load_average_start'][0]:.1f}, end {report['load_average_end'][0]:.1f}; "
          f"onnxruntime {report['onnxruntime']}; weights: seeded random init\n")
    print("| model | batch | float32 img/s | int8 img/s | int8/float32 (best) | median round ratio |")
    print("|---|---|---|---|---|---|")
    for name, data in report["models"].items():
        for batch, t in data["timings"].items():
            best = t["throughput_best"]
            print(f"| {name} | {batch} | {best['float32']:.1f} | {best['int8']:.1f} | {t['ratio_of_best']:.2f}x | "
                  f"{t['median_round_ratio']:.2f}x |")
    print("\n| model | size float32 / int8 MB | top-1 agreement, calibration | held-out | max abs logit diff |")
    print("|---|---|---|---|---|")
    for name, data in report["models"].items():
        cal, held = data["check_on_calibration"], data["heldout"]
        print(f"| {name} | {data['sizes_mb']['float32']} / {data['sizes_mb']['int8']} | "
              f"{cal['top1_agreement']:.1%} of {cal['images']} | {held['top1_agreement']:.1%} of {held['images']} | "
              f"{held['max_abs_diff']:.3g} |")


if __name__ == "__main__":
    main()
