#!/usr/bin/env bash
# `lathe serve` as a client meets it: a tiny model trained on Fashion-MNIST, the guide's request made by the
# guide's own script, answered byte for byte as `lathe predict` answers; several instances; every bad request
# class with its documented 4xx and message; 20 concurrent requests; /v1/health, /metrics; SIGTERM and
# SIGINT stop it cleanly. Needs curl and python3.
set -u
LATHE=${LATHE:-build/lathe}
LATHE=$(cd "$(dirname "$LATHE")" && pwd)/$(basename "$LATHE")
root=$(pwd)
tmp=$(mktemp -d /tmp/lathe-serve-XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# expect STATUS NEEDLE CMD...: exit status STATUS, stderr containing NEEDLE
expect() {
  local want=$1 needle=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" != "$want" ]; then bad "$* exited $got, want $want: $(cat "$tmp/err")"; return; fi
  if [ -n "$needle" ] && ! grep -q -- "$needle" "$tmp/err"; then bad "$*: stderr lacks '$needle': $(cat "$tmp/err")"; return; fi
  ok
}

# start_server ARGS...: runs lathe serve on a free port in the background; sets pid and base
start_server() {
  "$LATHE" serve --model "$tmp/model" --port 0 "$@" >"$tmp/serve.out" 2>"$tmp/serve.err" &
  pid=$!
  for _ in $(seq 600); do
    grep -q "listening on" "$tmp/serve.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  local port
  port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\) .*|\1|p' "$tmp/serve.out")
  if [ -z "$port" ]; then bad "lathe serve did not start: $(cat "$tmp/serve.err")"; return 1; fi
  base=http://127.0.0.1:$port
}

# stop_server SIGNAL: the server exits 0 within 10 s
stop_server() {
  kill -"$1" "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then bad "SIG$1 did not stop lathe serve"; return; fi
  wait "$pid"
  local rc=$?
  [ "$rc" = 0 ] && ok || bad "lathe serve exited $rc after SIG$1: $(cat "$tmp/serve.err")"
  curl -s -o /dev/null "$base/v1/health" && bad "still answering after SIG$1" || ok
  pid=
}

# post FILE [PATH]: POSTs the file, the body lands in $tmp/resp; prints the HTTP status
post() {
  curl -s -o "$tmp/resp" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary @"$1" \
    "$base${2:-/inference}"
}

# expect_http FILE STATUS NEEDLE: the status, and a body {"error": "...NEEDLE..."}
expect_http() {
  local code
  code=$(post "$1")
  if [ "$code" != "$2" ]; then bad "$(head -c 80 "$1"): HTTP $code, want $2: $(cat "$tmp/resp")"; return; fi
  python3 - "$tmp/resp" "$3" <<'PY' && ok || bad "$(head -c 80 "$1"): body $(cat "$tmp/resp") lacks '$3'"
import json, sys
r = json.load(open(sys.argv[1]))
assert list(r) == ["error"] and sys.argv[2] in r["error"], r
PY
}

# request FILE IMAGE...: the guide's request format (json.dump indent=4 sort_keys) for several images
request() {
  local out=$1; shift
  python3 - "$out" "$@" <<'PY'
import base64, json, sys
inst = [{"data": base64.b64encode(open(p, "rb").read()).decode("utf-8")} for p in sys.argv[2:]]
json.dump({"instances": inst}, open(sys.argv[1], "w"), indent=4, sort_keys=True)
PY
}

expect 0 "" "$LATHE" serve --help
grep -q "usage: lathe serve" "$tmp/out" && ok || bad "serve --help"
grep -q "serve" <("$LATHE" --help) && ok || bad "--help lists no serve"
expect 2 "--port is required" "$LATHE" serve --model x
expect 2 "--max-batch must be" "$LATHE" serve --model x --port 0 --max-batch 0
expect 2 "--port must be" "$LATHE" serve --model x --port 70000
expect 1 "config.json" "$LATHE" serve --model "$tmp/none" --port 0

