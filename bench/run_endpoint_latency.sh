#!/usr/bin/env bash
# Real-time inference over the full HTTP path against `lathe serve` on the same model and request (a
# benchmark, not a test; figures in bench/README.md, "Endpoints over HTTP"):
#   endpoint: client -> lathe scheduler POST /v1/endpoints/bench/inference -> gateway -> Kafka topic
#             lathe.endpoint.bench (2 partitions) -> lathe inference-worker -> reply topic -> gateway -> client
#   serve:    client -> lathe serve POST /inference
# Every part is its own process: lathe mock-kafka (1 broker), the scheduler, 1 then 2 inference workers,
# lathe serve. Both servers batch with max 8 images and a 2 ms delay (the defaults); fetch.wait.max.ms is
# 1 ms on the Kafka side (the mock cluster does not end a long poll early; docs/inference.md).
# For each of 1 and 2 inference workers, wrk -c 1 and -c 4 (keep-alive connections) for DURATION seconds
# on serve, then on the endpoint, so each pair is measured back to back; then the path alone (a request
# refused by the PNG decoder: no forward pass) and the scheduler alone (an unknown stage: 404 without
# Kafka), one connection. Prints p50/p99 latency, req/s and the 1-minute load average at each run's start.
#
#   bash bench/run_endpoint_latency.sh            (from the repository root, after building build/lathe)
#
# Env: WORKERS ("1 2": the inference worker counts, in order), LATHE (default build/lathe), DURATION (10), THREADS (OMP_NUM_THREADS of each server process, 1),
# MODEL (a model directory; default: a tiny ResNet-50 at 32 x 32 trained here on tests/e2e/make_dataset.py
# images, 3 labels), REQUEST (default tests/golden/inference_request.json: the guide's request for a 7 x 5
# PNG, as the guide's script writes it). Needs curl, python3 and wrk.
set -euo pipefail
LATHE=$(realpath "${LATHE:-build/lathe}")
DURATION=${DURATION:-10}
THREADS=${THREADS:-1}
REQUEST=$(realpath "${REQUEST:-tests/golden/inference_request.json}")
ROOT=$(pwd)
W=$(mktemp -d /tmp/lathe-bench-endpoint.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS WHAT COMMAND...
    local end=$(($(date +%s) + $1)) what=$2
    shift 2
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || { echo "timed out waiting for $what" >&2; exit 1; }
        sleep 0.2
    done
}
CORES=$(nproc --all)
T0=$(date +%s)
note() { printf '[%3ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
export OMP_NUM_THREADS=$THREADS

# ---- the model ----
MODEL=${MODEL:-}
if [ -z "$MODEL" ]; then
    python3 "$ROOT/tests/e2e/make_dataset.py" "$W/ds" --classes 3 --per-class 4 --size 32
    "$LATHE" train --algorithm image-classification --dataset "$W/ds" --output "$W/model" --quiet \
        --hp input_size=32 --hp num_train_epochs=1 --hp per_device_train_batch_size=4
    MODEL=$W/model
fi
MODEL=$(realpath "$MODEL")
note "model ready"

# ---- lathe serve ----
"$LATHE" serve --model "$MODEL" --port 0 >"$W/serve.out" 2>"$W/serve.log" &
PIDS+=($!)
wait_for 60 "lathe serve" grep -q "listening on" "$W/serve.out"
SERVE=http://127.0.0.1:$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\) .*|\1|p' "$W/serve.out")

# ---- the Kafka path: mock cluster, scheduler, inference workers ----
"$LATHE" mock-kafka --brokers 1 --partitions 2 --port-file "$W/kafka.addr" >"$W/mock.out" 2>"$W/mock.log" &
PIDS+=($!)
wait_for 20 "the mock cluster" test -s "$W/kafka.addr"
export LATHE_KAFKA_BROKERS=$(head -n1 "$W/kafka.addr") LATHE_STORAGE=$W/storage
SCHED=http://127.0.0.1:$(free_port)
"$LATHE" scheduler --port "${SCHED##*:}" --bind 127.0.0.1 --no-create-topics --gateway-fetch-wait-ms 1 \
    --quiet >"$W/scheduler.out" 2>"$W/scheduler.log" &
PIDS+=($!)
start_iworker() { # a 6 s session: librdkafka's mock coordinator waits session.timeout.ms - 1 s (44 s by
    # default) for the members of a running group to rejoin when one joins; a real broker rebalances as
    # soon as they have
    LATHE_KAFKA_SESSION_TIMEOUT_MS=6000 LATHE_KAFKA_HEARTBEAT_INTERVAL_MS=500 "$LATHE" inference-worker --worker-id "$1" --fetch-wait-ms 1 --metadata-refresh-ms 500 >"$W/$1.out" \
        2>"$W/$1.log" &
    PIDS+=($!)
}
start_iworker i1
wait_for 60 "the scheduler" bash -c "curl -sf '$SCHED/v1/health' | grep -q '\"state_loaded\":true'"
curl -sf -o /dev/null -X POST "$SCHED/v1/models" -d "{\"name\":\"bench\",\"uri\":\"$MODEL\"}"
curl -sf -o /dev/null -X POST "$SCHED/v1/endpoints" -d '{"name":"bench","model":"bench","replicas":2}'
wait_for 60 "the endpoint" bash -c "curl -sf '$SCHED/v1/endpoints/bench' | grep -q '\"state\":\"ACTIVE\"'"
ENDPOINT=$SCHED/v1/endpoints/bench/inference
note "endpoint ACTIVE"

# the answers must be the same bytes
a=$(curl -sf -X POST --data-binary @"$REQUEST" "$SERVE/inference")
b=$(curl -sf -X POST --data-binary @"$REQUEST" "$ENDPOINT")
[ "$a" = "$b" ] || { echo "the answers differ: serve $a, endpoint $b" >&2; exit 1; }

# the same request with its PNG cut after 60 bytes: parsed, base64-decoded and refused by the PNG decoder
# (400) in the server or the inference worker: every cost of the path but the forward pass and the batcher
python3 - "$REQUEST" "$W/refused.json" <<'PY'
import base64, json, sys
r = json.load(open(sys.argv[1]))
r["instances"][0]["data"] = base64.b64encode(base64.b64decode(r["instances"][0]["data"])[:60]).decode()
json.dump(r, open(sys.argv[2], "w"), indent=4, sort_keys=True)
PY
for name in post refused; do
    file=$REQUEST
    [ $name = refused ] && file=$W/refused.json
    cat >"$W/$name.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$file", "rb")
