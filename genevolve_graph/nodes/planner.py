"""The planner node: one policy turn under the budget rules of DESIGN.md §2.

- The first turn writes the system prompt and the request into the state, so the exact
  messages the policy reads are recoverable from the checkpoint.
- Before the last round (or once the tool budget is spent) a final-step message forbids
  tools and demands an answer.
- A reply with neither a valid tool call nor an answer gets a format-error message; the
  round counts.
- A policy failure (after its own retries) ends the trajectory with termination ``error``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langgraph.types import Command

from genevolve_graph.core.context import AgentContext
from genevolve_graph.experience.memory import GuideMemoryError, GuideUse, guided_system_prompt
from genevolve_graph.nodes.common import checked_context, emit
from genevolve_graph.policies.base import PolicyError
from genevolve_graph.prompts import FINAL_STEP, FORMAT_ERROR, PromptFileError, system_prompt
from genevolve_graph.core.protocol import (
    ANSWER_TOOL,
    CONTROL_KEY,
    ParsedReply,
    answer_shape_problem,
    control_message,
    loads_lenient,
    new_id,
    parse_reply,
    validate_tool_call,
)
from genevolve_graph.nodes.reply import chat_request, fresh_trajectory, trajectory_start
from genevolve_graph.nodes.services import Services
from genevolve_graph.core.state import AgentState
from genevolve_graph.core.tracing import POLICY_RUN_NAME, run_config
from genevolve_graph.safety.protocol_tags import neutralize_tags


def request_content(request: str, images: list[str] | None = None) -> str | list[dict[str, Any]]:
    """The request turn: the text, then the user's reference images as ``image_url`` parts.

    The request is a caller's text: protocol tags and chat-template tokens in it are defused
    as in observations (``safety.protocol_tags``), so it cannot close the user turn or forge
    a tool response; a request without them keeps its bytes."""
    request = neutralize_tags(request)
    if not images:
        return request
    return [{"type": "text", "text": request}, *({"type": "image_url", "image_url": {"url": url}} for url in images)]


def check_request_images(images: Any) -> str | None:
    """Why ``request_images`` cannot be used (None when they can): a list of image data URIs
    that decode under the safety limits; file paths and URLs are refused (callers are untrusted)."""
    from genevolve_graph.safety.imaging import UnsafeImageError, decode_data_uri

    if not isinstance(images, list) or not all(isinstance(u, str) for u in images):
        return "request_images must be a list of data URIs (data:image/...;base64,...)"
    for index, url in enumerate(images):
        try:
            decode_data_uri(url)
        except UnsafeImageError as exc:
            return f"request_images[{index}]: {exc}; pass each image inline as a data URI"
    return None


def initial_messages(request: str, ctx: AgentContext, guide_text: str = "", images: list[str] | None = None) -> list[BaseMessage]:
    """System prompt and request (with the user's reference images, if any), the first two messages.

    ``guide_text`` (a retrieved Decision Guide, ``guidance="retrieve"``) is appended to the
    system prompt exactly as the SDL teacher reads it.
    """
    prompt = system_prompt(
        protocol=ctx.protocol,
        max_tool_calls=ctx.max_tool_calls,
        max_rounds=ctx.max_rounds,
        max_refs=ctx.n_max_reference_images,
        template_file=ctx.system_prompt_file,
    )
    if guide_text:
        prompt = guided_system_prompt(prompt, guide_text)
    return [SystemMessage(content=prompt, id=new_id("system")), HumanMessage(content=request_content(request, images), id=new_id("request"))]


async def look_up_guide(request: str, ctx: AgentContext) -> GuideUse | None:
    """The guide for this run from the graph's store (or ``guide_dir``); the run's metadata
    names it when the runner looked it up before starting."""
    from langgraph.config import get_config
    from langgraph.runtime import get_runtime

    from genevolve_graph.experience.memory import find_guide

    metadata = get_config().get("metadata") or {}
    preset = metadata if "guide_id" in metadata else None
    return await find_guide(request, ctx, get_runtime().store, preset=preset)


def interpret(reply: AIMessage, protocol: str) -> ParsedReply:
    """Understand a reply in either protocol."""
    if protocol == "native" and reply.tool_calls:
        call = reply.tool_calls[0]
        if call["name"] == ANSWER_TOOL:  # the structured final answer
            answer = call.get("args") or {}
            problem = answer_shape_problem(answer)
            if problem:
                return ParsedReply("invalid", problem=problem.replace("the <answer>", f"the {ANSWER_TOOL} arguments"))
            return ParsedReply("answer", answer=answer)
        args, problem = validate_tool_call(call["name"], call.get("args", {}))
        if problem:
            return ParsedReply("invalid", problem=problem)
        return ParsedReply("tool_call", tool_name=call["name"], arguments=args)
    content = reply.content if isinstance(reply.content, str) else str(reply.content)
    parsed = parse_reply(content)
    if parsed.kind == "invalid" and protocol == "native" and "<answer>" not in content:
        # A tool-calling model may answer with bare JSON.
        try:
            answer = loads_lenient(content)
        except ValueError:
            return parsed
        if not answer_shape_problem(answer):
            return ParsedReply("answer", answer=answer)
    return parsed


async def call_policy(policy: Any, conversation: list[BaseMessage], ctx: AgentContext) -> AIMessage:
    """One policy turn, as a LangChain run named ``policy``.

    Chat-model policies (``traced = True``) make that run themselves (their model call is
    it); for any other policy, such as the rule-based planner, the turn is wrapped in a
    chain run of that name, so every trajectory traces the same way.
    """
    if getattr(policy, "traced", False):
        return await policy.respond(conversation, ctx)

    async def turn(messages: list[BaseMessage]) -> AIMessage:
        return await policy.respond(messages, ctx)

    return await RunnableLambda(turn, name=POLICY_RUN_NAME).ainvoke(conversation, config=run_config(ctx, policy=policy))


def make_planner(services: Services):
    async def planner(state: AgentState) -> Command:
        update = await turn(state)
        return Command(update=update, goto=next_node(update))

    async def turn(state: AgentState) -> dict[str, Any]:
        ctx = await checked_context(services.confine)
        everything = list(state.get("messages") or [])
        start = trajectory_start(state)  # a chat run's own messages come before its trajectory
        messages = everything[start:] if start is not None else []
        new: list[BaseMessage] = []
        first_update: dict[str, Any] = {}
        restart = start is None and state.get("trajectory_from") is not None  # a chat's next turn on the same thread
        if start is None:
            given = (state.get("request") or "").strip()
            chat = bool(everything)  # the caller's messages: the request is the last human one
            request = (chat_request(state) or ("" if restart else given)) if chat else given
            if not request:
                return {"termination": "error", "error": "empty request: pass the image request as 'request', or a human message in 'messages'"}
            first_update.update(fresh_trajectory(len(everything), reset=restart))
            if request != given:
                first_update["request"] = request
            guide: GuideUse | None = None
            if ctx.guidance != "off":
                if ctx.guidance != "retrieve":
                    return {"termination": "error", "error": f"unknown guidance {ctx.guidance!r}; choose 'off' or 'retrieve'"}
                try:
                    guide = await look_up_guide(request, ctx)
                except (GuideMemoryError, OSError) as exc:
                    return {"termination": "error", "error": f"guidance: {exc}"}
                emit("guide_retrieved", guide_id=guide.id if guide else None, score=guide.score if guide else None)
            text = guide.text if guide else ""
            images = state.get("request_images") or None
            if images is not None:
                problem = await asyncio.to_thread(check_request_images, images)
                if problem:
                    return {"termination": "error", "error": problem}
            try:  # in a thread: a system prompt file is read from disk
                new += (await asyncio.to_thread(initial_messages, request, ctx, text, images) if ctx.system_prompt_file
                        else initial_messages(request, ctx, text, images))
            except PromptFileError as exc:
                return {"termination": "error", "error": str(exc)}
            if guide is not None:
                first_update["guide"] = guide.model_dump()
        rounds = 0 if restart else state.get("rounds", 0)
        used = 0 if restart else state.get("tool_calls", 0)
        final_sent = any(isinstance(m, HumanMessage) and m.additional_kwargs.get(CONTROL_KEY) == "final_step" for m in messages)
        if not final_sent and (rounds >= ctx.max_rounds - 1 or used >= ctx.max_tool_calls):
            new.append(control_message(FINAL_STEP, "final_step"))
            final_sent = True
        conversation = messages + new
        emit("policy_started", round=rounds + 1)
        try:
            policy = await services.aget_policy(ctx)
            reply = await call_policy(policy, conversation, ctx)
        except PolicyError as exc:
            return {**first_update, "messages": new, "termination": "error", "error": str(exc)}
        rounds += 1
        oversized = reply_too_long(reply, ctx)
        if oversized:  # not stored: every later stage would copy it (data build, export)
            return {**first_update, "rounds": rounds, "messages": new, "termination": "error", "error": oversized}
        parsed = interpret(reply, ctx.protocol)
        update: dict[str, Any] = {**first_update, "rounds": rounds}
        stored = AIMessage(
            content=reply.content,
            id=new_id("ai"),
            response_metadata=reply.response_metadata,
            usage_metadata=reply.usage_metadata,
        )
        if parsed.kind == "tool_call" and final_sent:
            parsed = ParsedReply("invalid", parsed.think, problem="tools are no longer available; write your <answer> now")
        if parsed.kind == "tool_call":
            call_id = (reply.tool_calls[0].get("id") if reply.tool_calls else None) or new_id("call")
            stored.tool_calls = [{"name": parsed.tool_name, "args": parsed.arguments, "id": call_id, "type": "tool_call"}]
        elif parsed.kind == "answer":
            update["answer"] = parsed.answer
            submitted = [c for c in reply.tool_calls if c["name"] == ANSWER_TOOL][:1]
            if submitted:  # recorded as the model made it: a submit_program call
                stored.tool_calls = [{"name": ANSWER_TOOL, "args": parsed.answer, "id": submitted[0].get("id") or new_id("call"), "type": "tool_call"}]
        new.append(stored)
        if parsed.kind == "invalid":
            if rounds >= ctx.max_rounds:
                answer_failed = "<answer>" in str(reply.content)
                update["termination"] = "answer_parse_failed" if answer_failed else "no_answer"
                update["error"] = f"no usable answer within {ctx.max_rounds} rounds; last reply: {parsed.problem}"
            else:
                new.append(control_message(FORMAT_ERROR.format(problem=parsed.problem), "format_error"))
        update["messages"] = new
        emit("policy_done", round=rounds, kind=parsed.kind, tool=parsed.tool_name or None)
        return update

    return planner


CHARS_PER_TOKEN_CAP = 16
"""A reply may hold at most this many characters per token of ``max_tokens`` (at least
``MIN_REPLY_CHARS``): far above any tokenizer's average, far below a runaway endpoint's."""
MIN_REPLY_CHARS = 65536


def reply_too_long(reply: AIMessage, ctx: AgentContext) -> str:
    """Why the policy's reply is too long to keep ("" when it is not): an endpoint that
    ignores ``max_tokens`` must not put megabytes into the trajectory."""
    text = reply.content if isinstance(reply.content, str) else str(reply.content)
    size = len(text) + sum(len(str(call.get("args", ""))) for call in reply.tool_calls or [])
    limit = max(MIN_REPLY_CHARS, ctx.max_tokens * CHARS_PER_TOKEN_CAP)
    if size <= limit:
        return ""
    return (f"the policy's reply has {size:,} characters, more than max_tokens={ctx.max_tokens} could produce "
            f"(limit {limit:,}); the endpoint ignored max_tokens, so the reply was not kept")


PLANNER_DESTINATIONS = ("tools", "planner", "binder")


def next_node(update: dict[str, Any]) -> Literal["tools", "planner", "binder"]:
    """Where a planner turn goes, from what it wrote: a termination or an answer -> binder;
    a tool call -> tools; an invalid reply with rounds left -> planner (again).

    The planner routes itself (a ``Command``) rather than through a conditional edge: an
    edge would read the whole state back from the channels after every turn, about a
    third of a millisecond per round, to learn what the turn already knows."""
    if update.get("termination") or update.get("answer") is not None:
        return "binder"
    last = (update.get("messages") or [None])[-1]
    if isinstance(last, AIMessage) and last.tool_calls:
        return "tools"
    return "planner"
