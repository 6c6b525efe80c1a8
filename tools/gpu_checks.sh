#!/usr/bin/env bash
# Every GPU check and figure of the project in one go, on a machine with a CUDA device; logs, JSON
# files and a summary go to one folder. Each step is limited in time (LIMIT seconds, default 600)
# and a failing step does not stop the others.
#
#   bash tools/gpu_checks.sh [OUT_DIR]              # default OUT_DIR: gpu_checks/<date-time>
#   STEPS="fault tests" bash tools/gpu_checks.sh    # only some steps (default: all, in this order)
#
# Steps (a step name's part before "_" is what STEPS selects):
#   fault      one line per mixed-precision/GPU fault the trainer fixed, its tests (CPU and CUDA):
#              01 targets float32 under autocast, 02 clipping with the grad scaler, 03 thread-local
#              CUDA graph capture, 04 bf16-mixed with dp refused, 05 RNG states of fewer GPUs,
#              06 validation at the inference precision, 07 determinism switch, 08 a failing rank
#              stops every rank, 09 the release's speed protocol, 10 dp copies keep channels-last
#   tests      pytest -m cuda (every CUDA test)
#   speed      tools/speed.py: the release's protocol and ours, fp32 and the fast options, batch 1 and 40
#   data       the 1000 + 300 synthetic set in the CULane layout
#   loader     tools/benchmark.py loader, 0 and 14 workers
#   train      tools/benchmark.py train: the CULane recipe's steady iteration at batch 40, 16-mixed
#   mixed      a 16-mixed and a bf16-mixed training of the quickstart (60 steps), each resumed to 90
#   strategies dp and ddp on one GPU (30 steps each)
#   predict    the 16-mixed run's checkpoint: images and a video, fp16 with a CUDA graph
#   export     ONNX export of that checkpoint (checked against PyTorch by the tool itself)
#   recipe     main.py with the CULane recipe on the synthetic set, 200 iterations, log every 25
#   quickstart the README's quickstart on CUDA
#   suite      the whole test suite
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_checks/$(date +%Y%m%d-%H%M%S)}
STEPS=${STEPS:-fault tests speed data loader train mixed strategies predict export recipe quickstart suite}
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
  printf '%-30s exit %3d  %5d s  %s\n' "$name" "$rc" "$(( $(date +%s) - start ))" "$*" | tee -a "$OUT/summary.txt"
}

T=tests
step fault_01_targets "$PY" -m pytest -q $T/test_engine_settings.py::test_mixed_precision_keeps_the_training_targets_float32 \
  $T/test_cuda.py::test_mixed_precision_training_and_resume
step fault_02_clipping "$PY" -m pytest -q \
  $T/test_engine_optim.py::test_clipping_under_a_grad_scaler_unscales_first_and_leaves_overflows_to_it \
  $T/test_engine_optim.py::test_fabric_clipping_fails_on_these_steps $T/test_cuda.py::test_gradient_clipping_under_16_mixed_trains
step fault_03_graph_capture "$PY" -m pytest -q \
  $T/test_cuda.py::test_cudagraph_is_captured_while_another_thread_makes_cuda_calls \
  $T/test_cuda.py::test_cudagraph_replays_its_shape_and_runs_other_shapes_eagerly
step fault_04_bf16_dp "$PY" -m pytest -q $T/test_engine_settings.py::test_bf16_with_data_parallel_on_several_gpus_is_refused_in_one_line
step fault_05_rng_states "$PY" -m pytest -q $T/test_engine_checkpoint.py::test_rng_state_restores_all_generators \
  $T/test_engine_checkpoint.py::test_rng_state_of_more_gpus_than_visible_restores_those_that_exist
step fault_06_validation_precision "$PY" -m pytest -q \
  $T/test_engine_validation.py::test_validation_runs_at_the_inference_precision_not_the_training_one \
  $T/test_cuda.py::test_validate_only_on_cuda_counts_like_cpu
step fault_07_determinism "$PY" -m pytest -q $T/test_engine_settings.py::test_determinism_is_a_switch
step fault_08_rank_failure "$PY" -m pytest -q \
  $T/test_engine_validation.py::test_a_failure_on_another_process_stops_this_one_with_its_line \
  $T/test_engine_validation.py::test_validation_of_two_processes_agrees_on_a_failure_before_gathering
step fault_09_speed_protocol "$PY" -m pytest -q $T/test_cuda.py::test_speed_release_protocol_synchronises_once_around_its_calls \
  $T/test_speed_tool.py::test_release_protocol_beside_ours_with_the_chosen_options
step fault_10_dp_channels_last "$PY" -m pytest -q $T/test_engine_data_parallel.py
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
QUICK=(configs/srlane_r18_synthetic.py --accelerator cuda)
for precision in 16-mixed bf16-mixed; do
  step mixed_$precision "$PY" main.py "${QUICK[@]}" --work-dir "$OUT/mixed_$precision" \
    --set precision=$precision total_iter=60 scheduler.warmup_iter=30 save_interval=30 eval_ep=1000
  step mixed_${precision}_resume "$PY" main.py "${QUICK[@]}" --resume "$OUT/mixed_$precision" \
    --set precision=$precision total_iter=90 scheduler.warmup_iter=30 save_interval=30 eval_ep=1000
done
for strategy in dp ddp; do
  step strategies_$strategy "$PY" main.py "${QUICK[@]}" --work-dir "$OUT/strategy_$strategy" \
    --set strategy=$strategy precision=16-mixed total_iter=30 scheduler.warmup_iter=15 eval_ep=1000
done
CKPT=$OUT/mixed_16-mixed/last.pth
FAST=(--accelerator cuda --precision fp16 --compile cudagraph)
step predict_images "$PY" tools/predict.py configs/srlane_r18_synthetic.py "$DATA/list/test.txt" --root "$DATA" \
  --load-from "$CKPT" --out "$OUT/predict_images" "${FAST[@]}"
step predict_videofile "$PY" -c "
import cv2, glob
frames = sorted(glob.glob('$DATA/**/*.jpg', recursive=True))[:60]
first = cv2.imread(frames[0])
writer = cv2.VideoWriter('$OUT/road.avi', cv2.VideoWriter_fourcc(*'MJPG'), 10, first.shape[1::-1])
for name in frames:
    writer.write(cv2.resize(cv2.imread(name), first.shape[1::-1]))
writer.release()
"
step predict_video "$PY" tools/predict.py configs/srlane_r18_synthetic.py "$OUT/road.avi" --load-from "$CKPT" \
  --out "$OUT/predict_video" --view "${FAST[@]}"
step export "$PY" tools/export.py configs/srlane_r18_synthetic.py --load-from "$CKPT" --out "$OUT/srlane.onnx"
step recipe "$PY" main.py "${CULANE[@]}" --accelerator cuda --work-dir "$OUT/recipe" --set "${ON_SYNTHETIC[@]}" \
  total_iter=200 log_interval=25 eval_ep=1000
step quickstart "$PY" main.py configs/srlane_r18_synthetic.py --accelerator cuda --work-dir "$OUT/quickstart"
step suite "$PY" -m pytest -q
echo "wrote $OUT (summary.txt, a log and json files per step)"
