"""Ablations and baselines from one YAML (issue 23 item 8): the variants parse to the fields they
name (TRL's GRPOConfig fields pass through), and each standard variant runs a real step on the
tiny Qwen3 with scripted tool-using rollouts and a guide for every request."""

from __future__ import annotations

import pytest
import yaml
from datasets import Dataset

from genevolve_graph.experience.buffer import ExperienceBuffer
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.experience.guides import DecisionGuide
from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
from genevolve_graph.testing.tiny_models import build_tiny_causal_lm
from genevolve_graph.training.ablations import STANDARD
from genevolve_graph.training.config import ConfigError
from genevolve_graph.training.grpo_args import parse_grpo_args
from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt
from genevolve_graph.training.trainer import SDLGRPOTrainer

from .helpers import FOX, fox_good, fox_poor, fox_skill, make_context, tiny_sdl_config


def _config(tmp_path, ablations) -> object:
    path = tmp_path / "ablate.yaml"
    path.write_text(yaml.safe_dump({
        "model_name_or_path": "Qwen/Qwen3-0.6B", "data_path": "rl.jsonl", "judges": {"image": {"base_url": "http://127.0.0.1:9/v1", "model": "j"}},
        "output_dir": "runs/ablate", "use_cpu": True, "bf16": False, "top_k_fraction": 0.1, "ablations": ablations,
    }))
    return path


def test_every_variant_of_one_yaml_parses_to_its_fields(tmp_path):
    path = _config(tmp_path, "standard")
    runs = {name: parse_grpo_args([], path, ablation=name) for name in STANDARD}
    assert runs["grpo"].args.sdl_coef == 0.0 and runs["sdl"].args.sdl_coef == 0.1
    assert runs["sdl"].args.sdl_decision_mask is True and runs["sdl"].args.top_k_fraction == 0.1
    assert runs["sdl_all_tokens"].args.sdl_decision_mask is False and runs["sdl_all_tokens"].args.top_k_fraction == 0.1
    assert runs["sdl_top25"].args.top_k_fraction == 0.25
    assert runs["full_sequence_sd"].args.sdl_decision_mask is False and runs["full_sequence_sd"].args.top_k_fraction == 1.0
    assert {name: run.args.output_dir for name, run in runs.items()} == {name: str(tmp_path / "runs" / "ablate" / name) for name in STANDARD}

    custom = _config(tmp_path, {"dr_grpo": {"sdl_coef": 0, "loss_type": "dr_grpo", "scale_rewards": "none"}, "sdl": None})
    dr = parse_grpo_args(["--learning_rate", "2e-6"], custom, ablation="dr_grpo")
    assert dr.args.loss_type == "dr_grpo" and dr.args.scale_rewards == "none" and dr.args.learning_rate == 2e-6  # GRPOConfig passes through
    assert parse_grpo_args([], custom, ablation="sdl").args.sdl_coef == 0.1  # a standard name without fields
    with pytest.raises(ConfigError, match=r"--ablation sdl_top5: no such variant .*\(variants: dr_grpo, sdl\)"):
        parse_grpo_args([], custom, ablation="sdl_top5")
    with pytest.raises(ConfigError, match="'ablations' must be 'standard' or a mapping"):
        parse_grpo_args([], _config(tmp_path, ["grpo"]), ablation="grpo")


@pytest.fixture(scope="module")
def guide_buffer(tiny_embedder):
    buffer = ExperienceBuffer(SentenceEmbedder(tiny_embedder, name="tiny"), gate=0.5)
    buffer.add(DecisionGuide.model_validate({
        "retrieval_key": {"trigger": "animal in snow", "summary": FOX},
        "decision_guidance": {"tool_plan": ["Search the fur colours first, then fetch one reference image"]},
    }))
    return buffer


def _reward(prompts, completions, program, **kwargs):
    return [0.0 if p is None else min(1.0, len(p["gen_prompt"]) / 100) for p in program]


@pytest.mark.parametrize("variant", list(STANDARD))
def test_each_standard_variant_runs_a_step(variant, tmp_path, tiny_tokenizer, guide_buffer):
    ctx = make_context(tmp_path / "agent")
    script = ScriptedPolicyScript(tiny_tokenizer, {"red fox": [fox_good(), fox_poor(), fox_skill()]})
    rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
    fields = {"sdl_coef": 0.5, "gate": 0.5, **STANDARD[variant]}
    args = tiny_sdl_config(tmp_path / "out", max_steps=1, **fields)
    trainer = SDLGRPOTrainer(model=build_tiny_causal_lm(tiny_tokenizer), reward_funcs=_reward, args=args,
                             train_dataset=Dataset.from_list([{"prompt": request_prompt(FOX, ctx)}]), processing_class=tiny_tokenizer,
                             rollout_func=rollout, experience_buffer=guide_buffer)
    try:
        trainer.train()
    finally:
        rollout.close()
    (log,) = [rec for rec in trainer.state.log_history if "loss" in rec]
    assert trainer.state.global_step == 1
    if variant == "grpo":
        assert not any(k.startswith("sdl/") for k in log)  # no teacher at all
        return
    assert log["sdl/guide_hit_rate"] == 1.0 and log["sdl/active_rows"] == 3.0 and log["sdl/loss"] != 0.0
    kept, decisions = log["sdl/masked_token_share"], log["sdl/decision_token_share"]
    if variant in ("sdl", "sdl_top25"):
        assert 0.0 < kept < decisions < 1.0
        assert kept == pytest.approx(decisions * args.top_k_fraction, rel=0.35)  # ceil per sequence
    elif variant == "sdl_all_tokens":
        assert decisions == 1.0 and kept == pytest.approx(0.1, rel=0.35)
    else:  # full_sequence_sd: reverse KL on every token the policy wrote
        assert decisions == 1.0 and kept == 1.0
