"""Training rollouts run the agent graph, and their tokens are what inference sends."""

from __future__ import annotations

import pytest

from genevolve_graph.agent.graph import build_graph, recursion_limit
from genevolve_graph.core.protocol import format_tool_call
from genevolve_graph.testing.scripted_generation import (
    ScriptedCompletionsServer,
    ScriptedPolicyScript,
    ScriptedTokenGenerator,
)
from genevolve_graph.testing.scripted_openai import ScriptedChatServer
from genevolve_graph.training.rollout import CompletionsGenerator, GenEvolveRollout, LocalGenerator, TokenTrace

from .helpers import FOX, fox_good, fox_poor, make_context, think


def _template_ids(tok, messages) -> list[int]:
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]


async def test_rollout_tokens_equal_the_chat_the_graph_sends_at_inference(tmp_path, tiny_tokenizer):
    """Inference: the graph with the OpenAI-compatible policy against a scripted chat server,
    which records every request. Training: the same graph with the trained policy. Each
    request, tokenized with the policy's chat template, must be exactly the rollout's token
    sequence at that turn, and the whole rollout must be those turns plus the sampled replies."""
    tok = tiny_tokenizer
    replies = fox_good()
    ctx = make_context(tmp_path)

    with ScriptedChatServer(replies) as server:
        inference_ctx = ctx.with_updates(policy="openai", base_url=server.base_url, model="scripted")
        graph = build_graph(None)
        inferred = await graph.ainvoke({"request": FOX}, {"recursion_limit": recursion_limit(inference_ctx)}, context=inference_ctx)
        bodies = server.successful_bodies()
    assert inferred["termination"] == "answer" and len(bodies) == 3

    generator = ScriptedTokenGenerator(ScriptedPolicyScript(tok, {"red fox": [replies]}))
    rollout = GenEvolveRollout(ctx)
    try:
        (result,) = await rollout.arun([FOX], tokenizer=tok, generator=generator, max_completion_length=4096)
    finally:
        rollout.close()

    assert result.termination == "answer" and result.retemplated_turns == 0
    assert result.program == inferred["program"].model_dump(mode="json")
    sequence = result.prompt_ids + result.completion_ids
    mask = [0] * len(result.prompt_ids) + result.env_mask
    for turn, (body, seen) in enumerate(zip(bodies, generator.prompts, strict=True)):
        expected = _template_ids(tok, body["messages"])
        assert seen == expected, f"turn {turn}: the trained policy was prompted with other tokens than inference sends"
        assert sequence[: len(expected)] == expected
        reply = tok.encode(replies[turn], add_special_tokens=False) + [tok.eos_token_id]
        assert sequence[len(expected) : len(expected) + len(reply)] == reply
        assert mask[len(expected) : len(expected) + len(reply)] == [1] * len(reply)  # the reply is trained on
        assert mask[len(expected) - 1] == 0  # the generation prompt before it is not
    assert sequence == _template_ids(tok, bodies[-1]["messages"]) + tok.encode(replies[-1], add_special_tokens=False) + [tok.eos_token_id]
    # the exported trajectory is the chat that inference continued from
    assert [m["content"] for m in result.trajectory] == [m["content"] for m in bodies[-1]["messages"][2:]] + [replies[-1]]


async def test_non_canonical_replies_keep_the_sampled_tokens_and_are_counted(tmp_path, tiny_tokenizer):
    """Qwen3's template re-renders '<think>x</think>\\n<tool_call>' with other whitespace; the
    rollout keeps what was sampled (training must score it) and reports the turn."""
    tok = tiny_tokenizer
    replies = [
        "<think>quick</think>\n" + format_tool_call("search", {"queries": ["red fox"], "top_k": 1}),
        think("ok", '<answer>{"gen_prompt": "a red fox in snow", "reference_images": []}</answer>'),
    ]
    generator = ScriptedTokenGenerator(ScriptedPolicyScript(tok, {"red fox": [replies]}))
    rollout = GenEvolveRollout(make_context(tmp_path))
    try:
        (result,) = await rollout.arun([FOX], tokenizer=tok, generator=generator, max_completion_length=4096)
    finally:
        rollout.close()
    assert result.termination == "answer" and result.retemplated_turns == 1
    sequence = result.prompt_ids + result.completion_ids
    first = tok.encode(replies[0], add_special_tokens=False) + [tok.eos_token_id]
    assert sequence[len(result.prompt_ids) : len(result.prompt_ids) + len(first)] == first
    assert generator.prompts[1] == sequence[: len(generator.prompts[1])]  # turn 2 continued the sampled tokens
    assert tok.decode(generator.prompts[1]).endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")


