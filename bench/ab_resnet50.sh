#!/usr/bin/env bash
# For a machine shared with other work: alternates lathe's and PyTorch's benchmark `rounds` times per mode
# (each run in a fresh process, as run_resnet50.sh) and prints, per mode, the fastest step and the best
# median each side reached, and their ratios. The fastest step is the least disturbed by other processes.
# Usage: bench/ab_resnet50.sh ROUNDS [train28 infer224 train224]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
modes=${*:-train28 infer224 train224}
export OMP_NUM_THREADS=2
for mode in $modes; do
  out=$(for r in $(seq "$rounds"); do
    GOMP_SPINCOUNT=1000 build/bench/bench_resnet50 "$mode"
    /usr/bin/python3 bench/pytorch_resnet50.py "$mode"
  done)
  python3 - "$mode" "$out" <<'PY'
import json, sys
mode, rows = sys.argv[1], [json.loads(l) for l in sys.argv[2].splitlines() if l.startswith("{")]
def best(impl, key):
    return min(r[key] for r in rows if r["impl"].startswith(impl))
lm, pm = best("lathe", "ms_min"), best("pytorch", "ms_min")
lmed, pmed = best("lathe", "ms_per_step"), best("pytorch", "ms_per_step")
n = len(rows) // 2
print("%s (%d rounds): fastest step lathe %.1f ms, pytorch %.1f ms: x%.2f; best median lathe %.1f ms, "
      "pytorch %.1f ms: x%.2f" % (mode, n, lm, pm, pm / lm, lmed, pmed, pmed / lmed))
PY
done
