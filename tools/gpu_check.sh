#!/bin/bash
# The whole GPU verification in one device call: every test suite, the kernel and training-step
# benchmarks, the PyTorch comparisons taken in the same run, and the PEFT round trip of a
# Lyra-saved adapter.
#
#   bash tools/gpu_check.sh stage        # here: build and pack into .gpuz/gpu.tar.xz (~25 MB)
#   # device tool: carry [".gpuz"], command "bash tools/gpu_check.sh run"
#   bash tools/gpu_check.sh run [FILTER] # there: logs go to $OUT/*.log, a summary to stdout
#
# FILTER (optional) is a Google Benchmark regex for the benchmark part (default: the headline
# shapes of each family). The binaries are the all-in-one //tests:gpu_tests and
# //benchmarks:all_benchmarks (after adding suites: python3 tools/gen_gpu_targets.py).
set -uo pipefail
cd "$(dirname "$0")/.."

stage() {
  set -e
  ../shared/tools/stage-gpu //tests:gpu_tests //benchmarks:all_benchmarks \
    //benchmarks/compare:adamw_trajectory >/dev/null
  mkdir -p .gpuz
  tar cf - .gpu | xz -T2 -6 > .gpuz/gpu.tar.xz
  ls -la .gpuz/gpu.tar.xz
}

run() {
  local filter=${1:-'SelectiveScan.*L:2048|Ssd|GatedRmsNorm|MambaLayer|TrainStep'}
  local out=${OUT:-/tmp/lyra-gpu}
  mkdir -p "$out" /tmp/lyra-t
  tar xJf .gpuz/gpu.tar.xz
  export LD_LIBRARY_PATH=$PWD/.gpu/lib:${LD_LIBRARY_PATH:-} TEST_TMPDIR=/tmp/lyra-t
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  git log -1 --format='commit %h %s' 2>/dev/null || true
  echo "== tests"
  LYRA_LORA_EXPORT_DIR=/tmp/lyra-lora-export .gpu/bin/gpu_tests --gtest_brief=1 \
    > "$out/gpu_tests.log" 2>&1
  echo "gpu_tests exit $?"
  grep -E '^\[  (PASSED|FAILED|SKIPPED) |tests? from .* ran' "$out/gpu_tests.log" | tail -40
  echo "== Lyra-saved adapter loaded by PEFT"
  CUDA_VISIBLE_DEVICES= python3 tools/fixtures/check_lyra_adapter_in_peft.py --dir \
    /tmp/lyra-lora-export tests/fixtures/lora/*/ > "$out/peft_check.log" 2>&1
  echo "peft check exit $?"; tail -8 "$out/peft_check.log"
  echo "== benchmarks ($filter)"
  .gpu/bin/all_benchmarks --benchmark_min_time=0.1 --benchmark_filter="$filter" \
    > "$out/benchmarks.log" 2>&1
  echo "benchmarks exit $?"
  grep -E '^BM_|summary|overhead' "$out/benchmarks.log" | cut -c1-220
  echo "== PyTorch in the same run"
  python3 benchmarks/compare/ssd_torch.py > "$out/ssd_torch.log" 2>&1; tail -3 "$out/ssd_torch.log"
  python3 benchmarks/compare/mamba_layer_torch.py --iters 2 --warmup 1 > "$out/mamba_layer_torch.log" 2>&1
  tail -2 "$out/mamba_layer_torch.log"
  python3 benchmarks/compare/lora_train_step_torch.py --model mamba1 --seq 512 \
    --modes full sll_lora --warmup 0 --iters 1 --max-seconds 30 > "$out/lora_torch.log" 2>&1
  tail -4 "$out/lora_torch.log"
}

case "${1:-}" in
  stage) stage ;;
  run) shift; run "$@" ;;
  *) echo "usage: bash tools/gpu_check.sh stage | run [BENCHMARK_FILTER]" >&2; exit 2 ;;
esac
