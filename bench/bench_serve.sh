#!/usr/bin/env bash
# Latency and throughput of `lathe serve` (a benchmark, not a test; figures in bench/README.md).
#
#   bash bench/bench_serve.sh [MODEL_DIR]
#
# Without MODEL_DIR it trains the test suite's tiny model (Fashion-MNIST, 4 images per class, 1 epoch,
# input 28 x 28) so the figures show the serving path itself: HTTP, JSON, base64, PNG decoding, batching,
# and a small ResNet-50 forward. For each server setting it reports:
#   - sequential: 200 requests one after another with curl (p50/p99 of curl's time_total)
#   - wrk -c 1/4/16 for DURATION seconds (default 10): p50/p99 latency and requests per second
# Needs curl, python3 and wrk (apt-get install wrk). Env: LATHE (default build/lathe), DURATION, THREADS
# (OMP_NUM_THREADS of the server, default 2).
set -eu
LATHE=${LATHE:-build/lathe}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
root=$(pwd)
tmp=$(mktemp -d /tmp/lathe-bench-serve-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

model=${1:-}
if [ -z "$model" ]; then
  python3 tools/prepare_fashion_mnist.py --out "$tmp/data" --per-class 4 --validation-per-class 2 >/dev/null
  OMP_NUM_THREADS=$THREADS "$LATHE" train --algorithm image-classification --dataset "$tmp/data" --output "$tmp/model" \
    --hp num_train_epochs=1 --hp per_device_train_batch_size=8 --quiet
  model=$tmp/model
  img=$(ls "$tmp"/data/test/Bag/* | head -1)
else
  img=${IMAGE:?set IMAGE=path/to/a/png-or-jpeg when giving a model}
fi
(cd "$tmp" && python3 "$root/tools/guide_image_to_request.py" "$img")
body=$tmp/input.json
# the same request with the image cut after 60 bytes: parsed, base64-decoded, refused by the PNG decoder
# (400). Its latency is the serving path's own cost (HTTP, JSON, base64, decoder setup) without a forward.
python3 - "$body" "$tmp/refused.json" <<'PY'
import base64, json, sys
r = json.load(open(sys.argv[1]))
r["instances"][0]["data"] = base64.b64encode(base64.b64decode(r["instances"][0]["data"])[:60]).decode()
json.dump(r, open(sys.argv[2], "w"), indent=4, sort_keys=True)
PY
for name in post refused; do
  file=$body
  [ "$name" = refused ] && file=$tmp/refused.json
  cat >"$tmp/$name.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$file", "rb")
wrk.body = f:read("*a")
f:close()
EOF
done

start() {
  OMP_NUM_THREADS=$THREADS "$LATHE" serve --model "$model" --port 0 "$@" >"$tmp/serve.out" 2>"$tmp/serve.err" &
  pid=$!
  for _ in $(seq 600); do grep -q "listening on" "$tmp/serve.out" && break; sleep 0.1; done
  base=http://127.0.0.1:$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\) .*|\1|p' "$tmp/serve.out")
  for _ in $(seq 5); do curl -s -o /dev/null -X POST --data-binary @"$body" "$base/inference"; done # warm-up
}

stop() {
  kill "$pid"
  wait "$pid" || true
  pid=
}

sequential() {
  for _ in $(seq 200); do
    curl -s -o /dev/null -w '%{time_total}\n' -X POST --data-binary @"$body" "$base/inference"
  done | python3 -c '
import sys
t = sorted(float(x) * 1000 for x in sys.stdin)
print("  sequential (curl, 200 requests): p50 %.2f ms  p99 %.2f ms" % (t[len(t) // 2], t[int(len(t) * 0.99) - 1]))'
}

loaded() {
  local c=$1 script=${2:-post}
  wrk -t "$((c < 2 ? 1 : 2))" -c "$c" -d "${DURATION}s" --latency -s "$tmp/$script.lua" "$base/inference" >"$tmp/wrk"
  python3 - "$tmp/wrk" "$c" "$script" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, text, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
refused = sys.argv[3] == "refused"
note = "  (every answer a 400)" if refused else "  (%s non-2xx!)" % errs.group(1) if errs else ""
print("  wrk -c %-3s p50 %7.2f ms  p99 %7.2f ms  %8.1f req/s%s" % (sys.argv[2], ms("50"), ms("99"), rps, note))
PY
}

batches() {
  curl -s "$base/metrics" | python3 -c '
import sys
m = dict(l.rsplit(" ", 1) for l in sys.stdin if not l.startswith("#"))
b, i = float(m["lathe_inference_batches_total"]), float(m["lathe_inference_batch_images_total"])
print("  mean batch: %.2f images over %d batches" % (i / b, b))'
}

echo "lathe serve: model $model, request $(wc -c <"$body") bytes (the guide's script), OMP_NUM_THREADS=$THREADS, $(nproc) cores"
for setting in "--max-batch 8 --max-delay-ms 2" "--max-batch 8 --max-delay-ms 0" "--max-batch 1 --max-delay-ms 0"; do
  echo "$setting"
  # shellcheck disable=SC2086
  start $setting
  sequential
  for c in 1 4 16; do loaded "$c"; done
  batches
  stop
done
echo "the serving path alone (a request refused by the PNG decoder: no forward pass)"
start
loaded 1 refused
loaded 16 refused
stop
