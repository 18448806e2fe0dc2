#!/usr/bin/env bash
# Dispatch throughput with every part in its own process, as deployed: `lathe mock-kafka` (3 brokers),
# `lathe scheduler --allow-noop`, K `lathe worker` processes over a local storage folder, and
# bench_dispatch --url as the HTTP client. (bench_dispatch alone runs the same parts in one process.)
# usage: bench/run_dispatch.sh BUILD_DIR [JOBS] [WORKERS] [CLIENTS]
set -euo pipefail
B=$(realpath "${1:?usage: run_dispatch.sh BUILD_DIR [JOBS] [WORKERS] [CLIENTS]}")
JOBS=${2:-3000}
WORKERS=${3:-16}
CLIENTS=${4:-32}
W=$(mktemp -d /tmp/lathe-bench-dispatch-mp.XXXXXX)
PIDS=()
cleanup() { # workers first, the brokers last; anything still there after 10 s is killed
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
    for _ in $(seq 100); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
PARTS=$((WORKERS > 8 ? WORKERS : 8))
"$B/lathe" mock-kafka --brokers 3 --partitions "$PARTS" --port-file "$W/kafka.addr" >/dev/null 2>"$W/mock.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$W/kafka.addr" ] && break; sleep 0.1; done
export LATHE_KAFKA_BROKERS=$(head -n1 "$W/kafka.addr") LATHE_STORAGE="$W/storage"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$B/lathe" scheduler --port "$PORT" --bind 127.0.0.1 --allow-noop --no-create-topics --quiet >/dev/null \
    2>"$W/scheduler.log" &
PIDS+=($!)
for i in $(seq "$WORKERS"); do
    LATHE_KAFKA_SESSION_TIMEOUT_MS=6000 LATHE_KAFKA_HEARTBEAT_INTERVAL_MS=500 \
        "$B/lathe" worker --worker-id "w$i" --work-dir "$W/work-$i" --max-attempts 1 >/dev/null 2>"$W/w$i.log" &
    PIDS+=($!)
done
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/v1/health" && break; sleep 0.1; done
sleep 3
"$B/bench/bench_dispatch" --url "http://127.0.0.1:$PORT" --jobs "$JOBS" --workers "$WORKERS" --clients "$CLIENTS" \
    --partitions "$PARTS"
# CPU seconds (user+system) each part used over the whole run, warm-up and start-up included
cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo "?"; }
WCPU=0
for p in "${PIDS[@]:2}"; do WCPU=$(awk -v a="$WCPU" -v b="$(cpu "$p")" 'BEGIN { print a + b }'); done
echo "cpu s    mock-kafka $(cpu "${PIDS[0]}"), scheduler $(cpu "${PIDS[1]}"), $WORKERS workers $WCPU"
