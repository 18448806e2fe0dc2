#!/usr/bin/env bash
# What this project runs once on a machine that has PyTorch, transformers, TensorBoard and scikit-learn (the
# device machine of the development sessions; none of them is in Debian, so never in CI). Inputs, made where
# lathe runs, in D (default .devcheck):
#   D/tiny-out/         `lathe train --pretrained <make_tiny_resnet_dir.py output>` on a Fashion-MNIST subset
#   D/preds.jsonl       `lathe predict --model D/tiny-out D/img/*.png`
#   D/eval.json         `lathe evaluate --model D/tiny-out ...`
#   D/img224.png        a 224x224 RGB image;  D/fm/*.gz  Debian's Fashion-MNIST files
# It checks lathe's output with the real libraries (check_outputs.py), makes a transformers-written ResNet-50
# directory for lathe to load (make_hf_resnet50.py; tar'd in 15 MB pieces into $OUT), and, on a GPU, runs the
# recipe sweep (tools/fm_recipe_sweep.py) for the Fashion-MNIST quality bar.
set -u
D=${D:-.devcheck}
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" /tmp/sweep
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
# SWEEP_CONFIGS: recipes separated by ';', each the arguments of tools/fm_recipe_sweep.py
SWEEP_CONFIGS=${SWEEP_CONFIGS:---batch 16 --lr 5e-4;--batch 32 --lr 1e-3;--batch 64 --lr 1e-3;--batch 128 --lr 1e-3;--batch 128 --lr 2e-3}
if [ "${SWEEP:-1}" = 1 ]; then
  i=0
  IFS=';' read -ra cfgs <<<"$SWEEP_CONFIGS"
  for cfg in "${cfgs[@]}"; do
    # shellcheck disable=SC2086
    timeout "${SWEEP_TIMEOUT:-420}" python3 tools/fm_recipe_sweep.py --data "$D/fm" $cfg >"/tmp/sweep/$i.log" 2>&1 &
    i=$((i + 1))
  done
fi
python3 tools/transformers_check/check_outputs.py "$D/tiny-out" --predictions "$D/preds.jsonl" \
  --images "$D"/img/*.png --evaluation "$D/eval.json" 2>&1 | grep -v Warning
if [ "${MAKE_HF:-1}" = 1 ]; then
  rm -rf /tmp/hf-r50
  python3 tools/transformers_check/make_hf_resnet50.py /tmp/hf-r50 "$D/img224.png" "$OUT/hf_r50_scores.json" 2>&1 | tail -3
  (cd /tmp && tar cf - hf-r50 | split -b 15M - "$OUT/hf_r50.tar.")
fi
ls -la "$OUT"
wait
cat /tmp/sweep/*.log | grep -v -i warn >"$OUT/sweep.txt"
grep -h -E "RESULT|epoch|Error|error" /tmp/sweep/*.log
