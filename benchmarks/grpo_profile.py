"""Where the CPU goes in a GRPO (or SDL) step: cProfile over the measured steps, grouped by job.

The same setup as ``sdl_overhead.py`` (random Qwen3, scripted token-exact tool rollouts through
the agent graph, an in-process reward; the SDL trainer with a guide for every request). Two
profilers run: one on the training thread and one on the rollout thread (the agent graphs run
on their own event loop), each enabled only during the measured steps. The report groups
cumulative time by job:

* rollout graph: the agent graph around the policy (nodes, tools, binder, emitter, asyncio);
* rollout tokenisation: ``apply_chat_template`` of each turn and the decode of each reply;
* rollout generation: the policy's sampling (scripted here: near zero; the model on a GPU run);
* TRL scoring: ``_generate_and_score_completions`` outside the rollout (padding, old/ref
  log-probs, rewards, advantages);
* SDL masks (decision-token mask), SDL retrieval (guide lookup, embeddings) and SDL teacher
  prompts (their tokenisation);
* forward + backward of the loss (student and teacher) and the optimizer step.

Run:
  python benchmarks/grpo_profile.py                      # SDL trainer, group 6, tiny model, CPU
  python benchmarks/grpo_profile.py --kind grpo --group 16 --top 25
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

for _name, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                      "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_name, _value)

from sdl_overhead import REQUESTS, reward, variants  # noqa: E402

# (bucket, thread, function-name predicate on (file, name)); cumulative times, first match wins per bucket
BUCKETS: list[tuple[str, str, tuple[str, str]]] = [
    ("rollout (whole, training thread waits)", "main", ("genevolve_graph/training/rollout.py", "__call__")),
    ("rollout tokenisation: chat template per turn", "loop", ("trace.py", "render")),
    ("rollout tokenisation: decode replies", "loop", ("tokenization_utils_base.py", "decode")),
    ("rollout generation (policy sampling)", "loop", ("scripted_generation.py", "generate")),
    ("rollout tools (search, image search, skills)", "loop", ("genevolve_graph/tools/", "")),
    ("TRL generate + score (incl. rollout)", "main", ("grpo_trainer.py", "_generate_and_score_completions")),
    ("TRL rewards", "main", ("grpo_trainer.py", "_calculate_rewards")),
    ("SDL distil step (pairs, buffer)", "main", ("genevolve_graph/training/trainer.py", "_distill")),
    ("SDL retrieval (guide lookup + embedding)", "main", ("buffer.py", "retrieve")),
    ("SDL teacher prompts (tokenisation)", "main", ("genevolve_graph/training/trainer.py", "_teacher_prompt_ids")),
    ("SDL decision-token masks", "main", ("sdl.py", "decision_token_mask")),
    ("loss: SDL _compute_loss (GRPO forward + SDL term)", "main", ("genevolve_graph/training/trainer.py", "_compute_loss")),
    ("loss: GRPO forward only", "main", ("trl/trainer/grpo_trainer.py", "_compute_loss")),
    ("SDL teacher forward", "main", ("genevolve_graph/training/trainer.py", "_teacher_logps")),
    ("backward", "main", ("accelerator.py", "backward")),
    ("optimizer step", "main", ("torch/optim/optimizer.py", "wrapper")),
    ("training_step (forward + backward)", "main", ("trl/trainer/grpo_trainer.py", "training_step")),
]


def cumulative(stats: pstats.Stats, where: str, name: str) -> float:
    """Sum of cumulative times of the functions matching (file substring, name) that are not
    called from another matching one (no double counting of recursion / nesting)."""
    matches = {key for key in stats.stats if where in key[0] and (not name or key[2] == name)}
    total = 0.0
    for key in matches:
        _cc, _nc, _tt, ct, callers = stats.stats[key]
        if name == "" and any(c in matches for c in callers):
            continue  # a tool helper called from another tool function: already inside its caller
        total += ct
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["grpo", "sdl"], default="sdl")
    parser.add_argument("--group", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15, help="also list the top N functions by own time")
    parser.add_argument("--out", type=Path, help="write the raw profiles (.prof) here")
    opts = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
    from genevolve_graph.testing.tiny_models import build_random_qwen3, build_tiny_sentence_transformer, build_tiny_tokenizer
    from genevolve_graph.experience.buffer import ExperienceBuffer
    from genevolve_graph.experience.embedders import SentenceEmbedder
    from genevolve_graph.experience.guides import DecisionGuide
    from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt
    from genevolve_graph.training.trainer import SDLConfig, SDLGRPOTrainer

    torch.manual_seed(0)
    torch.set_num_threads(opts.threads)
    tokenizer = build_tiny_tokenizer()
    model = build_random_qwen3(tokenizer, "tiny", dtype=torch.float32)
    ctx = AgentContext(renderer="none", max_tokens=512)
    dataset = Dataset.from_list([{"prompt": request_prompt(r, ctx)} for r in REQUESTS])
    script = ScriptedPolicyScript(tokenizer, {r: variants(r) for r in REQUESTS})
    rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
    common = dict(
        output_dir=tempfile.mkdtemp(prefix="grpo-profile-"), per_device_train_batch_size=opts.group, num_generations=opts.group,
        max_completion_length=4096, max_steps=opts.warmup + opts.steps, learning_rate=1e-5, logging_steps=1, report_to="none",
        save_strategy="no", dataloader_num_workers=0, use_cpu=True, bf16=False, seed=0, shuffle_dataset=False,
    )
    if opts.kind == "grpo":
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=GRPOConfig(**common), train_dataset=dataset,
                              processing_class=tokenizer, rollout_func=rollout)
    else:
        args = SDLConfig(**common, sdl_coef=0.1, gate=0.84)
        buffer = ExperienceBuffer(SentenceEmbedder(build_tiny_sentence_transformer("static"), name="tiny"), gate=args.gate)
        buffer.add([DecisionGuide.model_validate({
            "retrieval_key": {"trigger": r, "summary": r},
            "decision_guidance": {"tool_plan": ["Search the subject's facts first"], "program_writing": ["Name the facts found"]},
        }) for r in REQUESTS])
        trainer = SDLGRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                                 processing_class=tokenizer, rollout_func=rollout, experience_buffer=buffer)

    main_prof, loop_prof = cProfile.Profile(), cProfile.Profile()
    wall: list[float] = []

    class Profiling(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == opts.warmup:
                rollout._run(_noop())  # make sure the rollout loop exists before enabling its profiler
                rollout._loop.call_soon_threadsafe(loop_prof.enable)
                main_prof.enable()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step > opts.warmup:
                wall.append(time.perf_counter() - self.start)

    async def _noop() -> None:
        return None

    trainer.add_callback(Profiling())
    trainer.train()
    main_prof.disable()
    rollout._run(_noop())
    rollout._loop.call_soon_threadsafe(loop_prof.disable)
    time.sleep(0.2)
    rollout.close()

    stats = {"main": pstats.Stats(main_prof), "loop": pstats.Stats(loop_prof)}
    if opts.out:
        opts.out.mkdir(parents=True, exist_ok=True)
        main_prof.dump_stats(opts.out / f"{opts.kind}-g{opts.group}-train.prof")
        loop_prof.dump_stats(opts.out / f"{opts.kind}-g{opts.group}-rollout.prof")
    steps = len(wall)
    step = sum(wall) / steps
    print(f"{opts.kind.upper()} trainer, group {opts.group}, tiny Qwen3 on the CPU ({opts.threads} threads), "
          f"{steps} profiled steps, {step:.3f} s per step (under cProfile)")
    print(f"{'job':52s} {'s/step':>8s} {'share':>7s}")
    for label, thread, (where, name) in BUCKETS:
        seconds = cumulative(stats[thread], where, name) / steps
        if seconds == 0.0:
            continue
        print(f"{label:52s} {seconds:8.3f} {seconds / step:7.1%}")
    if opts.top:
        for thread in ("main", "loop"):
            print(f"\ntop {opts.top} functions by own time, {'training' if thread == 'main' else 'rollout'} thread:")
            stats[thread].sort_stats("tottime").print_stats(opts.top)


if __name__ == "__main__":
    main()
