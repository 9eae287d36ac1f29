"""The TRL internals the SDL trainer relies on, checked once when it starts.

TRL offers no public hook for a loss that needs a second forward of the same model on another
prompt with the same completion (notes/trl.md §3), so ``SDLGRPOTrainer`` overrides a few private
methods of ``GRPOTrainer`` and reads a few private attributes. Where a public hook exists the
trainer uses it (``rollout_func`` and its extra fields, reward functions, ``add_fused_lm_head``);
for the rest, a TRL release that renames or reorders them would not fail: it would silently train
without SDL, or with the wrong log-probs. So at start-up:

* the installed TRL must be in :data:`TESTED_TRL` (the pin of the ``sft``/``train`` extras), or the
  user must opt in to an untested one (``GENEVOLVE_ALLOW_UNTESTED_TRL=1``); even then
* every probe below must pass: the batch keys the SDL term reads (``old_per_token_logps``,
  ``importance_sampling_ratio``, ``tool_mask``: written by ``_generate_and_score_completions`` and
  read by ``_compute_loss``; renamed, the importance weight would silently become 1 and tool
  tokens would enter the term), the signatures of the overridden methods, the one call of
  ``_get_per_token_logps_and_entropies`` inside ``_compute_loss`` (the student forward the trainer
  captures), the ``rollout_func`` call and its ``env_mask`` in ``_generate``, the attributes read,
  and the fused LM head on the model (``fused_lm_head=True`` returning ``log_probs``).

A failure names every problem at once and says what to do (pin TRL, or update the trainer).
At the first generation batch :func:`batch_key_problems` checks the keys again on the real batch:
present whenever this configuration makes TRL compute them.
"""

from __future__ import annotations

import inspect
import os
import re
from typing import Any

TESTED_TRL = ">=1.16.0,<1.17"
"""TRL versions whose internals the trainer was written against (keep in step with pyproject.toml)."""

ALLOW_UNTESTED_ENV = "GENEVOLVE_ALLOW_UNTESTED_TRL"


class TRLCompatibilityError(RuntimeError):
    """The installed TRL does not have the internals the SDL trainer relies on."""


def trl_version() -> str:
    import trl

    return str(trl.__version__)


def version_problem(version: str | None = None) -> str | None:
    """None when ``version`` (default: the installed TRL) is in :data:`TESTED_TRL`."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    version = version or trl_version()
    if Version(version) in SpecifierSet(TESTED_TRL):
        return None
    return f"TRL {version} is installed but the SDL trainer was written against TRL {TESTED_TRL}"


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def _calls(func: Any, name: str) -> int:
    source = inspect.getsource(func)
    return len(re.findall(rf"self\.{re.escape(name)}\(", source))


def method_problems(cls: type | None = None) -> list[str]:
    """What the overridden / called ``GRPOTrainer`` methods must look like (static probes)."""
    if cls is None:
        from trl import GRPOTrainer as cls  # noqa: N813

    problems: list[str] = []
    expected = {
        "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
        "_generate_and_score_completions": ["self", "inputs"],
        "_compute_loss": ["self", "model", "inputs"],
        "_generate": ["self", "prompts"],
    }
    for name, params in expected.items():
        func = getattr(cls, name, None)
        if func is None:
            problems.append(f"GRPOTrainer.{name} is gone")
        elif _params(func) != params:
            problems.append(f"GRPOTrainer.{name}{inspect.signature(func)} no longer takes ({', '.join(params)})")
    logps = getattr(cls, "_get_per_token_logps_and_entropies", None)
    head = ["self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size"]
    if logps is None:
        problems.append("GRPOTrainer._get_per_token_logps_and_entropies is gone")
    elif _params(logps)[: len(head)] != head:
        problems.append(f"GRPOTrainer._get_per_token_logps_and_entropies{inspect.signature(logps)} changed its leading arguments")
    compute_loss = getattr(cls, "_compute_loss", None)
    if compute_loss is not None and logps is not None:
        n = _calls(compute_loss, "_get_per_token_logps_and_entropies")
        if n != 1:
            problems.append(
                f"GRPOTrainer._compute_loss calls _get_per_token_logps_and_entropies {n} times, not once: "
                "the SDL trainer captures the student's log-probs from that one call"
            )
    generate = getattr(cls, "_generate", None)
    if generate is not None:
        source = inspect.getsource(generate)
        if "self.rollout_func(prompts, self)" not in source:
            problems.append("GRPOTrainer._generate no longer calls rollout_func(prompts, trainer)")
        if '"env_mask"' not in source:
            problems.append("GRPOTrainer._generate no longer reads env_mask from rollout_func (tool responses would enter the loss)")
    return problems


SDL_BATCH_KEYS = ("old_per_token_logps", "importance_sampling_ratio", "tool_mask")
"""Keys of TRL's generation batch that the SDL term reads (the importance weight, the model-token mask)."""