async def test_budget_exhaustion_truncates_and_generation_failure_is_not_the_policys(tmp_path, tiny_tokenizer):
    tok = tiny_tokenizer
    rollout = GenEvolveRollout(make_context(tmp_path))
    try:
        long_script = ScriptedPolicyScript(tok, {"red fox": [fox_good()]})
        (cut,) = await rollout.arun([FOX], tokenizer=tok, generator=ScriptedTokenGenerator(long_script), max_completion_length=60)
        assert cut.truncated and cut.termination == "truncated" and not cut.failed and cut.program is None
        assert len(cut.completion_ids) <= 60 and cut.env_mask[-1] == 1  # ends on a sampled token, no dangling turn

        missing = ScriptedPolicyScript(tok, {"something else": [fox_poor()]})
        (broken,) = await rollout.arun([FOX], tokenizer=tok, generator=ScriptedTokenGenerator(missing), max_completion_length=512)
        assert broken.failed and broken.termination == "error"
        # nothing was sampled: one masked EOS placeholder, so that TRL's per-row last-token checks hold
        assert broken.completion_ids == [tok.eos_token_id] and broken.env_mask == [0] and broken.logprobs == [0.0]
    finally:
        rollout.close()


async def test_http_completions_backend_matches_the_in_process_script(tmp_path, tiny_tokenizer):
    tok = tiny_tokenizer
    rollout = GenEvolveRollout(make_context(tmp_path))
    try:
        local = ScriptedTokenGenerator(ScriptedPolicyScript(tok, {"red fox": [fox_good(), fox_poor()]}))
        expected = await rollout.arun([FOX, FOX], tokenizer=tok, generator=local, max_completion_length=4096)
        with ScriptedCompletionsServer(ScriptedPolicyScript(tok, {"red fox": [fox_good(), fox_poor()]})) as server:
            remote = CompletionsGenerator(server.base_url)
            got = await rollout.arun([FOX, FOX], tokenizer=tok, generator=remote, max_completion_length=4096)
            await remote.aclose()
            assert all(isinstance(b["prompt"], list) and b["return_token_ids"] for b in server.requests)
    finally:
        rollout.close()
    # the two rollouts of one request get the script's variants in arrival order: compare as sets
    def key(r):
        return (r.prompt_ids, r.completion_ids, r.env_mask, str(r.program))

    assert sorted(map(key, expected)) == sorted(map(key, got))
    for b in got:
        assert b.logprobs is not None and len(b.logprobs) == len(b.completion_ids)
        assert all(lp == 0.0 for lp, m in zip(b.logprobs, b.env_mask, strict=True) if m == 0)


async def test_local_generator_samples_from_the_model(tmp_path, tiny_tokenizer, tiny_model):
    """A random model writes no tool call: the graph sends format errors, then the final-step
    message, and each turn continues the flat sequence (sampled with model.generate)."""
    tok = tiny_tokenizer
    ctx = make_context(tmp_path, max_rounds=3, max_tokens=6)
    rollout = GenEvolveRollout(ctx)
    generator = LocalGenerator(tiny_model, tok)
    try:
        results = await rollout.arun([FOX, FOX], tokenizer=tok, generator=generator, max_completion_length=1000)
    finally:
        rollout.close()
    assert generator.calls <= 3 * 2  # concurrent trajectories share generate calls
    for r in results:
        assert r.termination in ("no_answer", "answer_parse_failed") and r.rounds == 3
        assert sum(r.env_mask) <= 3 * 6  # at most 6 sampled tokens per round
        text = tok.decode(r.completion_ids)
        assert text.count("<|im_start|>user") == 3 and "final round" in text  # two format errors, then the final step


def test_trace_needs_end_of_turn_tokens(tiny_tokenizer):
    trace = TokenTrace(tiny_tokenizer)
    with pytest.raises(Exception, match="no assistant turn"):
        trace._suffix_after_last_reply([1, 2, 3], [{"role": "user", "content": "x"}])
