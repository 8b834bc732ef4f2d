"""Whole-process cost of `zoo run MODEL --image FILE` against a hand-written ONNX Runtime script.

The script is what users write today: open the image with Pillow, resize, crop, normalise,
create an `InferenceSession`, run, take the top 5. Both are timed as whole processes
(interpreter start-up and imports included), alternating, one run each per round, on the
same stored `model.onnx` (resnet50 --weights none by default, pulled first). Target: zoo
at most 1.2x the script (median of the per-round ratios), with the integrity check kept
(`zoo.trust`: hash once, then trust the file while its stat identity is unchanged).

zoo's modules are compiled to bytecode first, as pip does when it installs the wheel: an
editable install run with PYTHONDONTWRITEBYTECODE=1 (as on the dev box) would otherwise
compile all 30 of them again in every run, about 70 ms that no installed zoo pays.

Run: python benchmarks/bench_run_startup.py [--model resnet50] [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
from PIL import Image

model, image = sys.argv[1], sys.argv[2]
img = Image.open(image).convert("RGB")
w, h = img.size
scale = 232 / min(w, h)
img = img.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
w, h = img.size
left, top = (w - 224) // 2, (h - 224) // 2
img = img.crop((left, top, left + 224, top + 224))
x = (np.asarray(img, dtype=np.float32) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
x = x.transpose(2, 0, 1)[None].astype(np.float32)
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
print(np.argsort(logits)[::-1][:5])
"""


REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    from PIL import Image

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "zoo"), str(REPO / "plugins")], check=True)
    with tempfile.TemporaryDirectory(prefix="zoo-bench-run.") as tmp:
        root = Path(tmp)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ZOO_")},
               "ZOO_HOME": os.environ.get("ZOO_HOME", str(root / "home")), "ZOO_CONFIG_DIR": str(root / "config")}
        image = root / "photo.png"
        Image.effect_noise((500, 375), 64).convert("RGB").save(image)
        script = root / "run_onnx.py"
        script.write_text(SCRIPT)
        pulled = json.loads(subprocess.run([sys.executable, "-m", "zoo", "pull", args.model, "--weights", "none",
                                            "--json"], env=env, check=True, capture_output=True, text=True).stdout)
        zoo_cmd = [sys.executable, "-m", "zoo", "run", args.model, "--weights", "none", "--image", str(image)]
        bare_cmd = [sys.executable, str(script), pulled["path"], str(image)]
        timed(zoo_cmd, env)  # the first run hashes the file once; later runs trust its stat identity
        zoo_s, bare_s = [], []
        for _ in range(args.rounds):
            zoo_s.append(timed(zoo_cmd, env))
            bare_s.append(timed(bare_cmd, env))
    ratios = [z / b for z, b in zip(zoo_s, bare_s, strict=True)]
    print(f"model: {args.model} --weights none; load average after: {os.getloadavg()}")
    print(f"zoo run       median {statistics.median(zoo_s):.3f} s  min {min(zoo_s):.3f} s")
    print(f"bare script   median {statistics.median(bare_s):.3f} s  min {min(bare_s):.3f} s")
    ratio = statistics.median(ratios)
    print(f"ratio (median of per-round ratios): {ratio:.2f}x  (target <= 1.2x)")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
