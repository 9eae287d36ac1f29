"""Real SDLGRPOTrainer steps on a tiny Qwen3: scripted tool-using rollouts through the agent
graph, the preview renderer, and the judges and distiller behind an HTTP server on 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from genevolve_graph.evaluation.judge_client import JudgeClient
from genevolve_graph.generators.preview import PreviewRenderer
from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
from genevolve_graph.testing.tiny_models import build_tiny_causal_lm
from genevolve_graph.experience.buffer import ExperienceBuffer
from genevolve_graph.experience.embedders import SentenceEmbedder
from genevolve_graph.training.distill import VisualGuideDistiller
from genevolve_graph.training.rewards import GenEvolveRewards
from genevolve_graph.training.rollout import GenEvolveRollout, request_prompt
from genevolve_graph.training.trainer import SDLGRPOTrainer

from .helpers import DATA, FOX, TOWER, fox_good, fox_poor, fox_skill, make_context, tiny_sdl_config, tower_replies
from .judges import JudgeScript, judge_server


def _manual_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    """Completion log-probs by a plain forward and log-softmax (the reference)."""
    with torch.no_grad():
        logits = model(
            input_ids=torch.cat([prompt_ids, completion_ids], 1), attention_mask=torch.cat([prompt_mask, completion_mask], 1)
        ).logits[:, prompt_ids.size(1) - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


class RecordingTrainer(SDLGRPOTrainer):
    """Records, at every SDL term, what a TRL upgrade could silently break."""

    records: list[dict[str, Any]]
    teacher_diffs: list[float]

    def _teacher_logps(self, model, prompt_ids, prompt_mask, completion_ids, completion_mask, score_mask):
        teacher = super()._teacher_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask, score_mask)
        manual = _manual_logps(self.model, prompt_ids, prompt_mask, completion_ids, completion_mask)
        scored = score_mask.bool()
        if scored.any():
            self.teacher_diffs.append((manual - teacher)[scored].abs().max().item())
        return teacher

    def _sdl_term(self, model, inputs, student):
        term = super()._sdl_term(model, inputs, student)
        mask = inputs["completion_mask"].bool()
        manual = _manual_logps(self.model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"], inputs["completion_mask"])
        record = {
            "requires_grad": student.requires_grad and student.grad_fn is not None,
            "max_diff_to_manual": (manual - student.detach())[mask].abs().max().item(),
            "term": term.detach().item(),
        }
        head = self.model.get_input_embeddings().weight  # tied with the LM head
        if term.requires_grad:
            (grad,) = torch.autograd.grad(term, [head], retain_graph=True, allow_unused=True)
            record["grad_norm"] = 0.0 if grad is None else grad.norm().item()
        self.records.append(record)
        return term


@dataclass
class Run:
    trainer: RecordingTrainer
    changed: int
    total: int
    judge: JudgeScript
    buffer_dir: Path
    renders: Path
    logs: list[dict[str, Any]] = field(default_factory=list)


def _dataset(ctx, gt: Path) -> Dataset:
    return Dataset.from_list([
        {"prompt": request_prompt(FOX, ctx), "gt_image": str(gt), "id": "fox"},
        {"prompt": request_prompt(TOWER, ctx), "gt_image": str(gt), "id": "tower"},
    ])


def _train(tmp: Path, tokenizer, embedder, *, steps: int, distill: bool, gate: float = 0.5) -> Run:
    ctx = make_context(tmp / "agent")
    script = ScriptedPolicyScript(tokenizer, {"red fox": [fox_good(), fox_poor(), fox_skill()], "Eiffel": tower_replies()})
    judge = JudgeScript()
    model = build_tiny_causal_lm(tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with judge_server(judge) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        rewards = GenEvolveRewards(renderer=PreviewRenderer(), image_judge=client, text_judge=client, image_dir=tmp / "renders")
        args = tiny_sdl_config(
            tmp / "out", max_steps=steps, reward_weights=[0.5, 0.5], sdl_coef=1.0, gate=gate, delta_min=0.2, buffer_dir=str(tmp / "buffer"),
        )
        buffer = ExperienceBuffer(SentenceEmbedder(embedder, name="tiny"), gate=args.gate, path=args.buffer_dir)
        rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
        trainer = RecordingTrainer(
            model=model, reward_funcs=rewards.reward_funcs(), args=args, train_dataset=_dataset(ctx, DATA / "images" / "cat.png"),
            processing_class=tokenizer, rollout_func=rollout, experience_buffer=buffer,
            distiller=VisualGuideDistiller(client) if distill else None, render_lookup=rewards.render_of,
        )
        trainer.records, trainer.teacher_diffs = [], []
        try:
            trainer.train()
        finally:
            rollout.close()
    changed = sum(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())
    return Run(trainer, changed, len(before), judge, Path(args.buffer_dir), tmp / "renders", list(trainer.state.log_history))


@pytest.fixture(scope="module")
def sdl_run(tmp_path_factory, tiny_tokenizer, tiny_embedder) -> Run:
    return _train(tmp_path_factory.mktemp("sdl"), tiny_tokenizer, tiny_embedder, steps=3, distill=True)


def _series(run: Run, key: str) -> list[float]:
    return [float(rec[key]) for rec in run.logs if key in rec]


def test_three_sdl_steps_train_on_tool_rollouts_judged_over_http(sdl_run: Run):
    assert sdl_run.trainer.state.global_step == 3
    assert sdl_run.changed == sdl_run.total  # every parameter tensor moved
    assert _series(sdl_run, "rollout/answer_rate") == [1.0, 1.0, 1.0]
    assert min(_series(sdl_run, "rollout/tool_calls_mean")) > 0
    assert _series(sdl_run, "rollout/retemplated_turns") == [0.0, 0.0, 0.0]
    # R = 0.5 R_img + 0.5 R_text from the two judges, every rollout scored
    assert sdl_run.judge.calls["kscore"] == 9 and sdl_run.judge.calls["sufficiency"] == 9
    assert all(v == 0.0 for key in ("rewards/image_judge_failures", "rewards/image_render_failures", "rewards/program_judge_failures")
               for v in _series(sdl_run, key))
    assert max(_series(sdl_run, "reward_std")) > 0


def test_guides_are_distilled_retrieved_and_teach_decision_tokens(sdl_run: Run):
    assert sdl_run.judge.calls["distiller"] == 3  # one guide per group with a reward gap
    assert _series(sdl_run, "sdl/buffer_size") == [1.0, 2.0, 3.0]
    assert (sdl_run.buffer_dir / "guides.jsonl").read_text().count("\n") == 3  # persisted as it grows
    assert all(rate == 1.0 for rate in _series(sdl_run, "sdl/guide_hit_rate"))
    shares = _series(sdl_run, "sdl/masked_token_share")
    assert all(0.0 < s <= 0.2 for s in shares)  # ~10% of decision tokens, decision tokens < all tokens
    assert all(v != 0.0 for v in _series(sdl_run, "sdl/loss"))
    # the distiller saw both trajectories of the pair and their rewards
    prompt = sdl_run.judge.distiller_prompts[0]
    assert "Better attempt: reward" in prompt and "Worse attempt: reward" in prompt and "[tool result]" in prompt


def test_the_visual_distiller_sees_the_judged_renders_and_the_ground_truth(sdl_run: Run):
    """Every distiller request of the run carries the ground truth and the two renders the image
    reward judged for that group's best and worst rollouts (found through the render ledger)."""
    import base64

    from genevolve_graph.evaluation.images import image_data_url

    truth_b64 = image_data_url(DATA / "images" / "cat.png", max_side=1024, quality=90)
    rendered = {image_data_url(p, max_side=1024, quality=90) for p in sdl_run.renders.rglob("*.png")}
    assert len(sdl_run.judge.distiller_images) == 3
    for urls, prompt in zip(sdl_run.judge.distiller_images, sdl_run.judge.distiller_prompts):
        assert len(urls) == 3 and urls[0] == truth_b64
        assert urls[1] in rendered and urls[2] in rendered
        assert all(base64.b64decode(u.split(",", 1)[1]) for u in urls)
        assert "Better attempt's image:" in prompt and "Worse attempt's image:" in prompt