wrk.body = f:read("*a")
f:close()
EOF
done
loaded() { # loaded LABEL URL CONNECTIONS [SCRIPT]
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    wrk -t 1 -c "$3" -d "${DURATION}s" --latency -s "$W/${4:-post}.lua" "$2" >"$W/wrk"
    python3 - "$W/wrk" "$1" "$3" "$load" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, text, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
note = "  (%s non-2xx)" % errs.group(1) if errs else ""
print("  %-9s -c %s  p50 %7.2f ms  p99 %7.2f ms  %7.1f req/s  load %s%s" %
      (sys.argv[2], sys.argv[3], ms("50"), ms("99"), rps, sys.argv[4], note))
PY
}
warm() { for _ in $(seq 40); do curl -s -o /dev/null -X POST --data-binary @"$REQUEST" "$1"; done; }

echo "model $MODEL, request $(wc -c <"$REQUEST") bytes, OMP_NUM_THREADS=$THREADS, $CORES cores, ${DURATION}s per run"
warm "$SERVE/inference"
warm "$ENDPOINT"
for workers in ${WORKERS:-1 2}; do
    if [ "$workers" = 2 ]; then
        start_iworker i2
        # the group rebalances: requests go on to i1 until i2 has its partition and has loaded the model
        wait_for 120 "the second worker to serve" bash -c "curl -s -o /dev/null -X POST --data-binary @'$REQUEST' '$ENDPOINT'; grep -q 'loaded model' '$W/i2.log'"
        warm "$ENDPOINT"
        note "second inference worker serving"
    fi
    echo "$workers inference worker(s)"
    for c in 1 4; do
        loaded serve "$SERVE/inference" "$c"
        loaded endpoint "$ENDPOINT" "$c"
    done
    echo "  the path alone: a request refused by the PNG decoder (400, no forward pass)"
    loaded serve "$SERVE/inference" 1 refused
    loaded endpoint "$ENDPOINT" 1 refused
    # the scheduler's HTTP hop and registry lookup alone: an unknown stage is answered 404 without Kafka
    loaded sched-404 "$SCHED/v1/endpoints/bench/stages/none/inference" 1 refused
done
