"""From a training config to a ready ``SDLGRPOTrainer`` (used by ``train grpo`` and notebooks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genevolve_graph.training.config import TrainConfig


def build_trainer(config: TrainConfig, **overrides: Any):
    """Everything a run needs, built from ``config`` (``overrides``: GRPOConfig fields)."""
    from transformers import AutoTokenizer

    from genevolve_graph.generators.registry import make_renderer
    from genevolve_graph.training.data import build_dataset, read_rows
    from genevolve_graph.training.guides import make_distiller
    from genevolve_graph.training.rewards import GenEvolveRewards
    from genevolve_graph.training.rollout import GenEvolveRollout
    from genevolve_graph.training.trainer import SDLGRPOTrainer

    init_kwargs: dict[str, Any] = {"dtype": config.model.dtype}
    if config.model.attn_implementation:
        init_kwargs["attn_implementation"] = config.model.attn_implementation
    overrides.setdefault("model_init_kwargs", {**init_kwargs, **(config.grpo.get("model_init_kwargs") or {})})
    args = config.sdl_config(**overrides)
    ctx = config.agent_context()
    rows = read_rows(config.path(config.data.path), config.path(config.data.root), limit=config.data.limit)
    dataset = build_dataset(rows, ctx)

    model_ref = config.model_ref(config.model.name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_ref, padding_side="left")
    except OSError as exc:
        raise OSError(f"cannot load the tokenizer of model {model_ref!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    peft_config = None
    if config.model.lora is not None:
        from peft import LoraConfig

        lora = config.model.lora
        peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules, task_type="CAUSAL_LM")

    image, text, distiller = config.judges.resolved()
    rewards = GenEvolveRewards(
        renderer=make_renderer(ctx),
        image_judge=image.client(),
        text_judge=text.client(),
        image_dir=Path(args.output_dir) / "renders",
        max_concurrency=config.renderer.max_concurrency,
        text_uses_ground_truth=config.judges.text_uses_ground_truth,
        seed=config.renderer.seed,
    )
    rollout = GenEvolveRollout(ctx, max_concurrency=config.rollout.max_concurrency)
    return SDLGRPOTrainer(
        model=model_ref,
        reward_funcs=rewards.reward_funcs(),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        rollout_func=rollout,
        peft_config=peft_config,
        distiller=make_distiller(distiller.client(), config.judges.distiller_kind) if config.sdl.enabled else None,
        render_lookup=rewards.render_of,
    )