data=$tmp/data
if [ -d /usr/share/datasets/fashion-mnist ]; then
  python3 tools/prepare_fashion_mnist.py --out "$data" --per-class 4 --validation-per-class 2 >/dev/null
else
  bad "dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)"
fi
expect 0 "" "$LATHE" train --algorithm image-classification --dataset "$data" --output "$tmp/model" \
  --hp num_train_epochs=1 --hp per_device_train_batch_size=8 --hp learning_rate=0.001 --quiet
img1=$(ls "$data"/test/Bag/* | head -1)
img2=$(ls "$data"/test/Trouser/* | head -1)
img3=$(ls "$data"/test/Sneaker/* | head -1)
"$LATHE" predict --model "$tmp/model" "$img1" "$img2" "$img3" >"$tmp/predict" || bad "lathe predict failed"

if start_server --max-batch 8 --max-delay-ms 2; then
  # the guide's request, written by the guide's own script, answered as lathe predict answers
  (cd "$tmp" && python3 "$root/tools/guide_image_to_request.py" "$img1")
  code=$(post "$tmp/input.json")
  [ "$code" = 200 ] && ok || bad "guide's request: HTTP $code: $(cat "$tmp/resp")"
  [ "$(cat "$tmp/resp")" = "$(head -1 "$tmp/predict")" ] && ok ||
    bad "response differs from lathe predict: $(cat "$tmp/resp") vs $(head -1 "$tmp/predict")"
  code=$(post "$tmp/input.json" /v1/models/default/inference)
  [ "$code" = 200 ] && [ "$(cat "$tmp/resp")" = "$(head -1 "$tmp/predict")" ] && ok || bad "alias route: $code"

  # three instances: {"predictions": [list, list, list]} in request order
  request "$tmp/three.json" "$img1" "$img2" "$img3"
  code=$(post "$tmp/three.json")
  [ "$code" = 200 ] && ok || bad "three instances: HTTP $code: $(cat "$tmp/resp")"
  python3 - "$tmp/resp" "$tmp/predict" <<'PY' && ok || bad "three instances: $(head -c 300 "$tmp/resp")"
import json, sys
r = json.load(open(sys.argv[1]))
want = [json.loads(l) for l in open(sys.argv[2])]
assert list(r) == ["predictions"] and len(r["predictions"]) == 3
for got, exp in zip(r["predictions"], want):
    assert [e["label"] for e in got] == [e["label"] for e in exp]
    assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(got, exp))
PY

  # every bad request class: its status and a message naming the instance and the problem
  printf '{"instances": [' >"$tmp/b1"; expect_http "$tmp/b1" 400 "invalid JSON"
  printf '' >"$tmp/b2"; expect_http "$tmp/b2" 400 "empty request body"
  printf '{"inputs": []}' >"$tmp/b3"; expect_http "$tmp/b3" 400 'missing "instances"'
  printf '{"instances": []}' >"$tmp/b4"; expect_http "$tmp/b4" 400 '"instances" is empty'
  printf '{"instances": [{"image": "x"}]}' >"$tmp/b5"; expect_http "$tmp/b5" 400 'instance 0: missing "data"'
  printf '{"instances": [{"data": "iVBOR*w0"}]}' >"$tmp/b6"; expect_http "$tmp/b6" 400 "instance 0: invalid base64 character '*' at character 6"
  printf 'hello, world' >"$tmp/text"; request "$tmp/b7" "$img1" "$tmp/text"
  expect_http "$tmp/b7" 400 "instance 1: not a PNG or JPEG image"
  head -c 80 "$img2" >"$tmp/cut.png"; request "$tmp/b8" "$tmp/cut.png"
  expect_http "$tmp/b8" 400 "instance 0: corrupt PNG"
  code=$(curl -s -o "$tmp/resp" -w '%{http_code}' "$base/inference")
  [ "$code" = 405 ] && grep -q '"error"' "$tmp/resp" && ok || bad "GET /inference: $code"
  code=$(curl -s -o "$tmp/resp" -w '%{http_code}' "$base/v2/nothing")
  [ "$code" = 404 ] && grep -q 'no route' "$tmp/resp" && ok || bad "unknown route: $code"

  # 20 requests at once: all answered, each with the single request's answer (a batch of several may
  # differ from a batch of one in the last bits)
  pids=()
  for i in $(seq 20); do
    curl -s -o "$tmp/resp$i" -w '%{http_code}' -X POST --data-binary @"$tmp/input.json" "$base/inference" >"$tmp/code$i" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  python3 - "$tmp" "$tmp/predict" <<'PY' && ok || bad "concurrent requests"
import json, os, sys
want = json.loads(open(sys.argv[2]).readline())
for i in range(1, 21):
    code = open(os.path.join(sys.argv[1], "code%d" % i)).read()
    assert code == "200", (i, code)
    got = json.load(open(os.path.join(sys.argv[1], "resp%d" % i)))
    assert [e["label"] for e in got] == [e["label"] for e in want], i
    assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(got, want)), i
PY

  code=$(curl -s -o "$tmp/resp" -w '%{http_code}' "$base/v1/health")
  [ "$code" = 200 ] && grep -q '"status":"ok"' "$tmp/resp" && grep -q '"algorithm":"image-classification"' "$tmp/resp" &&
    ok || bad "health: $code $(cat "$tmp/resp")"
  curl -s "$base/metrics" >"$tmp/metrics"
  for line in 'lathe_inference_requests_total{code="200"} 23' 'lathe_inference_requests_total{code="400"} 8' \
    'lathe_inference_requests_total{code="404"} 1' 'lathe_inference_requests_total{code="405"} 1' \
    'lathe_inference_errors_total{class="invalid_json"} 2' 'lathe_inference_errors_total{class="invalid_request"} 3' \
    'lathe_inference_errors_total{class="invalid_base64"} 1' 'lathe_inference_errors_total{class="not_an_image"} 1' \
    'lathe_inference_errors_total{class="corrupt_image"} 1' 'lathe_inference_instances_total 25' \
    'lathe_inference_request_duration_seconds_count 31' 'lathe_inference_request_duration_seconds_bucket{le="+Inf"} 31' \
    '# TYPE lathe_inference_request_duration_seconds histogram'; do
    grep -qxF "$line" "$tmp/metrics" && ok || bad "metrics lack '$line'"
  done
  stop_server TERM
fi

# the limits: 413 for each, naming the instance; and SIGINT stops it too
python3 - "$tmp" <<'PY'
import os, random, struct, sys, zlib
def png(w, h, rows):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
open(os.path.join(sys.argv[1], "wide.png"), "wb").write(png(100, 100, b"".join(b"\0" + b"\x80" * 300 for _ in range(100))))
noise = random.Random(1).randbytes(40 * 120)  # incompressible: about 4.8 KB of PNG
open(os.path.join(sys.argv[1], "noisy.png"), "wb").write(png(40, 40, b"".join(b"\0" + noise[y * 120:(y + 1) * 120] for y in range(40))))
PY
if start_server --max-pixels 5000 --max-image-bytes 3000 --max-instances 4 --max-request-bytes 100000; then
  request "$tmp/l1" "$img1" "$tmp/wide.png"; expect_http "$tmp/l1" 413 "instance 1: the PNG image is 100 x 100 pixels, over the limit of 5000 pixels"
  request "$tmp/l2" "$tmp/noisy.png"; expect_http "$tmp/l2" 413 "instance 0: the image is"
  request "$tmp/l3" "$img1" "$img1" "$img1" "$img1" "$img1"; expect_http "$tmp/l3" 413 "5 instances, over the limit of 4"
  head -c 150000 /dev/zero >"$tmp/l4"; expect_http "$tmp/l4" 413 "over the limit of 100000 bytes"
  request "$tmp/l5" "$img1" "$img2"
  code=$(post "$tmp/l5")
  [ "$code" = 200 ] && ok || bad "within the limits: HTTP $code: $(cat "$tmp/resp")"
  stop_server INT
fi

echo "test_serve: $pass passed, $fail failed"
[ "$fail" = 0 ]
