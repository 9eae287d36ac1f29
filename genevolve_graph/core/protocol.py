"""The GenEvolve text protocol (DESIGN.md §3): what the released checkpoint reads and writes.

Policy reply: ``<think>…</think>`` then exactly one ``<tool_call>{"name", "arguments"}</tool_call>``
or ``<answer>{…}</answer>``. Tool results go back as a *user* message wrapped in
``<tool_response>``. The tools are described in the system prompt, one JSON schema per line
inside ``<tools></tools>``; no ``tools`` parameter is sent.

This module is pure: it parses replies, renders state messages into policy messages, and
formats observations. The planner, the exporter and the trainer all use it, which is what
keeps training tokens identical to inference.
"""

from __future__ import annotations

import json
import re
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

SKILL_NAMES: tuple[str, ...] = (
    "spatial_layout",
    "aesthetic_drawing",
    "text_rendering",
    "creative_drawing",
    "anatomy_body_coherence",
    "attribute_binding",
    "physical_material_consistency",
    "quantity_counting",
)
TOOL_NAMES: tuple[str, ...] = ("search", "image_search", "query_knowledge")
IMG_ID_RE = re.compile(r"\bIMG_(\d{3,})\b")

CONTROL_KEY = "genevolve_control"
"""``additional_kwargs`` key marking a protocol control message (format error, final step)."""


def tool_schemas() -> list[dict[str, Any]]:
    """OpenAI function schemas of the three tools (also what ``native`` mode binds)."""
    return [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Web text search for facts the image must get right. Runs each query and returns titles, URLs and snippets.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "queries": {"type": "array", "items": {"type": "string"}, "description": "One or more search queries."},
                        "top_k": {"type": "integer", "description": "Results per query.", "default": 5},
                    },
                    "required": ["queries"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "image_search",
                "description": "Image search for visual references. Each image comes back with an IMG_### id that the answer can cite.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "What the images should show."},
                        "top_k": {"type": "integer", "description": "Number of images.", "default": 5},
                    },
                    "required": ["query"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "query_knowledge",
                "description": "Fetch a generation skill guide: when it applies and the concrete constraints to write into the prompt.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "skill_name": {"type": "string", "enum": list(SKILL_NAMES), "description": "The skill to read."},
                    },
                    "required": ["skill_name"],
                },
            },
        },
    ]


ANSWER_TOOL = "submit_program"
"""The structured final answer of ``native`` mode: a tool-calling model submits the program as
a tool call instead of writing ``<answer>`` JSON in prose."""


def answer_tool_schema() -> dict[str, Any]:
    """OpenAI function schema of ``submit_program``: the answer JSON of DESIGN.md §3 as arguments."""
    return {
        "type": "function",
        "function": {
            "name": ANSWER_TOOL,
            "description": "Finish: submit the prompt-reference program. Call it once, when the evidence is gathered; it ends the planning.",
            "parameters": {
                "type": "object",
                "properties": {
                    "gen_prompt": {"type": "string", "description": "The full generation prompt; references named only as 'the first reference image', ..."},
                    "reference_images": {
                        "type": "array",
                        "description": "The images to condition on, by the IMG_### ids that image_search returned.",
                        "items": {
                            "type": "object",
                            "properties": {
                                "img_id": {"type": "string", "description": "An IMG_### id from image_search."},
                                "note": {"type": "string", "description": "What to take from this image."},
                            },
                            "required": ["img_id"],
                        },
                    },
                },
                "required": ["gen_prompt", "reference_images"],
            },
        },
    }


def native_tool_schemas() -> list[dict[str, Any]]:
    """What ``native`` mode binds: the three tools and ``submit_program``. The text protocol's
    ``<tools>`` block stays the three tools, as the released checkpoint was trained on."""
    return [*tool_schemas(), answer_tool_schema()]


def tools_block() -> str:
    """The ``<tools>`` section of the system prompt: one JSON schema per line."""
    lines = [json.dumps(schema, ensure_ascii=False) for schema in tool_schemas()]
    return "<tools>\n" + "\n".join(lines) + "\n</tools>"


# --------------------------------------------------------------------------- parsing

ReplyKind = Literal["tool_call", "answer", "invalid"]


@dataclass
class ParsedReply:
    """A policy reply, understood."""

    kind: ReplyKind
    think: str = ""
    tool_name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    answer: dict[str, Any] | None = None
    problem: str = ""
    """Why the reply is invalid, in words the policy can act on."""


_THINK_RE = re.compile(r"<think>(.*?)</think>", re.S)
_TOOL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.S)
_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)
_TRAILING_COMMA_RE = re.compile(r",\s*([}\]])")


def loads_lenient(text: str) -> Any:
    """``json.loads`` that forgives code fences, trailing commas and text around the object."""
    candidate = text.strip()
    fenced = _FENCE_RE.match(candidate)
    if fenced:
        candidate = fenced.group(1)
    attempts = [candidate]
    start, end = candidate.find("{"), candidate.rfind("}")
    if start != -1 and end > start:
        attempts.append(candidate[start : end + 1])
    last_error: Exception | None = None
    for attempt in attempts:
        for variant in (attempt, _TRAILING_COMMA_RE.sub(r"\1", attempt)):
            try:
                return json.loads(variant)
            except json.JSONDecodeError as exc:
                last_error = exc
    raise ValueError(f"not valid JSON ({last_error})")


