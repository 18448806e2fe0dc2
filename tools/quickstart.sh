#!/usr/bin/env bash
# The README's first command. On a fresh Debian machine: install what lathe needs, build it, turn Debian's
# Fashion-MNIST package into the guide's folder layout (a small subset), start the embedded default
# (`lathe standalone`: scheduler, a worker and an in-process Kafka, storage in a local folder), submit a
# training over the HTTP API, wait for it, then show its metrics and predict two images with the model; then
# the guide's serving workflow over the same API: a model from the training, an endpoint, and one real-time
# inference request (the guide's request format) through Kafka to the in-process inference worker.
# Everything stays under ./runs/.  LATHE_PER_CLASS=500 (train images per class; 0 = all 54,000), LATHE_EPOCHS=1
set -euo pipefail
cd "$(dirname "$0")/.."
per_class=${LATHE_PER_CLASS:-500}
epochs=${LATHE_EPOCHS:-1}
bash tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target lathe
lathe=$PWD/build/lathe
store=$PWD/runs/lathe-data
data=datasets/fashion-mnist-$per_class
if [ ! -d "$store/$data/train" ]; then
  python3 tools/prepare_fashion_mnist.py --out "$store/$data" --per-class "$per_class"
fi

"$lathe" standalone --data-dir "$store" --port 0 --workers 1 >runs/standalone.url 2>runs/standalone.log &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q http runs/standalone.url 2>/dev/null && break; sleep 0.2; done
url=$(grep -o 'http://[^ ]*' runs/standalone.url | head -1)
[ -n "$url" ] || { cat runs/standalone.log >&2; exit 1; }
echo "== lathe standalone is up at $url (log: runs/standalone.log)"

echo "== lathe submit --wait: ResNet-50 on $data, $epochs epoch(s)"
"$lathe" submit --url "$url" --algorithm image-classification --dataset "$data" --name quickstart \
  --hp num_train_epochs="$epochs" --hp learning_rate=0.001 --wait >runs/training.json
id=$(python3 -c 'import json; print(json.load(open("runs/training.json"))["id"])')
out=$store/trainings/$id
python3 - runs/training.json <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
print("training %s: %s after %s steps" % (t["id"], t["state"], t["progress"]["step"]))
for split in ("validation", "test"):
    m = t.get("metrics", {}).get(split)
    if m:
        print("  %-10s accuracy %.4f  precision %.4f  recall %.4f  f1 %.4f" % (split, m["accuracy"], m["precision"], m["recall"], m["f1"]))
PY
echo "== lathe predict with the trained model ($out)"
"$lathe" predict --model "$out" "$(ls -d "$store/$data"/test/Sneaker/* | head -1)" "$(ls -d "$store/$data"/test/Trouser/* | head -1)"
echo "model directory: $out  (TensorBoard: tensorboard --logdir $out/tensorboard)"

echo "== a model from the training, an endpoint, and a real-time inference request (docs/inference.md)"
model=fm-$id
endpoint=fashion-$id
api() { curl -sS -X "$1" "$url$2" -H 'Content-Type: application/json' ${3:+--data-binary "$3"}; echo; }
api POST /v1/models "{\"name\": \"$model\", \"training_id\": \"$id\"}"
api POST /v1/endpoints "{\"name\": \"$endpoint\", \"model\": \"$model\"}"
state=
for _ in $(seq 300); do
  state=$(curl -sS "$url/v1/endpoints/$endpoint" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$state" = CREATING ] || break
  sleep 0.2
done
echo "endpoint $endpoint: $state"
image=$(ls -d "$store/$data"/test/Sneaker/* | head -1)
python3 -c 'import base64,json,sys; print(json.dumps({"instances": [{"data": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}]}))' \
  "$image" >runs/request.json
echo "POST /v1/endpoints/$endpoint/inference with $image:"
curl -sS -X POST "$url/v1/endpoints/$endpoint/inference" -H 'Content-Type: application/json' --data-binary @runs/request.json
echo
