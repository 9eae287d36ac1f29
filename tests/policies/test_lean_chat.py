"""``LeanChatOpenAI`` against ``ChatOpenAI`` on a real HTTP server: the same request bytes
and headers, the same messages back, streaming, tracing, and the quiet fast path."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage

from genevolve_graph import AgentContext, build_graph
from genevolve_graph.persistence import open_checkpointer
from genevolve_graph.policies.lean_openai import LeanChatOpenAI, ainvoke_chat
from genevolve_graph.policies.openai_chat import OpenAIChatPolicy, ProtocolChatOpenAI
from genevolve_graph.policies.base import PolicyError
from genevolve_graph.core.protocol import tool_schemas
from genevolve_graph.agent.runner import run_config, run_with_saver

from tests.scripts import PARIS, PARIS_SCRIPT, answer

NATIVE_SCRIPT = [
    {"content": "", "tool_calls": [{"id": "call_a", "name": "query_knowledge", "arguments": {"skill_name": "quantity_counting"}}]},
    {"content": "", "tool_calls": [{"id": "call_b", "name": "search", "arguments": {"queries": ["emperor penguin"]}}]},
    answer("Exactly three emperor penguins on sea ice."),
]


def ctx_for(server, tmp_path, **overrides) -> AgentContext:
    base = dict(policy="openai", base_url=server.base_url, model="genevolve-8b", output_dir=str(tmp_path / "out"),
                renderer="none", retry_initial_delay=0.01, request_timeout=5.0)
    base.update(overrides)
    return AgentContext(**base)


@pytest.mark.parametrize(("protocol", "request_text", "script"), [
    ("genevolve", PARIS, PARIS_SCRIPT),
    ("native", "three penguins", NATIVE_SCRIPT),
])
async def test_request_bytes_identical_for_both_chat_models(scripted_server, tmp_path, protocol, request_text, script):
    """Whole trajectories, once through ChatOpenAI and the SDK, once through the lean model:
    every request arrives with the same bytes and the same headers, and the trajectories match."""
    server = scripted_server({request_text: script})
    results = {}
    for client in ("sdk", "lean"):
        ctx = ctx_for(server, tmp_path, protocol=protocol, options={"chat_client": client})
        async with open_checkpointer("memory") as saver:
            results[client] = await run_with_saver(request_text, ctx, saver, thread_id=f"t-{client}")
        assert results[client].termination == "answer", results[client].error
    requests = [r for r in server.requests if r.status == 200]
    sdk, lean = requests[: len(script)], requests[len(script):]
    assert len(sdk) == len(lean) == len(script)
    for a, b in zip(sdk, lean):
        assert a.raw == b.raw
        assert a.headers == b.headers
    assert [m.content for m in results["sdk"].messages] == [m.content for m in results["lean"].messages]
    def calls(result):  # genevolve-mode call ids are made up per run; native ones come from the server
        return [[(c["name"], c["args"], c["id"] if protocol == "native" else None) for c in getattr(m, "tool_calls", [])]
                for m in result.messages]

    assert calls(results["sdk"]) == calls(results["lean"])


def _models(server, **kwargs):
    common = dict(model="genevolve-8b", base_url=server.base_url, api_key="k", temperature=0.6, top_p=0.9,
                  max_tokens=64, max_retries=0, timeout=5.0)
    common.update(kwargs)
    import httpx

    return ProtocolChatOpenAI(http_async_client=httpx.AsyncClient(), **common), LeanChatOpenAI(http_async_client=httpx.AsyncClient(), **common)


CONVERSATION = [SystemMessage(content="You plan images. é ü ✓"), HumanMessage(content="a fox")]


async def test_same_reply_message_through_ainvoke_and_the_quiet_path(scripted_server):
    server = scripted_server({"a fox": ["<think>x</think><answer>{}</answer>"] * 1}, model="served-name")
    sdk, lean = _models(server)
    via_sdk = await sdk.ainvoke(CONVERSATION)
    via_lean = await lean.ainvoke(CONVERSATION)
    via_quiet = await ainvoke_chat(lean, CONVERSATION)
    for reply in (via_lean, via_quiet):
        assert isinstance(reply, AIMessage)
        assert reply.content == via_sdk.content and reply.tool_calls == via_sdk.tool_calls
        assert reply.usage_metadata == via_sdk.usage_metadata
        for key in ("model_name", "model_provider", "finish_reason"):
            assert reply.response_metadata[key] == via_sdk.response_metadata[key]
        # The SDK's response model adds the fields the server left out, as None.
        sdk_usage = {k: v for k, v in via_sdk.response_metadata["token_usage"].items() if v is not None}
        assert reply.response_metadata["token_usage"] == sdk_usage
        assert reply.response_metadata["id"].startswith("chatcmpl-")  # the server's id, one per reply
    assert reply.response_metadata["model_name"] == "served-name"

    def without_id(message):
        return {k: v for k, v in message.response_metadata.items() if k != "id"}

    assert without_id(via_quiet) == without_id(via_lean)
    raws = [r.raw for r in server.requests]
    assert raws[0] == raws[1] == raws[2]


async def test_native_tool_calls_parse_the_same(scripted_server):
    server = scripted_server({"a fox": [NATIVE_SCRIPT[1]]})
    sdk, lean = _models(server)
    a = await sdk.bind_tools(tool_schemas()).ainvoke(CONVERSATION)
    b = await ainvoke_chat(lean.bind_tools(tool_schemas()), CONVERSATION)
    assert a.tool_calls == b.tool_calls and b.tool_calls[0]["name"] == "search"
    assert server.requests[0].raw == server.requests[1].raw


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool_call"])
async def test_streaming_sends_the_same_bytes_and_yields_the_same_message(scripted_server, tools):
    reply = NATIVE_SCRIPT[1] if tools else PARIS_SCRIPT[0]
    server = scripted_server({"a fox": [reply]})
    sdk, lean = _models(server, stream_usage=True)
    if tools:
        sdk, lean = sdk.bind_tools(tool_schemas()), lean.bind_tools(tool_schemas())
    merged = []
    for model in (sdk, lean):
        chunks = [c async for c in model.astream(CONVERSATION)]
        assert len(chunks) > 2 and all(isinstance(c, AIMessageChunk) for c in chunks)
        total = chunks[0]
        for c in chunks[1:]:
            total = total + c
        merged.append(total)
    a, b = merged
    assert a.content == b.content and a.tool_calls == b.tool_calls and a.usage_metadata == b.usage_metadata
    assert b.usage_metadata["total_tokens"] == 20
    assert server.requests[0].raw == server.requests[1].raw and b'"stream":true' in server.requests[1].raw


class Recorder(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.chat_starts = 0
        self.tokens = 0

    async def on_chat_model_start(self, *args, **kwargs) -> None:
        self.chat_starts += 1

    async def on_llm_new_token(self, *args, **kwargs) -> None:
        self.tokens += 1


async def test_lean_policy_is_traced_when_a_handler_listens(scripted_server, tmp_path):
    """With a callback handler configured the chat model runs through LangChain as usual."""
    server = scripted_server({PARIS: PARIS_SCRIPT})
    ctx = ctx_for(server, tmp_path)
    recorder = Recorder()
    async with open_checkpointer("memory") as saver:
        graph = build_graph(saver)
        config = run_config(ctx, "traced") | {"callbacks": [recorder]}
        await graph.ainvoke({"request": PARIS}, config, context=ctx)
    assert recorder.chat_starts == len(PARIS_SCRIPT)


async def test_lean_policy_streams_tokens_in_messages_mode(scripted_server, tmp_path):
    server = scripted_server({PARIS: PARIS_SCRIPT})
    ctx = ctx_for(server, tmp_path)
    async with open_checkpointer("memory") as saver:
        graph = build_graph(saver)
        chunks = [chunk async for chunk, _meta in graph.astream({"request": PARIS}, run_config(ctx, "streamed"),
                                                                  context=ctx, stream_mode="messages")
                  if isinstance(chunk, AIMessageChunk)]
    assert len(chunks) > len(PARIS_SCRIPT)  # several chunks per reply: the request streamed
    assert all(r.body.get("stream") for r in server.requests)
    assert "".join(c.content for c in chunks).count("<tool_call>") == len(PARIS_SCRIPT) - 1


def test_unknown_chat_client_is_refused_with_the_fix():
    with pytest.raises(PolicyError, match="chat_client.*lean, sdk"):
        OpenAIChatPolicy(base_url="http://127.0.0.1:9/v1", model="m", chat_client="fast")


async def test_callbacks_passed_to_the_call_are_listeners(scripted_server):
    server = scripted_server({"a fox": [PARIS_SCRIPT[0]]})
    _sdk, lean = _models(server)
    recorder = Recorder()
    reply = await ainvoke_chat(lean, CONVERSATION, config={"callbacks": [recorder], "run_name": "policy"})
    assert recorder.chat_starts == 1 and reply.content == PARIS_SCRIPT[0]


@pytest.mark.parametrize("model", ["genevolve-8b", 'tricky "messages":[] name'])
def test_spliced_message_json_gives_the_bytes_of_encoding_the_whole_body(model):
    """Each message is encoded once and spliced into later bodies; the bytes equal one
    encoding of the whole body, whatever the strings around them hold."""
    from genevolve_graph.policies.lean_openai import _MessageDicts, request_body

    conversation = [SystemMessage(content='plan "messages":[] é ✓'), HumanMessage(content=[{"type": "text", "text": "a fox"}]),
                    AIMessage(content="<think>x</think>")]
    dicts = _MessageDicts()
    encoded = dicts.encoded(conversation)
    payload = {"model": model, "messages": encoded, "temperature": 0.6, "stream": False, "extra_body": {"top_k": 20}}
    plain = {**payload, "messages": list(encoded)}
    assert request_body(payload) == request_body(plain)
    assert dicts.encoded(conversation).json == encoded.json  # the same texts, not encoded again
    assert request_body({**payload, "messages": dicts.encoded([])}) == request_body({**payload, "messages": []})
