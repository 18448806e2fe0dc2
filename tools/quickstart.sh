#!/usr/bin/env bash
# The README's first command: on a fresh Debian machine, install what lathe needs, build it, turn Debian's
# Fashion-MNIST package into the guide's folder layout (a small subset), train ResNet-50 on it for one
# epoch, then evaluate and predict with the result. Everything stays under ./runs/.
#   LATHE_PER_CLASS=500 (training images per class; 0 = the full 54,000)  LATHE_EPOCHS=1
set -euo pipefail
cd "$(dirname "$0")/.."
per_class=${LATHE_PER_CLASS:-500}
epochs=${LATHE_EPOCHS:-1}
bash tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target lathe
data=runs/fashion-mnist-$per_class
if [ ! -d "$data/train" ]; then
  python3 tools/prepare_fashion_mnist.py --out "$data" --per-class "$per_class"
fi
out=runs/fashion-mnist-resnet50
rm -rf "$out"
./build/lathe train --algorithm image-classification --dataset "$data" --output "$out" \
  --hp num_train_epochs="$epochs" --hp learning_rate=0.001
echo "== lathe evaluate (test split)"
./build/lathe evaluate --model "$out" --dataset "$data" --split test | python3 -c \
  'import json,sys; m=json.load(sys.stdin); print({k: round(m[k], 4) for k in ("accuracy","precision","recall","f1")})'
echo "== lathe predict"
./build/lathe predict --model "$out" "$(ls -d "$data"/test/Sneaker/* | head -1)" "$(ls -d "$data"/test/Trouser/* | head -1)"
echo "model directory: $out (tensorboard --logdir $out/tensorboard)"