def batch_key_problems_static(cls: type | None = None) -> list[str]:
    """TRL still writes each of :data:`SDL_BATCH_KEYS` into the batch and reads it in its loss."""
    if cls is None:
        from trl import GRPOTrainer as cls  # noqa: N813

    problems: list[str] = []
    score = getattr(cls, "_generate_and_score_completions", None)
    loss = getattr(cls, "_compute_loss", None)
    if score is None or loss is None:
        return problems  # reported by method_problems
    written, read = inspect.getsource(score), inspect.getsource(loss)
    for key in SDL_BATCH_KEYS:
        if f'output["{key}"]' not in written:
            problems.append(f"GRPOTrainer._generate_and_score_completions no longer writes the batch key {key!r}, which the SDL term reads")
        elif f'"{key}"' not in read:
            problems.append(f"GRPOTrainer._compute_loss no longer reads the batch key {key!r}: its meaning may have changed")
    return problems


def expected_batch_keys(trainer: Any, *, env_mask: bool) -> list[str]:
    """The :data:`SDL_BATCH_KEYS` TRL 1.16 puts in the batch under this trainer's settings
    (``env_mask``: the rollout returned one)."""
    args = trainer.args
    vllm_is = bool(getattr(trainer, "use_vllm", False) and getattr(trainer, "vllm_importance_sampling_correction", False))
    generate_every = args.steps_per_generation * trainer.num_iterations
    keys = []
    if args.gradient_accumulation_steps % generate_every != 0 or vllm_is:
        keys.append("old_per_token_logps")
    if vllm_is:
        keys.append("importance_sampling_ratio")
    if env_mask:
        keys.append("tool_mask")
    return keys


def batch_key_problems(trainer: Any, batch: dict[str, Any], *, env_mask: bool) -> list[str]:
    """The expected SDL batch keys missing from a real generation batch."""
    return [
        f"the generation batch has no {key!r} although this configuration makes TRL compute it (renamed in this TRL?)"
        for key in expected_batch_keys(trainer, env_mask=env_mask) if key not in batch
    ]


INSTANCE_ATTRIBUTES = ("_metrics", "_tokenizer", "reward_weights", "reward_func_names", "chat_template_kwargs", "num_generations", "rollout_func",
                       "num_iterations", "use_vllm", "vllm_importance_sampling_correction")


def instance_problems(trainer: Any) -> list[str]:
    """Attributes the trainer reads, and the fused LM head it calls, on a built ``GRPOTrainer``."""
    problems = [f"GRPOTrainer no longer sets self.{name}" for name in INSTANCE_ATTRIBUTES if not hasattr(trainer, name)]
    metrics = getattr(trainer, "_metrics", None)
    if metrics is not None and not (isinstance(metrics, dict) and {"train", "eval"} <= set(metrics)):
        problems.append("GRPOTrainer._metrics is no longer a {'train': ..., 'eval': ...} dict of lists")
    model = trainer.accelerator.unwrap_model(trainer.model) if hasattr(trainer, "accelerator") else trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    problem = fused_head_problem(base)
    if problem:
        problems.append(problem)
    return problems


def fused_head_problem(model: Any) -> str | None:
    """None when ``model.forward`` is TRL's fused-head forward (``fused_lm_head=True`` -> ``log_probs``)."""
    forward = getattr(model, "forward", None)
    func = getattr(forward, "__func__", forward)
    try:
        params = inspect.signature(func, follow_wrapped=False).parameters
    except (TypeError, ValueError):
        params = {}
    if "fused_lm_head" not in params:
        return (
            f"{type(model).__name__}.forward takes no fused_lm_head argument: GRPOTrainer no longer patches the model "
            "with trl.trainer.utils.add_fused_lm_head, which the teacher forward uses"
        )
    return None


def check_grpo_trainer(trainer: Any) -> None:
    """Raise :class:`TRLCompatibilityError` naming every problem, or return quietly."""
    problems = method_problems() + batch_key_problems_static() + instance_problems(trainer)
    version = version_problem()
    allow = os.environ.get(ALLOW_UNTESTED_ENV, "") not in ("", "0", "false", "False")
    if version and not allow:
        problems.insert(0, version + f" (set {ALLOW_UNTESTED_ENV}=1 to try it; the probes below still apply)")
    if problems:
        raise TRLCompatibilityError(
            "the SDL trainer cannot run on this TRL: " + "; ".join(problems)
            + f". Install a tested TRL (pip install 'trl{TESTED_TRL}') or update genevolve_graph/training/trainer.py"
        )


__all__ = [
    "ALLOW_UNTESTED_ENV",
    "TESTED_TRL",
    "SDL_BATCH_KEYS",
    "TRLCompatibilityError",
    "batch_key_problems",
    "batch_key_problems_static",
    "check_grpo_trainer",
    "expected_batch_keys",
    "fused_head_problem",
    "instance_problems",
    "method_problems",
    "version_problem",
]
