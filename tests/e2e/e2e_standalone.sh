#!/usr/bin/env bash
# End-to-end test of `lathe standalone` (the README's default): one process with an in-memory Kafka, the
# scheduler and two worker threads over a local data folder, driven by the `lathe` client commands.
#   1. `lathe submit --wait` trains a tiny data set to SUCCEEDED; the model is in <data-dir>/trainings/<id>/;
#   2. a second training is interrupted by SIGTERM after its first checkpoint; the restarted standalone
#      still lists the first one as SUCCEEDED (records mirrored in the data folder), publishes the second
#      again, and it resumes from its checkpoint to SUCCEEDED;
#   3. `lathe cancel` of a queued training, `lathe list --state`, `lathe status` of an unknown id.
# usage: tests/e2e/e2e_standalone.sh path/to/lathe
set -euo pipefail

LATHE=$(realpath "${1:?usage: e2e_standalone.sh path/to/lathe}")
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/lathe-e2e-sa.XXXXXX)
D="$W/data"
T0=$(date +%s)
NAME=e2e-standalone
SA=
# shellcheck source=lib.sh
. "$HERE/lib.sh" # log json wait_for free_port; this test's own fail and cleanup below replace lib's

fail() {
    log "FAIL: $*"
    echo "----- tail of $W/standalone.log"
    tail -n 30 "$W/standalone.log" || true
    exit 1
}
cleanup() {
    if [ -n "$SA" ]; then kill -KILL "$SA" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [ "${KEEP_E2E:-0}" = 1 ]; then echo "work folder kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

PORT=$(free_port)
export LATHE_URL="http://127.0.0.1:$PORT"
api_up() { "$LATHE" list --limit 1 >/dev/null 2>&1; }
start() {
    "$LATHE" standalone --data-dir "$D" --port "$PORT" --workers 2 --checkpoint-steps 1 >"$W/url.txt" \
        2>>"$W/standalone.log" &
    SA=$!
    wait_for 30 "the standalone's URL" test -s "$W/url.txt"
    [ "$(head -n1 "$W/url.txt")" = "$LATHE_URL" ] || fail "printed URL $(cat "$W/url.txt"), expected $LATHE_URL"
    wait_for 30 "the API" api_up
}
stop() { # SIGTERM, as a user's Ctrl-C or a container stop
    kill -TERM "$SA"
    wait "$SA" || fail "standalone exited with $? on SIGTERM"
    SA=
    rm -f "$W/url.txt"
}

python3 "$HERE/make_dataset.py" "$D/datasets/tiny" --classes 3 --per-class 4 --size 16
start
log "standalone at $LATHE_URL"

# ---- 1. submit --wait ----
"$LATHE" submit --algorithm image-classification --dataset datasets/tiny --name first --wait --poll 0.3 \
    --hp input_size=16 --hp num_train_epochs=1 --hp per_device_train_batch_size=4 >"$W/first.json" \
    2>"$W/submit.log" || fail "submit --wait: $(cat "$W/submit.log")"
A=$(json "$W/first.json" 'j["id"]')
[ "$(json "$W/first.json" 'j["state"]')" = SUCCEEDED ] || fail "first training: $(cat "$W/first.json")"
for f in model.safetensors config.json metrics.json; do
    [ -s "$D/trainings/$A/$f" ] || fail "$D/trainings/$A/$f is missing"
done
log "first training $A SUCCEEDED, model in $D/trainings/$A"

# ---- 2. SIGTERM mid-training, restart, resume ----
"$LATHE" submit --algorithm image-classification --dataset datasets/tiny --name second \
    --hp input_size=16 --hp num_train_epochs=2 --hp per_device_train_batch_size=4 >"$W/second.json"
B=$(json "$W/second.json" 'j["id"]')
ckpt() { "$LATHE" status "$B" >"$W/b.json" 2>/dev/null && [ "$(json "$W/b.json" '(j["checkpoint"] or {}).get("step", 0)')" -ge 1 ]; }
wait_for 120 "the second training's first checkpoint" ckpt
stop
log "stopped with $B at checkpoint $(json "$W/b.json" 'j["checkpoint"]["step"]')"
start
"$LATHE" status "$A" >"$W/a2.json" || fail "status of $A after the restart"
[ "$(json "$W/a2.json" 'j["state"]')" = SUCCEEDED ] || fail "$A after the restart: $(cat "$W/a2.json")"
done_b() { "$LATHE" status "$B" >"$W/b.json" 2>/dev/null && [ "$(json "$W/b.json" 'j["state"]')" = SUCCEEDED ]; }
wait_for 150 "the second training to finish after the restart" done_b
[ "$(json "$W/b.json" 'j["resumed_from_step"] or 0')" -ge 1 ] || fail "$B did not resume: $(cat "$W/b.json")"
log "after the restart: $A still SUCCEEDED, $B resumed from step $(json "$W/b.json" 'j["resumed_from_step"]') and SUCCEEDED"

# ---- 3. cancel, list, errors ----
"$LATHE" submit --algorithm image-classification --dataset datasets/tiny --name third \
    --hp input_size=16 --hp num_train_epochs=40 >"$W/third.json"
C=$(json "$W/third.json" 'j["id"]')
"$LATHE" cancel "$C" >"$W/c.json" || fail "cancel $C"
cancelled() { "$LATHE" status "$C" >"$W/c.json" 2>/dev/null && [ "$(json "$W/c.json" 'j["state"]')" = CANCELLED ]; }
wait_for 60 "the third training to be cancelled" cancelled
"$LATHE" list --state succeeded >"$W/list.json"
[ "$(json "$W/list.json" 'j["total"]')" = 2 ] || fail "list --state succeeded: $(cat "$W/list.json")"
if "$LATHE" status tr-doesnotexist >/dev/null 2>"$W/err.txt"; then fail "status of an unknown id succeeded"; fi
grep -q "404" "$W/err.txt" || fail "status of an unknown id: $(cat "$W/err.txt")"
if "$LATHE" submit --algorithm image-classification --dataset datasets/none >/dev/null 2>"$W/err.txt"; then
    fail "a bad submission succeeded"
fi
grep -q "HTTP 400: dataset" "$W/err.txt" || fail "bad submission: $(cat "$W/err.txt")"
stop
log "PASS"
