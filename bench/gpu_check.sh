#!/usr/bin/env bash
# The GPU check of issue 16, made to fit in 5 minutes on one GPU machine (an H200 with 16 cores):
#  (a) a selection of the test suite with the device forced to CUDA (FEWSHOT_DEVICE=cuda): the engine's, the
#      networks' and the rules' tests (the run store, job and dashboard tests do not depend on the device), 2 minutes
#      at most;
#  (b) eight speed cases of bench/engine_speed.py on the GPU (adaptation latency, second-order meta-training, vmap,
#      evaluation throughput), with peak GPU memory in the JSON;
#  (c) 5 iterations of the miniImageNet 4-CONV and ResNet12 second-order MAML and ALFA+MAML configs on synthetic
#      images (bench/gpu_training_memory.py): seconds per iteration and peak GPU memory.
#
#   bash bench/gpu_check.sh          # on a machine with CUDA; fails at once without one
#   bash bench/gpu_check.sh --cpu    # the same parts on the CPU, with small selections and tiny sizes (minutes)
#
# Everything printed also goes to $OUT/gpu_check_<device>.txt, and the JSON of (b) and (c) beside it, where $OUT is
# the environment's output folder when set (the GPU machine's tool collects it), else bench/results/.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DEVICE=cuda
case "${1:-}" in
    --cpu) DEVICE=cpu ;;
    "") ;;
    *) echo "usage: bash bench/gpu_check.sh [--cpu]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python}
if [ "$DEVICE" = cuda ] && ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device; run with --cpu" >&2
    exit 2
fi
RESULTS=${OUT:-$REPO/bench/results}
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_check_$DEVICE.txt"
exec > >(tee "$LOG") 2>&1

if [ "$DEVICE" = cuda ]; then
    TESTS=(tests/models tests/core/meta tests/core/rules tests/core/bilevel tests/core/checkpoint
           tests/core/test_adapt.py tests/core/test_evaluate.py tests/core/test_device.py tests/core/test_objectives.py
           tests/core/test_pretrain.py tests/core/test_mnist1d_training.py tests/bench/test_gpu_training_memory.py)
    TESTS_LIMIT_S=120
    SPEED_CASES=(conv4-omniglot-adapt-1shot-alfa conv4-84-adapt-5shot-alfa resnet12-84-adapt-5shot-alfa
                 conv4-84-train-2nd conv4-84-train-2nd-maml resnet12-84-train-2nd vmap-conv4-84-2nd
                 eval-conv4-omniglot-1shot-alfa)
    SPEED_ARGS=(--repeats 3 --timeout 60)
    TRAINING_ARGS=(--iterations 5 --timeout 120)
else
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # a shared 2-core machine: one core
    TESTS=(tests/core/test_device.py tests/core/test_adapt.py tests/bench/test_gpu_training_memory.py)
    TESTS_LIMIT_S=300
    SPEED_CASES=(conv4-omniglot-adapt-1shot-alfa conv4-omniglot-recipe-maml vmap-conv4-omniglot-2nd
                 eval-conv4-omniglot-1shot-alfa)
    SPEED_ARGS=(--repeats 1 --timeout 120)
    TRAINING_ARGS=(--iterations 2 --tiny --timeout 300)
fi

echo "bash bench/gpu_check.sh${1:+ $1}: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname), $(getconf _NPROCESSORS_ONLN) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, '|',
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
started_all=$SECONDS
declare -A STATUS SECONDS_TAKEN

part() {  # part NAME COMMAND...: run one part, keep going when it fails, remember its exit status and time
    local name=$1
    shift
    echo
    echo "=== ($name) $* [$(date -u +%H:%M:%S)]"
    local started=$SECONDS
    "$@"
    STATUS[$name]=$?
    SECONDS_TAKEN[$name]=$((SECONDS - started))
    echo "=== ($name) exit ${STATUS[$name]} after ${SECONDS_TAKEN[$name]} s"
}

# SIGINT at the limit: pytest stops as on Ctrl-C and still prints the summary of the tests it ran.
part a env FEWSHOT_DEVICE="$DEVICE" timeout -s INT -k 15 "$TESTS_LIMIT_S" "$PYTHON" -m pytest "${TESTS[@]}" \
    -m "not browser and not slow" --timeout 60 -q -rfE -p no:cacheprovider --durations 5
part b "$PYTHON" bench/engine_speed.py --device "$DEVICE" --cases "${SPEED_CASES[@]}" "${SPEED_ARGS[@]}" \
    --out "$RESULTS/engine_speed_$DEVICE.json"
if [ "$DEVICE" = cuda ] && [ -f "$RESULTS/engine_speed_cuda.json" ]; then  # the table above shows the CPU's RSS
    "$PYTHON" - "$RESULTS/engine_speed_cuda.json" <<'PEAKS'
import json, sys

for row in json.load(open(sys.argv[1]))["results"]:
    if "error" not in row:
        print(f"{row['case']:40s} peak GPU memory {row.get('peak_cuda_mb', '?')} MB allocated")
PEAKS
fi
part c "$PYTHON" bench/gpu_training_memory.py --device "$DEVICE" "${TRAINING_ARGS[@]}" \
    --out "$RESULTS/gpu_training_memory_$DEVICE.json"

echo
echo "=== summary ($DEVICE, $((SECONDS - started_all)) s in all, load $(cut -d' ' -f1-3 /proc/loadavg))"
failed=0
for name in a b c; do
    what=$(case $name in a) echo "tests, FEWSHOT_DEVICE=$DEVICE" ;; b) echo "engine speed cases" ;;
        c) echo "miniImageNet-shaped second-order training" ;; esac)
    word=ok
    [ "${STATUS[$name]}" = 0 ] || { word="FAILED (exit ${STATUS[$name]})"; failed=1; }
    echo "($name) $what: $word, ${SECONDS_TAKEN[$name]} s"
done
echo "output: $LOG"
exit $failed
