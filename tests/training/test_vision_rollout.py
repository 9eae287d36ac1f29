"""A vision-language policy in training rollouts: image observations (``show_images``) and the
user's reference images, token-exact with inference, and real GRPO and SDL steps on a tiny
Qwen3-VL whose forwards see the pixels."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import torch

from genevolve_graph.graph import build_graph, recursion_limit
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
    # The thumbnail sits right after the <tool_response> text, as at inference.
    text = tok.decode(sequence)
    assert "--- end of image search result ---\n</tool_response>IMG_001:<|vision_start|><|image_pad|>" in text


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
