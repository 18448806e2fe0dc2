# Helpers shared by the multi-process end-to-end tests (e2e_jobs.sh, e2e_models.sh, e2e_standalone.sh); sourced.
# The sourcing script sets W (its work folder), T0 (its start, `date +%s`) and NAME (its log tag) first,
# and adds the pids it starts to PIDS, which the EXIT trap kills.
# Provides: log fail cleanup free_port json wait_for; start_mock_kafka (sets BROKERS) and mock;
# start_s3 (s3rver on S3PORT, sets S3PID and the AWS_* variables), s3, s3_list; api (sets CODE, body in
# $W/resp).
PIDS=()
BUCKET=${BUCKET:-lathe}

log() { printf '[%s %3ds] %s\n' "$NAME" $(($(date +%s) - T0)) "$*"; }
fail() {
    log "FAIL: $*"
    for f in "$W"/*.log; do
        echo "----- tail of $f"
        tail -n 25 "$f"
    done
    exit 1
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP_E2E:-0}" = 1 ]; then echo "work folder kept: $W"; else rm -rf "$W"; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# json FILE EXPR: evaluates a Python expression over the parsed file `j` and prints it ('' for None).
json() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    local end=$(($(date +%s) + limit))
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || fail "timed out after ${limit}s waiting for $what"
        sleep 0.3
    done
}

# ---- Kafka: the mock cluster in its own process ----
start_mock_kafka() { # start_mock_kafka BROKERS PARTITIONS: sets BROKERS to the bootstrap list
    "$LATHE" mock-kafka --brokers "$1" --partitions "$2" --port-file "$W/kafka.addr" --control-file "$W/kafka.ctl" \
        >"$W/mock.out" 2>"$W/mock.log" &
    PIDS+=($!)
    wait_for 20 "the mock cluster" test -s "$W/kafka.addr"
    BROKERS=$(head -n1 "$W/kafka.addr")
}
mock() { # runs a fault-injection command in the mock process
    printf '%s\n' "$1" >"$W/kafka.ctl.tmp"
    mv "$W/kafka.ctl.tmp" "$W/kafka.ctl"
    wait_for 10 "mock command '$1'" test ! -e "$W/kafka.ctl"
    grep -q "^ok $1\$" "$W/kafka.ctl.log" || fail "mock command '$1' failed: $(tail -n1 "$W/kafka.ctl.log")"
}

# ---- S3: s3rver on a fixed port, so it can be stopped and started again behind the clients' backs ----
S3RVER=${LATHE_S3RVER:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../s3rver/node_modules/.bin/s3rver}
S3PORT=
S3PID=
start_s3() {
    [ -n "$S3PORT" ] || S3PORT=$(free_port)
    NODE_OPTIONS="${NODE_OPTIONS:-} --openssl-legacy-provider" "$S3RVER" -d "$W/s3data" -a 127.0.0.1 -p "$S3PORT" \
        -s --configure-bucket "$BUCKET" >>"$W/s3rver.log" 2>&1 &
    S3PID=$!
    PIDS+=($S3PID)
    wait_for 30 "s3rver" curl -s -o /dev/null "http://127.0.0.1:$S3PORT/"
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
    export AWS_ENDPOINT_URL="http://127.0.0.1:$S3PORT"
}
s3() { # s3 METHOD KEY [curl args...]: a signed request (path-style)
    local method=$1 key=$2
    shift 2
    curl -sS --fail --aws-sigv4 "aws:amz:us-east-1:s3" --user "S3RVER:S3RVER" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X "$method" \
        "http://127.0.0.1:$S3PORT/$BUCKET/$key" "$@"
}
s3_list() { # keys under a prefix, one per line
    curl -sS --fail --aws-sigv4 "aws:amz:us-east-1:s3" --user "S3RVER:S3RVER" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        "http://127.0.0.1:$S3PORT/$BUCKET?list-type=2&max-keys=1000&prefix=$1" |
        python3 -c 'import re,sys; print("\n".join(re.findall(r"<Key>([^<]*)</Key>", sys.stdin.read())))'
}
s3_put_dir() { # s3_put_dir DIR PREFIX: every file below DIR to PREFIX/<its path>
    (cd "$1" && find . -type f | sed 's|^\./||') | while read -r f; do
        s3 PUT "$2/$f" -T "$1/$f" -o /dev/null
    done
}

# api METHOD PATH [BODY] [TOKEN]: the body goes to $W/resp, the status to $CODE ($URL, $TOKEN from the caller).
# A BODY starting with @ is a file, sent as it is.
api() {
    local tok=${4-$TOKEN}
    local args=(-s -o "$W/resp" -w '%{http_code}' -X "$1" "$URL$2" -H 'Content-Type: application/json')
    [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
    [ -n "${3:-}" ] && args+=(--data-binary "$3")
    CODE=$(curl "${args[@]}")
}
