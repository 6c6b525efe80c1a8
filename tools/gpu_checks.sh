#!/usr/bin/env bash
# Every GPU figure of the project in one go, on a machine with a CUDA device; logs, JSON files and a
# summary go to one folder. Each step is limited in time (LIMIT seconds, default 600) and a
# failing step does not stop the others.
#
#   bash tools/gpu_checks.sh [OUT_DIR]            # default OUT_DIR: gpu_checks/<date-time>
#   STEPS="tests speed" bash tools/gpu_checks.sh  # only some steps (default: all, in this order)
#
# Steps: tests (pytest -m cuda), speed (tools/speed.py: the release's protocol and ours, fp32 and
# the fast options, batch 1 and 40), data (the 1000 + 300 synthetic set in the CULane layout),
# loader (tools/benchmark.py loader, 0 and 14 workers), train (tools/benchmark.py train: the CULane
# recipe's steady iteration at batch 40, 16-mixed, 14 workers, beside the cached-batch step),
# recipe (main.py with the CULane recipe on the synthetic set, 200 iterations, log every 25),
# quickstart (the README's quickstart on CUDA), suite (the whole test suite).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_checks/$(date +%Y%m%d-%H%M%S)}
STEPS=${STEPS:-tests speed data loader train recipe quickstart suite}
LIMIT=${LIMIT:-600}
PY=${PYTHON:-python3}
DATA=datasets/synthetic
CULANE=(configs/srlane_r18_culane.py)
ON_SYNTHETIC=("dataset.data_root='$DATA'" "workers=14")
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" > "$OUT/torch.txt" 2>&1

step() {  # step NAME COMMAND...: run it under the time limit, log to OUT/NAME.log, one summary line
  local name=$1 start rc
  shift
  case " $STEPS " in *" ${name%%_*} "*) ;; *) return 0 ;; esac
  start=$(date +%s)
  timeout "$LIMIT" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  printf '%-22s exit %3d  %5d s  %s\n' "$name" "$rc" "$(( $(date +%s) - start ))" "$*" | tee -a "$OUT/summary.txt"
}

step tests "$PY" -m pytest -q -m cuda
for batch in 1 40; do
  step speed_fp32_bs$batch "$PY" tools/speed.py "${CULANE[@]}" --accelerator cuda --batch $batch \
    --json "$OUT/speed_fp32_bs$batch.json"
  step speed_fast_bs$batch "$PY" tools/speed.py "${CULANE[@]}" --accelerator cuda --batch $batch --precision fp16 \
    --fold-bn --channels-last --compile cudagraph --json "$OUT/speed_fast_bs$batch.json"
done
step data "$PY" tools/make_synthetic.py --out "$DATA" --format culane --train 1000 --test 300 --seed 0 --workers 14 --quiet
step loader "$PY" tools/benchmark.py loader --config "${CULANE[0]}" --workers 0 14 --images 560 --batch-size 40 --json "$OUT/loader.json"
step train "$PY" tools/benchmark.py train --config "${CULANE[0]}" --accelerator cuda --iters 40 --warmup 10 \
  --json "$OUT/train.json" --set "${ON_SYNTHETIC[@]}"
step recipe "$PY" main.py "${CULANE[@]}" --accelerator cuda --work-dir "$OUT/recipe" --set "${ON_SYNTHETIC[@]}" \
  total_iter=200 log_interval=25 eval_ep=1000
step quickstart "$PY" main.py configs/srlane_r18_synthetic.py --accelerator cuda --work-dir "$OUT/quickstart"
step suite "$PY" -m pytest -q
echo "wrote $OUT (summary.txt, a log and json files per step)"