def validate_tool_call(name: str, arguments: Any) -> tuple[dict[str, Any], str]:
    """Check a tool call against the schemas. Returns (normalised arguments, problem)."""
    if name not in TOOL_NAMES:
        return {}, f"unknown tool {name!r}; the tools are {', '.join(TOOL_NAMES)}"
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return {}, "the tool call's arguments are not a JSON object"
    if not isinstance(arguments, dict):
        return {}, "the tool call's arguments must be a JSON object"
    args = dict(arguments)
    if name == "search":
        queries = args.get("queries", args.get("query"))
        if isinstance(queries, str):
            queries = [queries]
        if not isinstance(queries, list) or not queries or not all(isinstance(q, str) and q.strip() for q in queries):
            return {}, "search needs 'queries': a non-empty list of strings"
        out: dict[str, Any] = {"queries": [q.strip() for q in queries]}
    elif name == "image_search":
        query = args.get("query")
        if isinstance(query, list) and query and isinstance(query[0], str):
            query = query[0]
        if not isinstance(query, str) or not query.strip():
            return {}, "image_search needs 'query': a non-empty string"
        out = {"query": query.strip()}
    else:
        skill = args.get("skill_name")
        if skill not in SKILL_NAMES:
            return {}, f"query_knowledge needs 'skill_name', one of {', '.join(SKILL_NAMES)}"
        out = {"skill_name": skill}
    if name in ("search", "image_search") and "top_k" in args:
        try:
            out["top_k"] = max(1, min(10, int(args["top_k"])))
        except (TypeError, ValueError):
            return {}, "'top_k' must be an integer"
    return out, ""


def parse_reply(text: str) -> ParsedReply:
    """Parse one GenEvolve-format policy reply."""
    think_match = _THINK_RE.search(text)
    think = think_match.group(1).strip() if think_match else ""
    body = _THINK_RE.sub("", text)
    tool_blocks = _TOOL_RE.findall(body)
    answer_blocks = _ANSWER_RE.findall(body)
    if tool_blocks and answer_blocks:
        return ParsedReply("invalid", think, problem="the reply holds both a <tool_call> and an <answer>; give exactly one")
    if len(tool_blocks) > 1:
        return ParsedReply("invalid", think, problem="the reply holds several <tool_call> blocks; make one tool call per round")
    if len(answer_blocks) > 1:
        return ParsedReply("invalid", think, problem="the reply holds several <answer> blocks; give exactly one")
    if tool_blocks:
        try:
            call = loads_lenient(tool_blocks[0])
        except ValueError as exc:
            return ParsedReply("invalid", think, problem=f"the <tool_call> is {exc}")
        if not isinstance(call, dict) or "name" not in call:
            return ParsedReply("invalid", think, problem='the <tool_call> must be {"name": ..., "arguments": {...}}')
        args, problem = validate_tool_call(str(call["name"]), call.get("arguments", {}))
        if problem:
            return ParsedReply("invalid", think, problem=problem)
        return ParsedReply("tool_call", think, tool_name=str(call["name"]), arguments=args)
    if answer_blocks:
        try:
            answer = loads_lenient(answer_blocks[0])
        except ValueError as exc:
            return ParsedReply("invalid", think, problem=f"the <answer> is {exc}")
        problem = answer_shape_problem(answer)
        if problem:
            return ParsedReply("invalid", think, problem=problem)
        return ParsedReply("answer", think, answer=answer)
    return ParsedReply("invalid", think, problem="the reply has neither a <tool_call> nor an <answer>")


