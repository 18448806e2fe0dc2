#!/usr/bin/env bash
# Runs lathe's and PyTorch's ResNet-50 benchmarks one after the other on the same machine and prints the
# ratios. Needs a Release build (build/bench/bench_resnet50) and Debian's python3-torch.
# Usage: bench/run_resnet50.sh [train28 infer224 train224]
set -euo pipefail
cd "$(dirname "$0")/.."
modes=${*:-train28 infer224 train224}
export OMP_NUM_THREADS=2
for mode in $modes; do
  # lathe runs with the short OpenMP spin the lathe binary sets for itself (cli/main.c)
  ours=$(GOMP_SPINCOUNT=1000 build/bench/bench_resnet50 "$mode")
  theirs=$(/usr/bin/python3 bench/pytorch_resnet50.py "$mode")
  echo "$ours"
  echo "$theirs"
  python3 - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("%s: lathe %.1f ms/step (%.1f img/s, %.0f MiB peak), pytorch %.1f ms/step (%.1f img/s, %.0f MiB peak): "
      "throughput x%.2f, memory x%.2f" % (a["mode"], a["ms_per_step"], a["images_per_second"], a["peak_rss_mib"],
      b["ms_per_step"], b["images_per_second"], b["peak_rss_mib"], a["images_per_second"] / b["images_per_second"],
      a["peak_rss_mib"] / b["peak_rss_mib"]))
PY
done
