"""From parsed arguments to a ready ``SDLGRPOTrainer`` (used by ``train grpo`` and notebooks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genevolve_graph.training.config import ConfigError, JudgesSettings, TrainConfig
from genevolve_graph.training.grpo_args import GRPORun, run_from_train_config


def build_trainer(config: TrainConfig, **overrides: Any):
    """Everything a run needs, from a nested :class:`TrainConfig` (``overrides``: GRPOConfig fields)."""
    return build_grpo_trainer(run_from_train_config(config, **overrides))


def agent_context(run: GRPORun):
    """The agent settings of the rollouts (protocol ``genevolve``, the run's renderer)."""
    from genevolve_graph.core.context import AgentContext

    g = run.genevolve
    try:
        TrainConfig._agent_fields(g.agent)
    except ValueError as exc:
        raise ConfigError(f"agent: {exc}") from None
    values = dict(g.agent)
    values.update(protocol="genevolve", renderer=g.renderer, options={**values.get("options", {}), **g.renderer_options}, seed=g.renderer_seed)
    return AgentContext(**values)


def judges(run: GRPORun) -> JudgesSettings:
    from pydantic import ValidationError

    try:
        return JudgesSettings.model_validate(run.genevolve.judges)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"judges.{where}: {first['msg']}") from None


def _processing_class(model_ref: str):
    """A vision-language policy's processor (it renders image observations with its own image
    tokens), else the tokenizer; left padding for generation either way."""
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    if getattr(AutoConfig.from_pretrained(model_ref), "vision_config", None) is not None:
        processor = AutoProcessor.from_pretrained(model_ref)
        processor.tokenizer.padding_side = "left"
        return processor
    return AutoTokenizer.from_pretrained(model_ref, padding_side="left")


def build_grpo_trainer(run: GRPORun):
    """An ``SDLGRPOTrainer`` for ``run``: policy, tokenizer, data, rewards, rollouts, distiller, eval."""
    from trl import get_peft_config

    from genevolve_graph.generators.registry import make_renderer
    from genevolve_graph.training.data import build_dataset, read_rows
    from genevolve_graph.training.distill import make_distiller
    from genevolve_graph.training.rewards import GenEvolveRewards
    from genevolve_graph.training.rollout import GenEvolveRollout
    from genevolve_graph.training.trainer import SDLGRPOTrainer

    args, model_args, g = run.args, run.model_args, run.genevolve
    init_kwargs: dict[str, Any] = {"dtype": model_args.dtype}
    if model_args.attn_implementation:
        init_kwargs["attn_implementation"] = model_args.attn_implementation
    if getattr(model_args, "model_revision", "main") != "main":
        init_kwargs["revision"] = model_args.model_revision
    args.model_init_kwargs = {**init_kwargs, **(args.model_init_kwargs or {})}
    ctx = agent_context(run)
    data_path = Path(g.data_path)
    rows = read_rows(data_path, Path(g.data_root) if g.data_root else None, limit=g.data_limit)
    dataset = build_dataset(rows, ctx)

    model_ref = model_args.model_name_or_path
    try:
        tokenizer = _processing_class(model_ref)
    except OSError as exc:
        raise OSError(f"cannot load the tokenizer of model {model_ref!r}: {exc}") from None
    text_tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    if text_tokenizer.pad_token is None:
        text_tokenizer.pad_token = text_tokenizer.eos_token

    image, text, distiller = judges(run).resolved()
    rewards = GenEvolveRewards(
        renderer=make_renderer(ctx),
        image_judge=image.client(),
        text_judge=text.client(),
        image_dir=Path(args.output_dir) / "renders",
        max_concurrency=g.renderer_max_concurrency,
        text_uses_ground_truth=judges(run).text_uses_ground_truth,
        seed=g.renderer_seed,
    )
    rollout = GenEvolveRollout(ctx, max_concurrency=g.rollout_max_concurrency)
    from genevolve_graph.training.extra_rewards import reward_setup

    reward_funcs, args.reward_weights = reward_setup(rewards.reward_funcs(), args.reward_weights, g.extra_reward_funcs, g.extra_reward_weights)
    callbacks = []
    if g.kscore_eval_path and g.kscore_eval_steps:
        from genevolve_graph.training.evaluation import KScoreEvalCallback

        eval_rows = read_rows(Path(g.kscore_eval_path), Path(g.data_root) if g.data_root else None, limit=g.kscore_eval_limit)
        callbacks.append(KScoreEvalCallback(build_dataset(eval_rows, ctx), rollout=rollout, rewards=rewards, every=g.kscore_eval_steps,
                                            at_start=g.kscore_eval_at_start, at_end=g.kscore_eval_at_end))
    trainer = SDLGRPOTrainer(
        model=model_ref,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        rollout_func=rollout,
        peft_config=get_peft_config(model_args),
        distiller=make_distiller(distiller.client(), judges(run).distiller_kind) if args.sdl_coef > 0 else None,
        render_lookup=rewards.render_of,
        callbacks=callbacks or None,
    )
    for callback in callbacks:
        callback.bind(trainer)
    return trainer


__all__ = ["agent_context", "build_grpo_trainer", "build_trainer", "judges"]
