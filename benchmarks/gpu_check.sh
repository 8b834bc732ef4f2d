#!/usr/bin/env bash
# One command for an NVIDIA machine: bash benchmarks/gpu_check.sh
#
# 1. Asserts the CUDA provider really runs `zoo run resnet50 --provider cuda` (zoo itself
#    exits 4 when it would not; the JSON must also name CUDAExecutionProvider first).
# 2. Times resnet50 (--weights none, static batch: CUDA graphs need fixed shapes) with
#    `zoo bench --mode naive,iobinding,cudagraph` at batch 1 and 32, float32 and float16,
#    each also with --prefer-nhwc, and prints one table.
# 3. Checks the targets: cudagraph p50 <= 0.67x naive p50 at batch 1 (float32), and float16
#    >= 2x float32 throughput at batch 32 (iobinding, best layout of each). Exit 1 on a miss.
#
# Environment: ZOO_HOME (default: a scratch store under /tmp), ITERATIONS (default 200),
# DEVICE_ID (default 0), PYTHON (default: python). Exports happen once per store.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
ITERATIONS="${ITERATIONS:-200}"
DEVICE_ID="${DEVICE_ID:-0}"
export ZOO_HOME="${ZOO_HOME:-/tmp/zoo-gpu-check}"
OUT="$ZOO_HOME/gpu-check"
mkdir -p "$OUT"
zoo() { "$PYTHON" -m zoo "$@"; }

echo "== machine"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader \
  || { echo "gpu_check: nvidia-smi failed: no NVIDIA driver here" >&2; exit 4; }
"$PYTHON" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'

echo "== the CUDA provider really runs"
zoo run resnet50 --weights none --provider cuda --device-id "$DEVICE_ID" --json > "$OUT/run.json"
"$PYTHON" - "$OUT/run.json" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
assert run["provider"] == "cuda", run["provider"]
assert run["session_providers"][0] == "CUDAExecutionProvider", run["session_providers"]
print("ok: provider", run["provider"], "session providers", run["session_providers"])
EOF

echo "== timings (resnet50, --weights none, $ITERATIONS iterations)"
for dtype in float32 float16; do
  for batch in 1 32; do
    select=(resnet50 --weights none --static-batch --batch "$batch" --dtype "$dtype")
    zoo pull "${select[@]}" > /dev/null
    for layout in nchw nhwc; do
      flag=--no-prefer-nhwc; [ "$layout" = nhwc ] && flag=--prefer-nhwc
      zoo bench "${select[@]}" --provider cuda --device-id "$DEVICE_ID" "$flag" \
        --mode naive,iobinding,cudagraph --warmup 20 --iterations "$ITERATIONS" --json \
        > "$OUT/bench-$dtype-$batch-$layout.json"
    done
  done
done

"$PYTHON" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
rows = {}
for file in sorted(out.glob("bench-*.json")):
    _, dtype, batch, layout = file.stem.split("-")
    for r in json.loads(file.read_text())["results"]:
        assert r["provider"] == "cuda" and r["session_providers"][0] == "CUDAExecutionProvider", r
        rows[(dtype, int(batch), layout, r["mode"])] = r
device = next(iter(rows.values()))["device"]["name"]
print(f"device: {device}")
print(f"{'DTYPE':<8} {'BATCH':>5} {'LAYOUT':<6} {'MODE':<10} {'FIRST':>9} {'P50 ms':>9} {'P90 ms':>9} "
      f"{'P99 ms':>9} {'ITEMS/S':>10}  vs naive")
for (dtype, batch, layout, mode), r in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
    naive = rows[(dtype, batch, layout, "naive")]["p50_ms"]
    print(f"{dtype:<8} {batch:>5} {layout:<6} {mode:<10} {r['first_run_ms']:>9.2f} {r['p50_ms']:>9.3f} "
          f"{r['p90_ms']:>9.3f} {r['p99_ms']:>9.3f} {r['throughput']:>10.1f}  {r['p50_ms'] / naive:.2f}x")

failed = []
graph = rows[("float32", 1, "nchw", "cudagraph")]["p50_ms"] / rows[("float32", 1, "nchw", "naive")]["p50_ms"]
print(f"target: cudagraph p50 / naive p50 at batch 1, float32 = {graph:.2f} (<= 0.67)")
if graph > 0.67:
    failed.append("cudagraph")
best = {d: max(rows[(d, 32, layout, "iobinding")]["throughput"] for layout in ("nchw", "nhwc"))
        for d in ("float32", "float16")}
speedup = best["float16"] / best["float32"]
print(f"target: float16 / float32 throughput at batch 32 (iobinding, best layout) = {speedup:.2f}x (>= 2)")
if speedup < 2:
    failed.append("float16")
print("gpu_check: " + ("all targets met" if not failed else "missed: " + ", ".join(failed)))
sys.exit(1 if failed else 0)
EOF
