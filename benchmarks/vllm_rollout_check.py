"""vLLM-backed GenEvolve rollouts on a GPU: colocated in a real GRPO step, and through serve-policy.

Two checks on a random 0.5B Qwen3 (the tiny byte-level tokenizer, so it loads offline), saved
to a temporary folder so that vLLM can load it:

* ``colocate``: ``SDLGRPOTrainer`` with ``use_vllm=True, vllm_mode="colocate"``: TRL builds the
  in-process ``vllm.LLM`` and syncs the weights before each rollout; the rollouts run the agent
  graph through ``ColocatedVLLMGenerator``. Two optimizer steps; checks that the rollouts came
  from vLLM with log-probs, that the parameters moved and that no rollout failed.
* ``server``: ``genevolve-graph serve-policy MODEL --for-training`` (the same command line,
  started as a subprocess), then a group of rollouts through ``CompletionsGenerator`` with
  token-id prompts; checks the sampled ids and log-probs came back for every turn.

Prints one JSON line per check and exits 1 when one fails. Needs ``pip install
'genevolve-graph[vllm]'`` (Linux, CUDA).

Run:
  python benchmarks/vllm_rollout_check.py [--checks colocate,server] [--max-model-len 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

for _name, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                      "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_name, _value)

from sdl_overhead import REQUESTS, reward  # noqa: E402  (the same in-process reward)


def save_policy(folder: Path) -> Path:
    """A random 0.5B Qwen3 with the tiny tokenizer, saved as a model folder vLLM can load."""
    import torch

    from genevolve_graph.testing.tiny_models import build_random_qwen3, build_tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    model = build_random_qwen3(tokenizer, "0.5b", dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def check_colocate(model_dir: Path, opts: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset

    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.training.generation.colocate import ColocatedVLLMGenerator
    from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt
    from genevolve_graph.training.trainer import SDLConfig, SDLGRPOTrainer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    ctx = AgentContext(renderer="none", max_tokens=256, max_rounds=3)
    dataset = Dataset.from_list([{"prompt": request_prompt(r, ctx)} for r in REQUESTS[:2]])
    rollout = GenEvolveRollout(ctx)
    args = SDLConfig(
        output_dir=tempfile.mkdtemp(prefix="vllm-colocate-"), per_device_train_batch_size=opts.group, num_generations=opts.group,
        max_completion_length=1024, max_steps=2, learning_rate=1e-5, logging_steps=1, report_to="none", save_strategy="no",
        dataloader_num_workers=0, bf16=True, seed=0, sdl_coef=0.0, use_vllm=True, vllm_mode="colocate",
        vllm_gpu_memory_utilization=opts.gpu_memory_utilization, vllm_max_model_length=opts.max_model_len,
        model_init_kwargs={"dtype": "bfloat16"},
    )
    trainer = SDLGRPOTrainer(model=str(model_dir), reward_funcs=reward, args=args, train_dataset=dataset,
                             processing_class=tokenizer, rollout_func=rollout)
    before = {n: p.detach().float().clone() for n, p in trainer.model.named_parameters()}
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    rollout.close()
    results = rollout.last_results
    changed = sum(not torch.equal(before[n], p.detach().float()) for n, p in trainer.model.named_parameters())
    tokens = sum(sum(r.env_mask) for r in results)
    out = {
        "check": "colocate",
        "backend": type(rollout.generator).__name__,
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 2),
        "rollouts_last_step": len(results),
        "sampled_tokens_last_step": tokens,
        "failed": sum(r.failed for r in results),
        "with_logprobs": all(r.logprobs is not None for r in results),
        "changed_tensors": changed,
        "tensors": len(before),
    }
    out["ok"] = (isinstance(rollout.generator, ColocatedVLLMGenerator) and out["steps"] == 2 and out["failed"] == 0
                 and out["with_logprobs"] and changed > 0 and tokens > 0)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_server(model_dir: Path, opts: argparse.Namespace) -> dict:
    import httpx

    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.cli.serve_policy import ServeSettings
    from genevolve_graph.training.generation import CompletionsGenerator
    from genevolve_graph.training.rollout import GenEvolveRollout
    from transformers import AutoTokenizer

    settings = ServeSettings(model=str(model_dir), host="127.0.0.1", port=_free_port(), max_model_len=opts.max_model_len,
                             gpu_memory_utilization=opts.gpu_memory_utilization, for_training=True, extra_args=["--enforce-eager"])
    env = {**os.environ, **settings.environment()}
    log = open(Path(tempfile.gettempdir()) / "vllm-serve-check.log", "w")
    cmd = [sys.executable, "-m", "genevolve_graph.cli", "serve-policy", str(model_dir), "--host", "127.0.0.1", "--port", str(settings.port),
           "--max-model-len", str(opts.max_model_len), "--gpu-memory-utilization", str(opts.gpu_memory_utilization), "--for-training",
           "--enforce-eager"]
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        deadline = time.time() + opts.server_timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"serve-policy exited with {server.returncode}; see {log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{settings.port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"the vLLM server did not come up in {opts.server_timeout} s; see {log.name}")
            time.sleep(2)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        ctx = AgentContext(renderer="none", max_tokens=256, max_rounds=3)
        rollout = GenEvolveRollout(ctx)
        generator = CompletionsGenerator(settings.base_url(), max_retries=1)
        start = time.perf_counter()
        results = rollout.run([REQUESTS[0]] * opts.group, tokenizer=tokenizer, generator=generator, max_completion_length=1024)
        seconds = time.perf_counter() - start
        rollout.close()
        out = {
            "check": "server",
            "base_url": settings.base_url(),
            "seconds": round(seconds, 2),
            "rollouts": len(results),
            "turns": sum(max(r.rounds, 1) for r in results),
            "sampled_tokens": sum(sum(r.env_mask) for r in results),
            "failed": sum(r.failed for r in results),
            "errors": sorted({r.error for r in results if r.failed})[:3],
            "with_logprobs": all(r.logprobs is not None for r in results),
        }
        out["ok"] = out["failed"] == 0 and out["with_logprobs"] and out["sampled_tokens"] > 0
        return out
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", default="colocate,server")
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    parser.add_argument("--server-timeout", type=float, default=420)
    opts = parser.parse_args()
    model_dir = save_policy(Path(tempfile.mkdtemp(prefix="vllm-policy-")))
    ok = True
    for name in [c.strip() for c in opts.checks.split(",") if c.strip()]:
        try:
            result = {"colocate": check_colocate, "server": check_server}[name](model_dir, opts)
        except Exception as exc:  # noqa: BLE001 - reported, and the script exits 1
            result = {"check": name, "ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        ok = ok and bool(result.get("ok"))
        print(json.dumps(result), flush=True)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