def test_captured_student_logps_keep_their_gradient(sdl_run: Run):
    """Fails when a TRL upgrade stops computing the student's log-probs in
    _get_per_token_logps_and_entropies (with their graph) inside _compute_loss."""
    records = sdl_run.trainer.records
    assert len(records) == 3
    for record in records:
        assert record["requires_grad"]
        assert record["max_diff_to_manual"] < 1e-4  # they are the student's log-probs of the completion
        assert record["grad_norm"] > 0.0  # and the SDL term reaches the weights through them
    # the teacher's log-probs (fused head, decision positions only) are those of a plain forward
    assert len(sdl_run.trainer.teacher_diffs) == 3 and max(sdl_run.trainer.teacher_diffs) < 1e-4


def test_sdl_is_skipped_when_no_guide_applies(tmp_path, tiny_tokenizer, tiny_embedder):
    run = _train(tmp_path, tiny_tokenizer, tiny_embedder, steps=2, distill=False)
    assert run.judge.calls["distiller"] == 0
    assert _series(run, "sdl/guide_hit_rate") == [0.0, 0.0]
    assert _series(run, "sdl/active_rows") == [0.0, 0.0] and _series(run, "sdl/loss") == [0.0, 0.0]
    assert all(r["term"] == 0.0 and "grad_norm" not in r or r.get("grad_norm", 0.0) == 0.0 for r in run.trainer.records)
    assert run.changed == run.total  # GRPO alone still trains