def answer_shape_problem(answer: Any) -> str:
    """Why an answer JSON cannot be a program at all ('' when its shape is fine)."""
    if not isinstance(answer, dict):
        return "the <answer> must be a JSON object"
    prompt = answer.get("gen_prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "the <answer> needs a non-empty 'gen_prompt' string"
    refs = answer.get("reference_images", [])
    if refs is None:
        refs = []
    if not isinstance(refs, list):
        return "'reference_images' must be a list of {\"img_id\", \"note\"}"
    for ref in refs:
        if not (isinstance(ref, dict) and isinstance(ref.get("img_id"), str)) and not isinstance(ref, str):
            return "each reference must be {\"img_id\": \"IMG_###\", \"note\": \"...\"}"
    return ""


# --------------------------------------------------------------------------- rendering


def new_id(prefix: str) -> str:
    """A message id (the DeltaChannel reducer needs every message to carry one)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def wrap_tool_response(observation: str) -> str:
    return f"<tool_response>\n{observation}\n</tool_response>"


def control_message(text: str, kind: str) -> HumanMessage:
    """A protocol control message (format error, final step) as the state stores it."""
    return HumanMessage(content=text, id=new_id(kind), additional_kwargs={CONTROL_KEY: kind})


def policy_messages(messages: list[BaseMessage], protocol: str = "genevolve") -> list[BaseMessage]:
    """The messages the policy receives, built from the state's messages.

    ``genevolve``: assistant turns are their raw text; tool results and format-error
    messages become user turns wrapped in ``<tool_response>``. ``native``: tool calls and tool messages stay native.
    Metadata (ids, control markers) is dropped so that the request carries only roles and
    content.
    """
    out: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            out.append(SystemMessage(content=message.content))
        elif isinstance(message, ToolMessage):
            if protocol == "native":
                out.append(ToolMessage(content=message.content, tool_call_id=message.tool_call_id))
            else:
                out.append(HumanMessage(content=_tool_content(message)))
        elif isinstance(message, AIMessage):
            if protocol == "native" and message.tool_calls:
                out.append(AIMessage(content=message.content, tool_calls=message.tool_calls))
            else:
                out.append(AIMessage(content=message.content))
        elif isinstance(message, HumanMessage):
            if protocol != "native" and message.additional_kwargs.get(CONTROL_KEY) == "format_error":
                # An observation like any tool result: the released checkpoint was trained on that framing.
                out.append(HumanMessage(content=wrap_tool_response(str(message.content))))
            else:
                out.append(HumanMessage(content=message.content))
        else:  # pragma: no cover - the graph writes only the kinds above
            raise TypeError(f"unexpected message type {type(message).__name__}")
    return out


class RenderedMessages:
    """``policy_messages`` one message at a time, each state message rendered once.

    A trajectory resends its whole conversation every round; rendering it again each time
    costs a pydantic message per message per round, and hands the chat model new objects
    it must convert again. This keeps the rendered message of each state message (by its
    ``id``, checked against the message's content, so a message replaced under the same id
    is rendered anew). One instance per policy.

    An entry lives as long as its state message: it is dropped when the trajectory that
    holds the message is gone, so the cache holds the trajectories in flight, not every
    trajectory a batch has run (``size`` bounds it besides, oldest out first).
    """

    def __init__(self, protocol: str = "genevolve", size: int = 16384) -> None:
        self.protocol = protocol
        self.size = size
        self._cache: OrderedDict[str, tuple[weakref.ref[BaseMessage], BaseMessage]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def render(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        out: list[BaseMessage] = []
        cache = self._cache
        for message in messages:
            key = message.id
            hit = cache.get(key) if key else None
            if hit is not None:
                held = hit[0]()
                if held is message or (held is not None and _same_message(held, message)):
                    cache.move_to_end(key)
                    out.append(hit[1])
                    continue
            rendered = policy_messages([message], self.protocol)[0]
            if key:
                cache[key] = (weakref.ref(message, self._forget(key)), rendered)
                if len(cache) > self.size:
                    cache.popitem(last=False)
            out.append(rendered)
        return out

    def _forget(self, key: str) -> Any:
        """The callback that drops ``key``'s entry once its state message is collected (not a
        newer entry stored under the same id)."""
        cache = self._cache

        def forget(ref: weakref.ref[BaseMessage]) -> None:
            entry = cache.get(key)
            if entry is not None and entry[0] is ref:
                del cache[key]

        return forget


def _same_message(a: BaseMessage, b: BaseMessage) -> bool:
    """Whether two state messages render the same (what ``policy_messages`` reads)."""
    return (type(a) is type(b) and a.content == b.content
            and getattr(a, "tool_calls", None) == getattr(b, "tool_calls", None)
            and getattr(a, "tool_call_id", None) == getattr(b, "tool_call_id", None))


def _tool_content(message: ToolMessage) -> Any:
    """A tool message as a ``<tool_response>`` user turn (image parts kept after the text)."""
    content = message.content
    if isinstance(content, str):
        return wrap_tool_response(content)
    parts = list(content)
    text = "\n".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")
    others = [p for p in parts if not (isinstance(p, dict) and p.get("type") == "text")]
    return [{"type": "text", "text": wrap_tool_response(text)}, *others]


def chat_dicts(messages: list[BaseMessage], protocol: str = "genevolve") -> list[dict[str, Any]]:
    """``[{"role", "content"}]`` exactly as sent over the OpenAI chat API (genevolve mode)."""
    role = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
    out: list[dict[str, Any]] = []
    for message in policy_messages(messages, protocol):
        item: dict[str, Any] = {"role": role[message.type], "content": message.content}
        if isinstance(message, AIMessage) and message.tool_calls:
            item["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["args"], ensure_ascii=False)}}
                for c in message.tool_calls
            ]
        if isinstance(message, ToolMessage):
            item["tool_call_id"] = message.tool_call_id
        out.append(item)
    return out


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The ``<tool_call>`` block for a call (the rules policy writes replies with it)."""
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "</tool_call>"


def format_answer(answer: dict[str, Any]) -> str:
    return "<answer>" + json.dumps(answer, ensure_ascii=False) + "</answer>"
