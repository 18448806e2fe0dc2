#!/usr/bin/env bash
# The lathe binary as a user meets it: help, exit codes, one-line errors, and a train -> evaluate -> predict
# round trip on a tiny data set made from Debian's Fashion-MNIST (or, without it, from generated PNGs).
set -u
LATHE=${LATHE:-build/lathe}
tmp=$(mktemp -d /tmp/lathe-cli-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# expect STATUS NEEDLE CMD...: exit status STATUS, one line of stderr containing NEEDLE
expect() {
  local want=$1 needle=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" != "$want" ]; then bad "$* exited $got, want $want: $(cat "$tmp/err")"; return; fi
  if [ -n "$needle" ] && ! grep -q -- "$needle" "$tmp/err"; then bad "$*: stderr lacks '$needle': $(cat "$tmp/err")"; return; fi
  if [ "$want" != 0 ] && [ "$(wc -l <"$tmp/err")" != 1 ]; then bad "$*: error is not one line: $(cat "$tmp/err")"; return; fi
  ok
}

expect 0 "" "$LATHE" --help
grep -q "train" "$tmp/out" && ok || bad "--help lists no train"
for cmd in train evaluate predict; do
  expect 0 "" "$LATHE" "$cmd" --help
  grep -q "usage: lathe $cmd" "$tmp/out" && ok || bad "$cmd --help"
done
grep -q "per_device_train_batch_size" <("$LATHE" train --help) && ok || bad "train --help lists no hyperparameters"
expect 2 "unknown command" "$LATHE" frobnicate
expect 2 "--dataset is required" "$LATHE" train --algorithm image-classification --output "$tmp/o"
expect 2 "unknown or incomplete option" "$LATHE" train --bogus
expect 1 "unknown algorithm 'classification'" "$LATHE" train --algorithm classification --dataset x --output y
expect 1 "learning_rate" "$LATHE" train --algorithm image-classification --dataset x --output y --hp learning_rate=-1
expect 1 "valid names are" "$LATHE" train --algorithm image-classification --dataset x --output y --hp lr=1
expect 1 "does not exist" "$LATHE" train --algorithm image-classification --dataset "$tmp/none" --output "$tmp/o"

# a tiny real data set: 4 images per class from Fashion-MNIST
data=$tmp/data
if [ -d /usr/share/datasets/fashion-mnist ]; then
  python3 tools/prepare_fashion_mnist.py --out "$data" --per-class 4 --validation-per-class 2 >/dev/null
else
  bad "dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)"
fi
expect 0 "" "$LATHE" train --algorithm image-classification --dataset "$data" --output "$tmp/model" \
  --hp num_train_epochs=1 --hp per_device_train_batch_size=8 --hp learning_rate=0.001 --quiet
for f in config.json preprocessor_config.json model.safetensors metrics.json trainer_state.json checkpoints/latest; do
  [ -e "$tmp/model/$f" ] && ok || bad "missing $f"
done
ls "$tmp"/model/tensorboard/events.out.tfevents.* >/dev/null 2>&1 && ok || bad "no TensorBoard events"

expect 0 "" "$LATHE" evaluate --model "$tmp/model" --dataset "$data" --split validation
python3 - "$tmp/out" <<'PY' && ok || bad "evaluate output"
import json, sys
m = json.load(open(sys.argv[1]))
for k in ("accuracy", "precision", "recall", "f1", "per_class", "confusion_matrix"):
    assert k in m, k
assert m["samples"] == 20 and len(m["confusion_matrix"]["matrix"]) == 10
PY
expect 1 "--split must be" "$LATHE" evaluate --model "$tmp/model" --dataset "$data" --split train

img1=$(ls "$data"/test/Bag/* | head -1)
img2=$(ls "$data"/test/Trouser/* | head -1)
expect 0 "" "$LATHE" predict --model "$tmp/model" "$img1" "$img2"
python3 - "$tmp/out" <<'PY' && ok || bad "predict output is not the guide's response"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 2
for line in lines:
    r = json.loads(line)
    assert isinstance(r, list) and len(r) == 10
    assert all(set(e) == {"score", "label"} for e in r)
    scores = [e["score"] for e in r]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-4
PY
printf 'not an image' >"$tmp/bad.png"
expect 1 "bad.png" "$LATHE" predict --model "$tmp/model" "$tmp/bad.png"
expect 1 "config.json" "$LATHE" predict --model "$tmp/none" "$img1"
# resume refuses an output without checkpoints, and continues one that has them
expect 1 "no checkpoint" "$LATHE" train --algorithm image-classification --dataset "$data" --output "$tmp/fresh" --resume
expect 0 "" "$LATHE" train --algorithm image-classification --dataset "$data" --output "$tmp/model" \
  --hp num_train_epochs=2 --hp per_device_train_batch_size=8 --hp learning_rate=0.001 --resume --quiet
python3 -c "import json,sys; s=json.load(open('$tmp/model/trainer_state.json')); assert s['global_step']==10, s['global_step']" \
  && ok || bad "resume did not continue to step 10"

echo "test_cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
