#!/usr/bin/env bash
# The device check of the trainer, in one command on one H100/H200 (issues 13 and 23), about
# 6-8 minutes, with only the wheels of constraints/gpu.txt beside the machine's torch:
#
#   1. sdl_step:   the SDL overhead benchmark on a random 0.5B Qwen3 in bf16, group of 6
#                  (step time and memory of SDL against plain GRPO);
#   2. ablation:   each standard ablation variant (training/ablations.py) on the same 0.5B setup,
#                  one PASS/MISS line per variant, with its step-time and memory ratio to GRPO;
#   3. multimodal: a GRPO and an SDL step on a tiny Qwen3-VL with image observations
#                  (benchmarks/mm_grpo_step.py);
#   4. resume:     two SDL steps with a checkpoint each, then a resume from checkpoint-1
#                  (step, optimizer, RNG, the experience buffer of that step; benchmarks/resume_check.py);
#   5. vllm:       optional, only where vLLM is installed (pip install 'genevolve-graph[vllm]'):
#                  vLLM-backed rollouts, colocated and through serve-policy
#                  (benchmarks/vllm_rollout_check.py). Without vLLM it prints MISS (optional)
#                  and does not fail the check; what the trainer asks of vLLM is tested on CPU
#                  with a recording engine (tests/training/test_colocate_vllm.py).
#
# Usage (from anywhere):  bash benchmarks/gpu_check.sh            [PYTHON=python3] [OUT=gpu-check]
# Everything is built locally (no hub access). Prints the versions first, writes each part's
# output under $OUT, prints one "PASS <part>" or "MISS <part> (why)" line per part at the end,
# and exits non-zero when a required part misses (the others still run).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
results=()
pass() { results+=("PASS $1"); }
miss() { results+=("MISS $1 ($2)"); [ "${3:-required}" = optional ] || status=1; }

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

echo "== 1+2. SDL step and the ablation variants, random 0.5B Qwen3, bf16, group 6"
SECONDS=0
if "$PY" benchmarks/sdl_overhead.py --device cuda --model-size 0.5b --group 6 --rounds 1 --warmup 1 --steps 2 \
     --max-completion-length 2048 --variants all | tee "$OUT/sdl_overhead.txt"; then
  grep -q "^step time ratio" "$OUT/sdl_overhead.txt" && pass "sdl_step ($(grep '^step time ratio' "$OUT/sdl_overhead.txt"))" \
    || miss sdl_step "no SDL figures in $OUT/sdl_overhead.txt"
  for variant in grpo sdl sdl_all_tokens sdl_top25 full_sequence_sd; do
    row=$(grep -E "^$variant +[0-9]" "$OUT/sdl_overhead.txt")
    if [ -n "$row" ]; then pass "ablation $variant: $(echo "$row" | awk '{printf "time ratio %s, memory ratio %s", $3, $6}')"
    else miss "ablation $variant" "no row in $OUT/sdl_overhead.txt"; fi
  done
else
  miss sdl_step "benchmarks/sdl_overhead.py failed, see above"
  for variant in grpo sdl sdl_all_tokens sdl_top25 full_sequence_sd; do miss "ablation $variant" "the benchmark failed"; done
fi
echo "(parts 1+2 took ${SECONDS}s)"

echo "== 3. multimodal GRPO + SDL step (tiny Qwen3-VL, image observations)"
SECONDS=0
if "$PY" benchmarks/mm_grpo_step.py --device cuda | tee "$OUT/mm_grpo_step.txt"; then pass multimodal
else miss multimodal "benchmarks/mm_grpo_step.py failed, see $OUT/mm_grpo_step.txt"; fi
echo "(part 3 took ${SECONDS}s)"

echo "== 4. resume from a checkpoint (step, optimizer, RNG, experience buffer)"
SECONDS=0
if "$PY" benchmarks/resume_check.py --device cuda | tee "$OUT/resume_check.txt"; then pass resume
else miss resume "benchmarks/resume_check.py failed, see $OUT/resume_check.txt"; fi
echo "(part 4 took ${SECONDS}s)"

echo "== 5. vLLM-backed rollouts (optional)"
if "$PY" -c "import vllm" 2>/dev/null; then
  if "$PY" benchmarks/vllm_rollout_check.py | tee "$OUT/vllm_rollout_check.txt"; then pass vllm
  else miss vllm "benchmarks/vllm_rollout_check.py failed, see $OUT/vllm_rollout_check.txt"; fi
else
  miss vllm "vLLM is not installed; optional: pip install 'genevolve-graph[vllm]' on Linux + CUDA" optional
fi

echo "== results"
printf '%s\n' "${results[@]}" | tee "$OUT/results.txt"
echo "== done (status $status); outputs in $OUT/"
exit $status
