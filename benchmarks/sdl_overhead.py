"""SDL overhead: step time and peak memory of SDLGRPOTrainer against plain GRPOTrainer.

Both trainers run the same setup: the same random Qwen3 policy, the same dataset, the same
token-exact rollouts through the agent graph (scripted tool-using replies, so that every
step has <tool_call> and <answer> blocks), the same in-process rewards. The SDL trainer has a
guide for every request in its buffer, so its teacher branch runs on every step (the worst
case); guides are not distilled here (no judge latency in the measurement).

Each trainer runs in its own subprocess, so peak memory is its own: peak CUDA memory
allocated on a GPU, peak resident memory (ru_maxrss) on the CPU. Step time is the mean wall
time of the optimizer steps after the warm-up steps; the trainers run ``--rounds`` times each,
alternated, and the fastest run of each counts (other processes on a shared machine only ever
slow a run down).

Targets (issue 13): an SDL step at most 1.25x a GRPO step, peak memory at most 1.10x, at
groups of 6 and 16.

Where the step goes: each run also reports its step time over its compute time. On a GPU the
compute is the GPU-busy time (the summed kernel time of one extra step traced with
``torch.profiler``, not counted in the step times); on the CPU it is the wall time spent inside
the model's forward calls and the backward passes (hooks on the model, a timer around
``accelerator.backward``). A ratio far above 1 means the step waits on the CPU-side work around
the model (rollouts, tokenisation, masks, retrieval): see ``benchmarks/grpo_profile.py``.

Ablations (``--variants all`` or a comma list of ``training.ablations.STANDARD`` names): each
variant runs as its own trainer (``grpo`` is then ``SDLGRPOTrainer`` with ``sdl_coef: 0``, showing
the subclass's own cost) and is reported as a ratio to plain ``GRPOTrainer``, measured in the same
invocation.

Run:
  python benchmarks/sdl_overhead.py                                 # tiny model, CPU
  python benchmarks/sdl_overhead.py --device cuda --model-size 0.5b  # random 0.5B Qwen3, bf16
  python benchmarks/sdl_overhead.py --variants all --steps 2 --warmup 1 --rounds 1   # every ablation, briefly
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

for _name, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                      "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_name, _value)

REQUESTS = [
    "The Eiffel Tower at dusk as a travel poster with the word PARIS",
    "A red double-decker bus on a rainy London street",
    "Saturn and its rings seen from one of its moons",
    "A ginger tabby cat asleep on a sunny windowsill",
]


def think(text: str, body: str) -> str:
    return f"<think>\n{text}\n</think>\n\n{body}"


def variants(request: str) -> list[list[str]]:
    """Six rollouts per group: tool-using ones of different lengths and quick answers."""
    from genevolve_graph.core.protocol import format_answer, format_tool_call

    subject = request.split(" ")[1:4]
    query = " ".join(subject)
    full = [
        think(f"I need facts about {query}.", format_tool_call("search", {"queries": [query], "top_k": 2})),
        think("Now a reference image.", format_tool_call("image_search", {"query": query, "top_k": 2})),
        think("Write the program.", format_answer({"gen_prompt": f"{request}, matching the first reference image, detailed and accurate",
                                                   "reference_images": [{"img_id": "IMG_001", "note": "shape and colours"}]})),
    ]
    search_only = [full[0], think("Enough.", format_answer({"gen_prompt": f"{request}, with the facts found", "reference_images": []}))]
    quick = [think("Draw it.", format_answer({"gen_prompt": request, "reference_images": []}))]
    return [full, search_only, quick, full, search_only, quick]


def reward(prompts, completions, program, **kwargs):
    """Deterministic, in-process: longer programs with references score higher."""
    out = []
    for p in program:
        if p is None:
            out.append(0.0)
        else:
            out.append(min(1.0, len(p["gen_prompt"]) / 150) * 0.5 + 0.5 * bool(p["reference_images"]))
    return out


def run_one(kind: str, opts: argparse.Namespace) -> dict:
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
    if opts.device == "cpu":
        torch.set_num_threads(opts.threads)
    cuda = opts.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda and opts.model_size != "tiny" else torch.float32
    tokenizer = build_tiny_tokenizer()
    model = build_random_qwen3(tokenizer, opts.model_size, dtype=dtype)
    ctx = AgentContext(renderer="none", max_tokens=512)
    dataset = Dataset.from_list([{"prompt": request_prompt(r, ctx)} for r in REQUESTS])
    script = ScriptedPolicyScript(tokenizer, {r: variants(r) for r in REQUESTS})
    rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
    common = dict(
        output_dir=tempfile.mkdtemp(prefix=f"sdl-bench-{kind}-"), per_device_train_batch_size=opts.group, num_generations=opts.group,
        max_completion_length=opts.max_completion_length, max_steps=opts.warmup + opts.steps + (1 if cuda else 0), learning_rate=1e-5,
        logging_steps=1, report_to="none", save_strategy="no", dataloader_num_workers=0, use_cpu=not cuda,
        bf16=dtype == torch.bfloat16, seed=0, shuffle_dataset=False,
    )
    # both processes build the same objects, so that the CPU's resident-memory baseline is the same
    embedder = SentenceEmbedder(build_tiny_sentence_transformer("static"), name="tiny-static")
    if kind == "plain_grpo":
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=GRPOConfig(**common), train_dataset=dataset,
                              processing_class=tokenizer, rollout_func=rollout)
    else:
        from genevolve_graph.training.ablations import STANDARD

        args = SDLConfig(**common, **{"sdl_coef": 0.1, "gate": 0.84, **STANDARD[kind]})
        buffer = ExperienceBuffer(embedder, gate=args.gate)
        buffer.add([DecisionGuide.model_validate({
            "retrieval_key": {"trigger": r, "summary": r},
            "decision_guidance": {"tool_plan": ["Search the subject's facts first, then fetch one reference image"],
                                  "program_writing": ["Name the facts you found in the prompt"]},
        }) for r in REQUESTS])
        trainer = SDLGRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                                 processing_class=tokenizer, rollout_func=rollout, experience_buffer=buffer)

    times: list[float] = []
    cpu_times: list[float] = []
    compute_times: list[float] = []
    compute = {"s": 0.0, "depth": 0, "start": 0.0}
    last = opts.warmup + opts.steps  # on a GPU one more step runs under torch.profiler for the busy time
    traced: dict[str, float] = {}

    def _enter(*_args, **_kwargs):
        if compute["depth"] == 0:
            compute["start"] = time.perf_counter()
        compute["depth"] += 1

    def _leave(*_args, **_kwargs):
        compute["depth"] -= 1
        if compute["depth"] == 0:
            compute["s"] += time.perf_counter() - compute["start"]

    if not cuda:  # CPU: time inside the model's forward calls and the backward passes
        trainer.model.register_forward_pre_hook(_enter)
        trainer.model.register_forward_hook(_leave)
        backward = trainer.accelerator.backward

        def timed_backward(loss, **kwargs):
            _enter()
            try:
                return backward(loss, **kwargs)
            finally:
                _leave()

        trainer.accelerator.backward = timed_backward

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
                if state.global_step == opts.warmup:
                    torch.cuda.reset_peak_memory_stats()
                if state.global_step == last:
                    self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
                    self.profiler.__enter__()
            compute["s"] = 0.0
            self.start = time.perf_counter()
            self.cpu_start = time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - self.start
            if cuda and state.global_step == last + 1:
                self.profiler.__exit__(None, None, None)
                busy_us = sum(evt.self_device_time_total for evt in self.profiler.key_averages())
                traced.update(step_s=elapsed, gpu_busy_s=busy_us / 1e6)
                return
            times.append(elapsed)
            cpu_times.append(time.process_time() - self.cpu_start)
            compute_times.append(compute["s"])

    trainer.add_callback(Timer())
    _reset_peak_rss()
    trainer.train()
    rollout.close()
    measured = times[opts.warmup :]
    measured_cpu = cpu_times[opts.warmup :]
    measured_compute = compute_times[opts.warmup :]
    logs = [r for r in trainer.state.log_history if "loss" in r]
    result = {
        "kind": kind,
        "step_s": sum(measured) / len(measured),
        "step_cpu_s": sum(measured_cpu) / len(measured_cpu),
        "steps": len(measured),
        "completion_tokens": sum(r.get("completions/mean_length", 0) for r in logs) / max(len(logs), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if cuda:
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["memory"] = "peak CUDA memory allocated"
        result["compute_s"] = traced.get("gpu_busy_s", float("nan"))
        result["compute"] = "GPU-busy time of one traced step"
        result["traced_step_s"] = traced.get("step_s", float("nan"))
    else:
        result["peak_mb"] = _peak_rss_mb()
        result["memory"] = "peak resident memory while training"
        result["compute_s"] = sum(measured_compute) / len(measured_compute)
        result["compute"] = "time in forward + backward"
    if kind != "plain_grpo":
        result["masked_token_share"] = sum(r.get("sdl/masked_token_share", 0) for r in logs) / max(len(logs), 1)
        result["guide_hit_rate"] = sum(r.get("sdl/guide_hit_rate", 0) for r in logs) / max(len(logs), 1)
    return result


def _reset_peak_rss() -> None:
    """Linux: restart the process's resident-memory high-water mark (so setup does not count)."""
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--model-size", default="tiny", choices=["tiny", "0.5b"])
    parser.add_argument("--group", type=int, default=6, help="rollouts per group (= per-device batch)")
    parser.add_argument("--steps", type=int, default=5, help="measured optimizer steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-completion-length", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    parser.add_argument("--rounds", type=int, default=2, help="runs per trainer, alternated; the fastest counts (robust to other load)")
    parser.add_argument("--variants", default="sdl", help="ablation variants to compare with GRPO: a comma list of "
                        "training.ablations.STANDARD names, or all (default: sdl)")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    opts = parser.parse_args()

    if opts.only:
        print(json.dumps(run_one(opts.only, opts)))
        return

    from genevolve_graph.training.ablations import STANDARD

    variants = list(STANDARD) if opts.variants == "all" else [v.strip() for v in opts.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in STANDARD]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(STANDARD)}, all)")
    kinds = ["plain_grpo", *variants]
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for _ in range(opts.rounds):
        for kind in kinds:
            cmd = [sys.executable, __file__, "--only", kind] + list(sys.argv[1:])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"the {kind} run failed")
            runs[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    best = {}
    for kind in kinds:
        r = dict(min(runs[kind], key=lambda x: x["step_s"]))
        r["step_cpu_s"] = min(x["step_cpu_s"] for x in runs[kind])
        r["peak_mb"] = min(x["peak_mb"] for x in runs[kind])
        best[kind] = r
    g = best["plain_grpo"]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"device {opts.device}, model {opts.model_size} ({g['parameters'] / 1e6:.2f}M parameters), group {opts.group}, "
          f"{g['steps']} measured steps, ~{g['completion_tokens']:.0f} sampled tokens per rollout, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"GRPO step  {g['step_s']:.3f} s wall, {g['step_cpu_s']:.3f} s CPU   {g['memory']} {g['peak_mb']:.0f} MiB")
    print(f"{'variant':<18} {'step s':>8} {'time ratio':>10} {'CPU ratio':>9} {'peak MiB':>9} {'mem ratio':>9} {'kept share':>10}")
    for kind in variants:
        s = best[kind]
        print(f"{kind:<18} {s['step_s']:>8.3f} {s['step_s'] / g['step_s']:>10.3f} {s['step_cpu_s'] / g['step_cpu_s']:>9.3f} "
              f"{s['peak_mb']:>9.0f} {s['peak_mb'] / g['peak_mb']:>9.3f} {s.get('masked_token_share', 0.0):>10.3f}")
    for name, r in (("GRPO", g), *((k, best[k]) for k in variants)):
        step = r.get("traced_step_s", r["step_s"]) if opts.device.startswith("cuda") else r["step_s"]
        print(f"{name} step time over {r['compute']}: {step:.3f} s / {r['compute_s']:.3f} s = {step / r['compute_s']:.2f}x")
    if "sdl" in best:
        s = best["sdl"]
        time_ratio, mem_ratio = s["step_s"] / g["step_s"], s["peak_mb"] / g["peak_mb"]
        print(f"SDL guide hit rate {s['guide_hit_rate']:.2f}, masked token share {s['masked_token_share']:.3f}")
        print(f"step time ratio {time_ratio:.3f} (target <= 1.25: {'PASS' if time_ratio <= 1.25 else 'FAIL'})")
        if not opts.device.startswith("cuda"):
            print(f"step CPU-time ratio {s['step_cpu_s'] / g['step_cpu_s']:.3f} (less sensitive to other processes on a shared machine)")
        print(f"memory ratio    {mem_ratio:.3f} (target <= 1.10: {'PASS' if mem_ratio <= 1.10 else 'FAIL'})")


if __name__ == "__main__":
    main()
