#!/usr/bin/env bash
# End-to-end test of models, endpoints, stages, real-time and batch inference, every part its own process:
#   lathe mock-kafka | s3rver (S3) | lathe scheduler | a training lathe worker | two lathe inference-workers
# A tiny PNG data set (3 classes x 4 images, 16x16) goes to S3, then:
#   1. a training (3 steps) -> POST /v1/models from it (m1) -> POST /v1/endpoints -> ACTIVE;
#   2. the guide's request, as the guide's own script writes it (and the fixture
#      tests/golden/inference_request.json as it is), answered with exactly the bytes `lathe predict` prints
#      for the same image and model (a lone request is a batch of one: predict's graph, the same bits);
#   3. each bad request class gets its 400 with its message through the scheduler; unknown endpoint, stage,
#      model: 404;
#   4. a second model m2 (m1's files under models/m2 with renamed labels, so its answers are told apart): a
#      stage "canary"; the default switched to it while a client keeps sending requests (each answered 200
#      by one model or the other, never an error); the default URL and each stage's URL answer their model;
#   5. both inference workers SIGKILLed: a request gets 504 naming the cause within the scheduler's
#      --inference-timeout-ms (no hang); one worker restarted serves again;
#   6. a batch inference naming m1 by its registry name: predictions.jsonl equals `lathe predict`
#      (--batch-size 1 on the worker: a batch of one, the same bits);
#   7. DELETE of a model in use: 409; delete the stage, the endpoint (gone: 404), the models;
#   8. SIGTERM: the inference worker, the worker and the scheduler exit 0 (no leak in the sanitizer build).
# usage: tests/e2e/e2e_models.sh path/to/lathe   (from the repository root; ctest runs it as e2e_models)
# Needs python3, curl and s3rver (npm ci --prefix tests/s3rver, or LATHE_S3RVER=path).
set -euo pipefail

