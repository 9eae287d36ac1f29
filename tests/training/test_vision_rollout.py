"""A vision-language policy in training rollouts: image observations (``show_images``) and the
user's reference images, token-exact with inference, and real GRPO and SDL steps on a tiny
Qwen3-VL whose forwards see the pixels."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import torch

from genevolve_graph.agent.graph import build_graph, recursion_limit
from genevolve_graph.testing.scripted_generation import ScriptedPolicyScript, ScriptedTokenGenerator
from genevolve_graph.testing.scripted_openai import ScriptedChatServer
from genevolve_graph.testing.tiny_vlm import build_tiny_vlm, build_tiny_vlm_processor
from genevolve_graph.training.rollout import GenEvolveRollout, request_images_of, request_prompt
from genevolve_graph.training.vision import image_urls, multimodal_inputs

from .helpers import FOX, fox_good, make_context


@pytest.fixture(scope="module")
def processor():
    return build_tiny_vlm_processor()


def _user_image(colour=(20, 120, 220), size=(40, 24)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _ids(processor, messages) -> list[int]:
    out = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    return list(out[0] if out and isinstance(out[0], list) else out)


async def test_vision_rollout_tokens_and_images_equal_what_inference_sends(tmp_path, processor):
    """Inference with show_images and a user reference image: the graph sends image_url parts
    (the request image after the request text, thumbnails after the <tool_response> text). Each
    request, rendered by the VLM's processor, is exactly the rollout's prompt at that turn, the
    images handed to the sampler are that request's images in order, and the rollout's image
    list gives the model as many image features as its tokens hold image tokens."""
    tok = processor.tokenizer
    replies = fox_good()
    ctx = make_context(tmp_path, options={"show_images": True, "thumbnail_max_side": 40})
    user_image = _user_image()

    with ScriptedChatServer(replies) as server:
        inference_ctx = ctx.with_updates(policy="openai", base_url=server.base_url, model="scripted")
        inferred = await build_graph(None).ainvoke({"request": FOX, "request_images": [user_image]},
                                                   {"recursion_limit": recursion_limit(inference_ctx)}, context=inference_ctx)
        bodies = server.successful_bodies()
    assert inferred["termination"] == "answer" and len(bodies) == 3
    assert image_urls(bodies[0]["messages"]) == [user_image]
    assert len(image_urls(bodies[2]["messages"])) == 2  # + the thumbnail of the image_search hit

    generator = ScriptedTokenGenerator(ScriptedPolicyScript(tok, {"red fox": [replies]}))
    rollout = GenEvolveRollout(ctx)
    prompt = request_prompt(FOX, ctx, [user_image])
    assert request_images_of(prompt) == [user_image]
    try:
        (result,) = await rollout.arun([FOX], tokenizer=processor, generator=generator, max_completion_length=4096,
                                       images=[request_images_of(prompt)])
    finally:
        rollout.close()
    assert result.termination == "answer" and result.retemplated_turns == 0
    assert result.program == inferred["program"].model_dump(mode="json")
    sequence = result.prompt_ids + result.completion_ids
    mask = [0] * len(result.prompt_ids) + result.env_mask
    image_token = processor.image_token_id
    for turn, (body, seen, images) in enumerate(zip(bodies, generator.prompts, generator.images, strict=True)):
        expected = _ids(processor, body["messages"])
        assert seen == expected, f"turn {turn}: the trained policy was prompted with other tokens than inference sends"
        assert images == image_urls(body["messages"]), f"turn {turn}: other images than inference sends"
        assert sequence[: len(expected)] == expected
        reply = tok.encode(replies[turn], add_special_tokens=False) + [tok.eos_token_id]
        assert sequence[len(expected) : len(expected) + len(reply)] == reply
        assert mask[len(expected) : len(expected) + len(reply)] == [1] * len(reply)
    assert result.images == image_urls(bodies[-1]["messages"])
    features = multimodal_inputs(processor, [result.images])
    per_image = (features["image_grid_thw"].prod(-1) // 4).tolist()
    assert sequence.count(image_token) == sum(per_image) and all(n > 1 for n in per_image)
    assert all(m == 0 for t, m in zip(sequence, mask) if t == image_token)  # image tokens never carry loss
    # The thumbnail's image tokens follow the <tool_response> text (its label inside), as at inference.
    text = tok.decode(sequence)
    assert "--- end of image search result ---\nIMG_001:\n</tool_response><|vision_start|><|image_pad|>" in text


def test_a_text_policy_refuses_image_observations(tmp_path, tiny_tokenizer):
    class Trainer:
        processing_class = tiny_tokenizer

    rollout = GenEvolveRollout(make_context(tmp_path, options={"show_images": True}))
    with pytest.raises(ValueError, match="need a vision-language policy"):
        rollout([request_prompt(FOX, rollout.ctx)], Trainer())


async def test_bad_request_images_end_the_trajectory_with_a_clear_error(tmp_path):
    ctx = make_context(tmp_path).with_updates(policy="openai", base_url="http://127.0.0.1:9/v1", model="m")
    out = await build_graph(None).ainvoke({"request": FOX, "request_images": ["/etc/passwd"]}, {"recursion_limit": 20}, context=ctx)
    assert out["termination"] == "error" and "request_images[0]: not a data URI" in out["error"]


# --------------------------------------------------------------------------- real trainer steps


def _train_vlm(tmp: Path, processor, embedder, *, sdl: bool):
    """Two steps of SDLGRPOTrainer (sdl_coef 0: plain GRPO) on the tiny Qwen3-VL with image
    observations; records every forward's image inputs and checks the student's log-probs
    against a manual forward with the pixels."""
    from datasets import Dataset

    from genevolve_graph.evaluation.judge_client import JudgeClient
    from genevolve_graph.generators.preview import PreviewRenderer
    from genevolve_graph.experience.buffer import ExperienceBuffer
    from genevolve_graph.experience.embedders import SentenceEmbedder
    from genevolve_graph.training.distill import VisualGuideDistiller
    from genevolve_graph.training.rewards import GenEvolveRewards
    from genevolve_graph.training.trainer import SDLConfig, SDLGRPOTrainer
    from genevolve_graph.training.vision import forward_kwargs, select_rows

    from .helpers import DATA, fox_poor, fox_skill
    from .judges import JudgeScript, judge_server

    class Recording(SDLGRPOTrainer):
        def _get_per_token_logps_and_entropies(self, model, input_ids, *args, **kwargs):
            out = super()._get_per_token_logps_and_entropies(model, input_ids, *args, **kwargs)
            self.calls.append({"rows": input_ids.size(0), "pixels": kwargs.get("pixel_values") is not None or bool(self._rollout_mm)})
            return out

        def _sdl_term(self, model, inputs, student):
            # the student's log-probs are those of a forward that sees the images, not of a text-only one
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
            mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
            mm = select_rows(inputs, list(range(ids.size(0))))
            width = inputs["completion_ids"].size(1)
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=mask, **forward_kwargs(ids, self.processing_class, mm)).logits
                blind = self.model(input_ids=ids, attention_mask=mask).logits
            def lp(lg):
                return torch.log_softmax(lg[:, -width - 1 : -1].float(), -1).gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)
            m = inputs["completion_mask"].bool()
            self.student_checks.append(((lp(logits) - student.detach())[m].abs().max().item(), (lp(blind) - student.detach())[m].abs().max().item()))
            term = super()._sdl_term(model, inputs, student)
            self.terms.append(term.detach().item())
            return term

    tok = processor.tokenizer
    ctx = make_context(tmp / "agent", options={"show_images": True, "thumbnail_max_side": 40})
    script = ScriptedPolicyScript(tok, {"red fox": [fox_good(), fox_poor(), fox_skill()]})
    model = build_tiny_vlm(processor)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    judge = JudgeScript()
    with judge_server(judge) as server:
        client = JudgeClient(server.base_url, "scripted-judge", max_retries=0)
        rewards = GenEvolveRewards(renderer=PreviewRenderer(), image_judge=client, text_judge=client, image_dir=tmp / "renders")
        args = SDLConfig(
            output_dir=str(tmp / "out"), per_device_train_batch_size=3, num_generations=3, max_completion_length=2048, max_steps=2,
            learning_rate=1e-2, logging_steps=1, report_to="none", use_cpu=True, bf16=False, save_strategy="no", dataloader_num_workers=0,
            reward_weights=[0.5, 0.5], shuffle_dataset=False, seed=0, sdl_coef=1.0 if sdl else 0.0, gate=0.5, delta_min=0.2,
            buffer_dir=str(tmp / "buffer"), beta=0.04 if not sdl else 0.0, num_iterations=1,
        )
        buffer = ExperienceBuffer(SentenceEmbedder(embedder, name="tiny"), gate=args.gate, path=args.buffer_dir) if sdl else None
        rollout = GenEvolveRollout(ctx, generator=ScriptedTokenGenerator(script))
        dataset = Dataset.from_list([{"prompt": request_prompt(FOX, ctx, [_user_image()]), "gt_image": str(DATA / "images" / "cat.png")}])
        if not sdl:  # beta > 0 rebuilds the reference model from a folder: save the policy first
            model.save_pretrained(tmp / "policy")
            processor.save_pretrained(tmp / "policy")
        trainer = Recording(
            model=str(tmp / "policy") if not sdl else model, reward_funcs=rewards.reward_funcs(), args=args, train_dataset=dataset,
            processing_class=processor, rollout_func=rollout, experience_buffer=buffer,
            distiller=VisualGuideDistiller(client) if sdl else None, render_lookup=rewards.render_of,
        )
        trainer.calls, trainer.student_checks, trainer.terms = [], [], []
        if not sdl:
            before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        try:
            trainer.train()
        finally:
            rollout.close()
    changed = {n for n, p in trainer.model.named_parameters() if n in before and not torch.equal(before[n], p.detach())}
    return trainer, changed, judge, rollout


@pytest.fixture(scope="module")
def vlm_embedder():
    from genevolve_graph.testing.tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer("static")


def test_grpo_step_on_a_vlm_sees_the_images_in_every_forward(tmp_path, processor):
    trainer, changed, judge, rollout = _train_vlm(tmp_path, processor, None, sdl=False)
    assert trainer.state.global_step == 2 and judge.calls["kscore"] == 6
    assert all(r.images for r in rollout.last_results)  # the request image at least
    assert any(len(r.images) == 2 for r in rollout.last_results)  # + a thumbnail for the image_search rollout
    # every forward (reference log-probs with beta > 0, and the student's) got the pixel values
    assert trainer.calls and all(c["pixels"] for c in trainer.calls)
    assert any(n.startswith("model.visual.") for n in changed) and any(n.startswith("model.language_model.") for n in changed)


def test_sdl_step_on_a_vlm_teacher_and_student_see_the_images(tmp_path, processor, vlm_embedder):
    trainer, changed, judge, _ = _train_vlm(tmp_path, processor, vlm_embedder, sdl=True)
    assert trainer.state.global_step == 2 and judge.calls["distiller"] >= 1
    assert all(urls for urls in judge.distiller_images)  # the visual distiller saw the renders
    assert len(trainer.student_checks) == 2
    for with_images, blind in trainer.student_checks:
        assert with_images < 1e-4  # the student's log-probs are those of the forward with the pixels
        assert blind > 1e-3  # and a forward without them would differ: the images matter
    assert any(t != 0.0 for t in trainer.terms)  # the teacher forward (with the same images) produced an SDL term
    assert changed


def test_rl_rows_carry_request_images(tmp_path):
    """An RL row's request_images (paths under the data root) reach the prompt as data URIs after
    the request text, in a dataset Arrow can hold next to text-only rows; a missing one is a one-line error."""
    import json
    import shutil

    from genevolve_graph.training.data import DataError, build_dataset, read_rows

    from .helpers import DATA

    (tmp_path / "images").mkdir()
    shutil.copy(DATA / "images" / "cat.png", tmp_path / "images" / "cat.png")
    rows = [{"prompt": FOX, "gt_image": "images/cat.png", "request_images": ["images/cat.png"]}, {"prompt": "A tower", "gt_image": "images/cat.png"}]
    (tmp_path / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ctx = make_context(tmp_path / "agent", options={"show_images": True})
    dataset = build_dataset(read_rows(tmp_path / "rl.jsonl"), ctx)
    first, second = dataset[0]["prompt"], dataset[1]["prompt"]
    assert len(request_images_of(first)) == 1 and request_images_of(first)[0].startswith("data:image/")
    assert request_images_of(second) == []
    from genevolve_graph.training.rollout import request_of

    assert request_of(first) == FOX and request_of(second) == "A tower"
    (tmp_path / "bad.jsonl").write_text(json.dumps({**rows[0], "request_images": ["images/none.png"]}) + "\n")
    with pytest.raises(DataError, match="line 1: request image .*none.png does not exist"):
        read_rows(tmp_path / "bad.jsonl")
