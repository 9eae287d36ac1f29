"""Start-up checks of the TRL internals the SDL trainer relies on (issue 13 item 5)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from datasets import Dataset
from trl import GRPOTrainer

from genevolve_graph.testing.tiny_models import build_tiny_causal_lm
from genevolve_graph.training import trl_compat
from genevolve_graph.experience.buffer import ExperienceBuffer
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.training.trainer import SDLConfig, SDLGRPOTrainer

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_trl_passes_every_probe():
    assert trl_compat.version_problem() is None
    assert trl_compat.method_problems() == []


def test_the_pin_in_pyproject_is_the_tested_range():
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = [Requirement(dep) for deps in extras.values() for dep in deps if Requirement(dep).name == "trl"]
    assert len(pins) == 2  # sft (and through it train), vllm
    assert all(pin.specifier == SpecifierSet(trl_compat.TESTED_TRL) for pin in pins)
    assert "trl" + trl_compat.TESTED_TRL in (ROOT / "docs" / "training.md").read_text()


def test_versions_outside_the_tested_range_are_named():
    assert trl_compat.version_problem("1.16.3") is None
    assert "TRL 1.17.0 is installed" in trl_compat.version_problem("1.17.0")
    assert trl_compat.version_problem("1.15.2") is not None


def test_a_changed_internal_is_reported_not_silently_used():
    class Reworked(GRPOTrainer):
        """What a TRL release could do: another reward signature, two log-prob forwards in the loss."""

        def _calculate_rewards(self, inputs, prompts, completions):
            return None

        def _compute_loss(self, model, inputs):
            student = self._get_per_token_logps_and_entropies(model, inputs["ids"], inputs["mask"], 4)
            again = self._get_per_token_logps_and_entropies(model, inputs["ids"], inputs["mask"], 4)
            return student, again

        def _generate(self, prompts):
            return self.rollout_func(prompts)

    problems = trl_compat.method_problems(Reworked)
    assert any("_calculate_rewards" in p for p in problems)
    assert any("calls _get_per_token_logps_and_entropies 2 times" in p for p in problems)
    assert any("no longer calls rollout_func(prompts, trainer)" in p for p in problems)
    assert any("env_mask" in p for p in problems)


def test_the_fused_head_probe_tells_a_patched_model_from_a_plain_one(tiny_tokenizer):
    from trl.trainer.utils import add_fused_lm_head

    model = build_tiny_causal_lm(tiny_tokenizer)
    assert "fused_lm_head" in trl_compat.fused_head_problem(model)
    add_fused_lm_head(model)
    assert trl_compat.fused_head_problem(model) is None


def _build(tmp_path, tokenizer, embedder) -> SDLGRPOTrainer:
    args = SDLConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, num_generations=2, max_steps=1,
                     report_to="none", use_cpu=True, bf16=False, save_strategy="no", buffer_dir=str(tmp_path / "buf"))
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": "a red fox"}]}])
    return SDLGRPOTrainer(model=build_tiny_causal_lm(tokenizer), reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                          args=args, train_dataset=dataset, processing_class=tokenizer,
                          experience_buffer=ExperienceBuffer(SentenceEmbedder(embedder, name="tiny")))


def test_the_trainer_refuses_to_start_on_an_untested_trl_unless_asked(tmp_path, tiny_tokenizer, tiny_embedder, monkeypatch):
    monkeypatch.setattr(trl_compat, "trl_version", lambda: "1.18.0")
    monkeypatch.delenv(trl_compat.ALLOW_UNTESTED_ENV, raising=False)
    with pytest.raises(trl_compat.TRLCompatibilityError, match=r"TRL 1\.18\.0 is installed .* GENEVOLVE_ALLOW_UNTESTED_TRL=1"):
        _build(tmp_path, tiny_tokenizer, tiny_embedder)
    monkeypatch.setenv(trl_compat.ALLOW_UNTESTED_ENV, "1")
    trainer = _build(tmp_path, tiny_tokenizer, tiny_embedder)  # opted in: the probes pass on the real internals
    assert trainer.sdl_enabled


def test_the_batch_keys_sdl_reads_are_probed_at_start_up():
    """Issue 23 item 4: a TRL that renames the importance-sampling keys used to run with the
    SDL importance weight silently at 1; now the start-up probe names each key."""
    assert trl_compat.batch_key_problems_static() == []

    class Renamed(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            output = {}
            output["old_logps"] = None
            output["is_ratio"] = None
            output["tool_mask"] = None
            return output

    problems = trl_compat.batch_key_problems_static(Renamed)
    assert len(problems) == 2
    assert "'old_per_token_logps'" in problems[0] and "'importance_sampling_ratio'" in problems[1]


def test_the_first_batch_must_hold_the_keys_this_configuration_makes_trl_compute():
    from types import SimpleNamespace

    def trainer(ga=1, spg=1, iterations=1, vllm=False):
        return SimpleNamespace(args=SimpleNamespace(gradient_accumulation_steps=ga, steps_per_generation=spg), num_iterations=iterations,
                               use_vllm=vllm, vllm_importance_sampling_correction=True)

    assert trl_compat.expected_batch_keys(trainer(), env_mask=False) == []
    assert trl_compat.expected_batch_keys(trainer(iterations=2), env_mask=True) == ["old_per_token_logps", "tool_mask"]
    assert trl_compat.expected_batch_keys(trainer(vllm=True), env_mask=False) == ["old_per_token_logps", "importance_sampling_ratio"]
    problems = trl_compat.batch_key_problems(trainer(vllm=True), {"old_per_token_logps": 1, "is_ratio": 2}, env_mask=True)
    assert [p.split("'")[1] for p in problems] == ["importance_sampling_ratio", "tool_mask"]


def test_a_missing_batch_key_stops_the_first_step(tmp_path, tiny_tokenizer, tiny_embedder):
    """A real SDL step whose TRL batch lost ``tool_mask`` fails loudly at the first step."""
    from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
    from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt

    from .helpers import FOX, fox_good, make_context

    class Dropped(SDLGRPOTrainer):
        def _attach_images(self, output):  # runs right after TRL built the batch
            output.pop("tool_mask", None)
            super()._attach_images(output)

    ctx = make_context(tmp_path / "agent")
    rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(ScriptedPolicyScript(tiny_tokenizer, {"red fox": [fox_good()]})))
    args = SDLConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, num_generations=2, max_completion_length=1024,
                     max_steps=1, report_to="none", use_cpu=True, bf16=False, save_strategy="no", sdl_coef=0.5)
    trainer = Dropped(model=build_tiny_causal_lm(tiny_tokenizer), reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                      args=args, train_dataset=Dataset.from_list([{"prompt": request_prompt(FOX, ctx)}]), processing_class=tiny_tokenizer,
                      rollout_func=rollout, experience_buffer=ExperienceBuffer(SentenceEmbedder(tiny_embedder, name="tiny")))
    try:
        with pytest.raises(trl_compat.TRLCompatibilityError, match="no 'tool_mask'"):
            trainer.train()
    finally:
        rollout.close()