LATHE=$(realpath "${1:?usage: e2e_models.sh path/to/lathe}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
W=$(mktemp -d /tmp/lathe-e2e-models.XXXXXX)
NAME=e2e-models
TOKEN=e2e-token-$$
T0=$(date +%s)
INFER_TIMEOUT_MS=3000
# shellcheck source=lib.sh
. "$HERE/lib.sh"
trap cleanup EXIT

for tool in python3 curl; do command -v $tool >/dev/null || fail "$tool is not installed"; done
[ -x "$S3RVER" ] || fail "s3rver not found at $S3RVER: run 'npm ci --prefix tests/s3rver' from the repository root"

start_mock_kafka 1 2
start_s3
python3 "$HERE/make_dataset.py" "$W/ds" --classes 3 --per-class 4 --size 16
s3_put_dir "$W/ds" datasets/tiny
s3_put_dir "$W/ds/validation" images
log "mock Kafka at $BROKERS, s3rver on port $S3PORT with the data set"

# ---- the scheduler, a training worker, two inference workers ----
# librdkafka's mock cluster does not end a fetch early when a message arrives: short fetch waits for the
# gateway (--gateway-fetch-wait-ms) and the inference workers (--fetch-wait-ms).
export LATHE_KAFKA_BROKERS="$BROKERS" LATHE_STORAGE="s3://$BUCKET" LATHE_API_TOKEN="$TOKEN"
URL="http://127.0.0.1:$(free_port)"
"$LATHE" scheduler --port "${URL##*:}" --bind 127.0.0.1 --no-create-topics --gateway-fetch-wait-ms 5 \
    --inference-timeout-ms $INFER_TIMEOUT_MS --load-timeout-ms 60000 >"$W/scheduler.out" 2>"$W/scheduler.log" &
SCHED=$!
PIDS+=("$SCHED")
"$LATHE" worker --worker-id w1 --work-dir "$W/work-w1" --retry-ms 500 --progress-ms 200 --batch-size 1 \
    >"$W/w1.out" 2>"$W/w1.log" &
W1=$!
PIDS+=("$W1")
declare -A IPID
start_iworker() { # a short session timeout, so a SIGKILLed one leaves the group in seconds
    LATHE_KAFKA_SESSION_TIMEOUT_MS=6000 LATHE_KAFKA_HEARTBEAT_INTERVAL_MS=500 \
        "$LATHE" inference-worker --worker-id "$1" --cache-dir "$W/cache-$1" --fetch-wait-ms 5 \
        --metadata-refresh-ms 500 >"$W/$1.out" 2>>"$W/$1.log" &
    IPID[$1]=$!
    PIDS+=($!)
}
start_iworker i1
start_iworker i2
wait_for 60 "the scheduler's state" bash -c "curl -sf '$URL/v1/health' | grep -q '\"state_loaded\":true'"
log "scheduler at $URL, training worker w1, inference workers i1 i2"

# ---- 1. a training -> a model -> an endpoint ----
api POST /v1/trainings '{"algorithm":"image-classification","dataset":"datasets/tiny","name":"m1","hyperparameters":{"input_size":16,"num_train_epochs":1,"per_device_train_batch_size":4,"learning_rate":0.01}}'
[ "$CODE" = 201 ] || fail "training: $CODE $(cat "$W/resp")"
A=$(json "$W/resp" 'j["id"]')
training_done() { api GET "/v1/trainings/$A" && [ "$(json "$W/resp" 'j["state"]')" = SUCCEEDED ]; }
wait_for 120 "training $A" training_done
log "training $A SUCCEEDED"

api POST /v1/models '{"name":"m1","training_id":"tr-nonexistent"}'
[ "$CODE" = 404 ] || fail "model from an unknown training: $CODE $(cat "$W/resp")"
api POST /v1/models "{\"name\":\"m1\",\"training_id\":\"$A\"}"
[ "$CODE" = 201 ] || fail "model m1: $CODE $(cat "$W/resp")"
[ "$(json "$W/resp" 'j["uri"]')" = "s3://$BUCKET/trainings/$A" ] || fail "m1's uri: $(cat "$W/resp")"
api POST /v1/models "{\"name\":\"m1\",\"training_id\":\"$A\"}"
[ "$CODE" = 409 ] || fail "a second model m1: $CODE"
api POST /v1/endpoints '{"name":"ep","model":"m1","stage":"prod","replicas":2}'
[ "$CODE" = 202 ] || fail "endpoint: $CODE $(cat "$W/resp")"
endpoint_is() { api GET /v1/endpoints/ep && cp "$W/resp" "$W/ep.json" && [ "$(json "$W/ep.json" 'j["state"]')" = "$1" ]; }
wait_for 60 "endpoint ep to be ACTIVE" endpoint_is ACTIVE
log "model m1 from $A, endpoint ep ACTIVE with stage prod"

# ---- 2. the guide's request, answered as lathe predict answers ----
mkdir -p "$W/model-1" "$W/model-2"
for k in config.json preprocessor_config.json model.safetensors; do s3 GET "trainings/$A/$k" -o "$W/model-1/$k"; done
IMG=class_1/img_0.png
(cd "$W" && python3 "$ROOT/tools/guide_image_to_request.py" "$W/ds/validation/$IMG") # writes $W/input.json
python3 -c 'import base64,json,sys; open(sys.argv[2],"wb").write(base64.b64decode(json.load(open(sys.argv[1]))["instances"][0]["data"]))' \
    "$ROOT/tests/golden/inference_request.json" "$W/fixture.png"
"$LATHE" predict --model "$W/model-1" "$W/ds/validation/$IMG" "$W/fixture.png" >"$W/predict-1" || fail "lathe predict"
WANT1=$(sed -n 1p "$W/predict-1")
infer() { # infer PATH FILE: POSTs the file to an inference URL; $CODE, body in $W/resp
    api POST "$1" "@$2"
}
infer /v1/endpoints/ep/inference "$W/input.json"
[ "$CODE" = 200 ] || fail "the guide's request: $CODE $(cat "$W/resp")"
[ "$(cat "$W/resp")" = "$WANT1" ] || fail "answer differs from lathe predict: $(cat "$W/resp") vs $WANT1"
infer /v1/endpoints/ep/inference "$ROOT/tests/golden/inference_request.json"
[ "$CODE" = 200 ] && [ "$(cat "$W/resp")" = "$(sed -n 2p "$W/predict-1")" ] ||
    fail "the fixture request: $CODE $(cat "$W/resp") vs $(sed -n 2p "$W/predict-1")"
infer /v1/endpoints/ep/stages/prod/inference "$W/input.json"
[ "$CODE" = 200 ] && [ "$(cat "$W/resp")" = "$WANT1" ] || fail "the stage URL: $CODE $(cat "$W/resp")"
api POST /v1/endpoints/ep/inference "$(cat "$W/input.json")" ""
[ "$CODE" = 401 ] || fail "inference without the token: $CODE"
log "the guide's request and the fixture: the bytes of lathe predict"

# ---- 3. bad requests through the scheduler: the worker's 4xx and message, the scheduler's 404s ----
expect_error() { # expect_error PATH FILE STATUS NEEDLE
    infer "$1" "$2"
    [ "$CODE" = "$3" ] || fail "$(head -c 60 "$2"): $CODE, want $3: $(cat "$W/resp")"
    python3 - "$W/resp" "$4" <<'EOF' || fail "$(head -c 60 "$2"): body $(cat "$W/resp") lacks '$4'"
import json, sys
r = json.load(open(sys.argv[1]))
assert list(r) == ["error"] and sys.argv[2] in r["error"], r
EOF
}
request() { # request FILE IMAGE...: the guide's format for several images
    python3 - "$@" <<'EOF'
import base64, json, sys
inst = [{"data": base64.b64encode(open(p, "rb").read()).decode("utf-8")} for p in sys.argv[2:]]
json.dump({"instances": inst}, open(sys.argv[1], "w"), indent=4, sort_keys=True)
EOF
}
P=/v1/endpoints/ep/inference
printf '{"instances": [' >"$W/b1" && expect_error $P "$W/b1" 400 "invalid JSON"
printf '{"inputs": []}' >"$W/b2" && expect_error $P "$W/b2" 400 'missing "instances"'
printf '{"instances": [{"image": "x"}]}' >"$W/b3" && expect_error $P "$W/b3" 400 'instance 0: missing "data"'
printf '{"instances": [{"data": "iVBOR*w0"}]}' >"$W/b4" && expect_error $P "$W/b4" 400 "instance 0: invalid base64 character '*'"
printf 'hello, world' >"$W/text" && request "$W/b5" "$W/ds/validation/$IMG" "$W/text"
expect_error $P "$W/b5" 400 "instance 1: not a PNG or JPEG image"
head -c 80 "$W/ds/validation/$IMG" >"$W/cut.png" && request "$W/b6" "$W/cut.png"
expect_error $P "$W/b6" 400 "instance 0: corrupt PNG"
expect_error /v1/endpoints/nope/inference "$W/input.json" 404 "no endpoint named 'nope'"
expect_error /v1/endpoints/ep/stages/nope/inference "$W/input.json" 404 "endpoint ep has no stage 'nope'"
api GET /v1/models/nope
[ "$CODE" = 404 ] || fail "unknown model: $CODE"
log "bad requests: 400 with the worker's message for each class; 404 for unknown endpoint, stage, model"

# ---- 4. a second model, a stage, the default switched while a client sends requests ----
python3 - "$W/model-1" "$W/model-2" <<'EOF'
import json, os, shutil, sys
src, dst = sys.argv[1:3]
for f in os.listdir(src):
    shutil.copy(os.path.join(src, f), dst)
c = json.load(open(os.path.join(dst, "config.json")))
c["id2label"] = {k: "m2-" + v for k, v in c["id2label"].items()}
c["label2id"] = {"m2-" + k: v for k, v in c["label2id"].items()}
json.dump(c, open(os.path.join(dst, "config.json"), "w"), indent=2)
EOF
s3_put_dir "$W/model-2" models/m2
"$LATHE" predict --model "$W/model-2" "$W/ds/validation/$IMG" >"$W/predict-2" || fail "lathe predict m2"
WANT2=$(cat "$W/predict-2")
[ "$WANT1" != "$WANT2" ] || fail "m2 answers as m1"
api POST /v1/models '{"name":"m2","uri":"models/m2"}'
[ "$CODE" = 201 ] || fail "model m2: $CODE $(cat "$W/resp")"
api POST /v1/endpoints/ep/default '{"stage":"canary"}'
[ "$CODE" = 404 ] || fail "default to an unknown stage: $CODE"
api POST /v1/endpoints/ep/stages '{"stage":"canary","model":"m2"}'
[ "$CODE" = 202 ] || fail "stage canary: $CODE $(cat "$W/resp")"
stage_active() { endpoint_is ACTIVE && [ "$(json "$W/ep.json" '[s["state"] for s in j["stages"] if s["name"]=="canary"][0]')" = ACTIVE ]; }
wait_for 60 "stage canary to be ACTIVE" stage_active
infer /v1/endpoints/ep/stages/canary/inference "$W/input.json"
[ "$CODE" = 200 ] && [ "$(cat "$W/resp")" = "$WANT2" ] || fail "stage canary: $CODE $(cat "$W/resp")"
infer /v1/endpoints/ep/inference "$W/input.json"
[ "$(cat "$W/resp")" = "$WANT1" ] || fail "the default before the switch: $(cat "$W/resp")"
# a client sends requests one after another on the default URL while the default switches
(
    for i in $(seq 1 30); do
        curl -s -o "$W/sw-$i" -w '%{http_code}\n' -X POST -H "Authorization: Bearer $TOKEN" \
            --data-binary @"$W/input.json" "$URL/v1/endpoints/ep/inference" >"$W/sw-$i.code"
    done
) &
CLIENT=$!
wait_for 10 "the client's first answers" test -e "$W/sw-5.code"
api POST /v1/endpoints/ep/default '{"stage":"canary"}'
[ "$CODE" = 200 ] && [ "$(json "$W/resp" 'j["default_stage"]')" = canary ] || fail "switch: $CODE $(cat "$W/resp")"
wait "$CLIENT"
python3 - "$W" "$WANT1" "$WANT2" <<'EOF' || fail "requests during the switch"
import sys
w, want1, want2 = sys.argv[1:4]
got = []
for i in range(1, 31):
    code, body = open("%s/sw-%d.code" % (w, i)).read().strip(), open("%s/sw-%d" % (w, i)).read()
    assert code == "200", (i, code, body)
    assert body in (want1, want2), (i, body)
    got.append(1 if body == want1 else 2)
# atomic: m1's answers, then m2's, never mixed back
assert got == sorted(got), got
print("  during the switch: %d answers by m1, then %d by m2" % (got.count(1), got.count(2)))
EOF
infer /v1/endpoints/ep/inference "$W/input.json"
[ "$CODE" = 200 ] && [ "$(cat "$W/resp")" = "$WANT2" ] || fail "the default after the switch: $CODE $(cat "$W/resp")"
infer /v1/endpoints/ep/stages/prod/inference "$W/input.json"
[ "$CODE" = 200 ] && [ "$(cat "$W/resp")" = "$WANT1" ] || fail "stage prod after the switch: $CODE $(cat "$W/resp")"
log "stage canary (m2) added and made the default atomically; default and stage URLs answer their models"

for i in i1 i2; do # the endpoint's two partitions, one per worker: both served requests
    grep -q "loaded model s3://$BUCKET/models/m2" "$W/$i.log" || fail "inference worker $i served no request of m2"
done

# ---- 5. no inference worker: 504 in time with a clear message; a restarted one serves again ----
disown "${IPID[i1]}" "${IPID[i2]}" # their SIGKILL is expected: no "Killed" line from bash
kill -KILL "${IPID[i1]}" "${IPID[i2]}"
t0=$(date +%s%N)
infer /v1/endpoints/ep/inference "$W/input.json"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$CODE" = 504 ] || fail "no worker: $CODE $(cat "$W/resp")"
[ "$(json "$W/resp" 'j["error"]')" = "endpoint ep stage canary: no worker answered within $INFER_TIMEOUT_MS ms" ] || fail "no worker: unclear message $(cat "$W/resp")"
[ "$ms" -lt $((INFER_TIMEOUT_MS + 2000)) ] || fail "no worker: answered after $ms ms"
log "both inference workers killed: $CODE after $ms ms: $(json "$W/resp" 'j["error"]')"
start_iworker i3
serves() { infer /v1/endpoints/ep/inference "$W/input.json" && [ "$CODE" = 200 ] && [ "$(cat "$W/resp")" = "$WANT2" ]; }
wait_for 60 "a restarted inference worker to serve" serves
log "inference worker i3 started: served again"

# ---- 6. a batch inference naming m1 by its registry name ----
api POST /v1/batch-inferences '{"model":"nope","dataset":"images"}'
[ "$CODE" = 404 ] || fail "batch with an unknown model name: $CODE $(cat "$W/resp")"
api POST /v1/batch-inferences '{"model":"m1","dataset":"images"}'
[ "$CODE" = 201 ] || fail "batch inference: $CODE $(cat "$W/resp")"
BI=$(json "$W/resp" 'j["id"]')
batch_done() { api GET "/v1/batch-inferences/$BI" && cp "$W/resp" "$W/bi.json" && [ "$(json "$W/bi.json" 'j["state"]')" = SUCCEEDED ]; }
wait_for 90 "batch inference $BI" batch_done
[ "$(json "$W/bi.json" 'j["model_uri"]')" = "s3://$BUCKET/trainings/$A" ] || fail "batch model_uri: $(cat "$W/bi.json")"
s3 GET "batch-inferences/$BI/predictions.jsonl" -o "$W/predictions.jsonl"
IMGS=$(cd "$W/ds/validation" && find . -type f -name '*.png' | sed 's|^\./||' | LC_ALL=C sort)
# shellcheck disable=SC2086 # one argument per image
(cd "$W/ds/validation" && "$LATHE" predict --model "$W/model-1" $IMGS) >"$W/predict-all" || fail "lathe predict"
# shellcheck disable=SC2086
python3 - "$W/predictions.jsonl" "$W/predict-all" $IMGS <<'EOF' || fail "batch output differs from lathe predict"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
want = [json.loads(l) for l in open(sys.argv[2])]
assert [l["path"] for l in lines] == sys.argv[3:], [l["path"] for l in lines]
assert [l["response"] for l in lines] == want, (lines, want)  # batches of one: the same numbers exactly
EOF
log "batch inference $BI with model m1: $(wc -l <"$W/predictions.jsonl") lines, equal to lathe predict"

# ---- 7. deletes ----
api DELETE /v1/models/m1
[ "$CODE" = 409 ] || fail "deleting m1 in use: $CODE $(cat "$W/resp")"
api DELETE /v1/endpoints/ep/stages/canary
[ "$CODE" = 409 ] || fail "deleting the default stage: $CODE $(cat "$W/resp")"
api DELETE /v1/endpoints/ep/stages/prod
[ "$CODE" = 200 ] || fail "deleting stage prod: $CODE $(cat "$W/resp")"
infer /v1/endpoints/ep/stages/prod/inference "$W/input.json"
[ "$CODE" = 404 ] || fail "inference on a deleted stage: $CODE"
api DELETE /v1/models/m1
[ "$CODE" = 200 ] || fail "deleting m1, no longer in use: $CODE $(cat "$W/resp")"
api DELETE /v1/models/m2
[ "$CODE" = 409 ] || fail "deleting m2 in use: $CODE $(cat "$W/resp")"
api DELETE /v1/endpoints/ep
[ "$CODE" = 202 ] || fail "deleting the endpoint: $CODE $(cat "$W/resp")"
gone() { api GET /v1/endpoints/ep && [ "$CODE" = 404 ]; }
wait_for 30 "endpoint ep to be gone" gone
api DELETE /v1/models/m2
[ "$CODE" = 200 ] || fail "deleting m2: $CODE $(cat "$W/resp")"
api GET /v1/models
[ "$(json "$W/resp" 'j["total"]')" = 0 ] || fail "models left: $(cat "$W/resp")"
infer /v1/endpoints/ep/inference "$W/input.json"
[ "$CODE" = 404 ] || fail "inference on a deleted endpoint: $CODE"
log "deletes: 409 for a model in use and the default stage; stage, m1, endpoint, m2 deleted"

# ---- SIGTERM: each process exits 0 (in the sanitizer build, a leak or memory error fails its status) ----
for p in "${IPID[i3]}" "$W1" "$SCHED"; do
    kill -TERM "$p"
    rc=0
    wait "$p" || rc=$?
    [ "$rc" = 0 ] || fail "process $p exited with status $rc on SIGTERM"
done
! grep -l "AddressSanitizer\|LeakSanitizer\|runtime error" "$W"/*.log || fail "sanitizer reports in the logs"
log "inference worker, worker and scheduler stopped cleanly on SIGTERM"
log "PASS"
