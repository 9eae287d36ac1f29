#!/usr/bin/env bash
# The device check of the trainer, in one command on a GPU machine (issue 13 item 10):
#
#   1. the SDL overhead benchmark on a random 0.5B Qwen3 in bf16, groups of 6 and 16
#      (step time and memory of SDL against GRPO, step time over GPU-busy time);
#   2. a multimodal GRPO (and SDL) step on a tiny Qwen3-VL with image observations
#      (benchmarks/mm_grpo_step.py);
#   3. when vLLM is installed (pip install 'genevolve-graph[vllm]'), vLLM-backed rollouts:
#      colocated in a real GRPO step, and through `genevolve-graph serve-policy`
#      (benchmarks/vllm_rollout_check.py).
#
# Usage (from anywhere):  bash benchmarks/gpu_check.sh            [PYTHON=python3] [OUT=gpu-check]
# Everything is built locally (no hub access). Prints the versions it ran with first, writes each
# part's output under $OUT, and exits non-zero when a part fails (the others still run).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

echo "== versions"
"$PY" - <<'PYEOF' | tee "$OUT/versions.txt"
import importlib, platform
import torch
print("python", platform.python_version())
for name in ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "vllm"):
    try:
        print(name, importlib.import_module(name).__version__)
    except ImportError:
        print(name, "not installed")
print("cuda", torch.version.cuda, "devices", torch.cuda.device_count(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
PYEOF
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA device: this check is for a GPU machine"; exit 2; }

echo "== 1. SDL overhead, random 0.5B Qwen3, bf16"
for group in 6 16; do
  "$PY" benchmarks/sdl_overhead.py --device cuda --model-size 0.5b --rounds 3 --steps 8 --group "$group" \
    | tee "$OUT/sdl_overhead_g$group.txt" || status=1
done

echo "== 2. multimodal GRPO + SDL step (tiny Qwen3-VL, image observations)"
if [ -f benchmarks/mm_grpo_step.py ]; then
  "$PY" benchmarks/mm_grpo_step.py --device cuda | tee "$OUT/mm_grpo_step.txt" || status=1
else
  echo "MISSING: benchmarks/mm_grpo_step.py (the multimodal step of issue 13 item 6) is not in this tree" | tee "$OUT/mm_grpo_step.txt"
  status=1
fi

echo "== 3. vLLM-backed rollouts"
if "$PY" -c "import vllm" 2>/dev/null; then
  "$PY" benchmarks/vllm_rollout_check.py | tee "$OUT/vllm_rollout_check.txt" || status=1
else
  echo "skipped: vLLM is not installed (pip install 'genevolve-graph[vllm]', Linux + CUDA)" | tee "$OUT/vllm_rollout_check.txt"
fi

echo "== done (status $status); outputs in $OUT/"
exit $status
