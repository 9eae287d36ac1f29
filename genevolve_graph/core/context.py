"""Runtime context: the static settings of a run (policy, budgets, backends).

The field descriptions become LangGraph Studio's configuration form
(``graph.get_context_jsonschema()``). Defaults are the released GenEvolve runtime's where
one exists, and the offline backends otherwise, so a run works with no network.
Secrets (API keys) are never stored here: backends read them from the environment, so
they never reach a checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from pydantic import ConfigDict

from genevolve_graph.core.registry import GENERATORS, IMAGE_SEARCH, POLICIES, REGISTRIES, SEARCH

Protocol = Literal["genevolve", "native"]
# Fixed choices for the schema (Studio shows them as drop-downs): the built-in names plus
# the names installed packages register through entry points, as found when this module is
# first imported (a server process imports it at start). A plugin installed later in a
# running process is still accepted by the validation below, which asks the registry itself.
PolicyName = Literal[tuple(POLICIES.names())]  # type: ignore[valid-type]
SearchName = Literal[tuple(SEARCH.names())]  # type: ignore[valid-type]
ImageSearchName = Literal[tuple(IMAGE_SEARCH.names())]  # type: ignore[valid-type]
RendererName = Literal[tuple(GENERATORS.names())]  # type: ignore[valid-type]
Guidance = Literal["off", "retrieve"]


def _env(*names: str, default: str = "") -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


@dataclass(kw_only=True)
class AgentContext:
    """Settings of one trajectory. Every field has a default; pass only what differs."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # the JSON schema says: no other keys

    policy: PolicyName = field(
        default="rules",
        metadata={"description": "Planner policy: 'openai' (an OpenAI-compatible endpoint such as vLLM serving the GenEvolve checkpoint) or 'rules' (the offline rule-based baseline)."},
    )
    base_url: str = field(
        default="",
        metadata={"description": "OpenAI-compatible endpoint for policy 'openai', e.g. http://127.0.0.1:8000/v1. Defaults to GENEVOLVE_BASE_URL or OPENAI_BASE_URL."},
    )
    model: str = field(
        default="",
        metadata={"description": "Model name served at base_url, or an init_chat_model string such as 'openai:gpt-4o-mini' "
                                 "(served callers: only providers in the server's GENEVOLVE_ALLOWED_MODEL_PROVIDERS). Defaults to GENEVOLVE_MODEL."},
    )
    protocol: Protocol = field(
        default="genevolve",
        metadata={"description": "'genevolve': the released checkpoint's text protocol (<tool_call>/<answer> in plain text, tools in the system prompt). 'native': OpenAI tool calling via bind_tools."},
    )
    temperature: float = field(default=0.6, metadata={"description": "Policy sampling temperature."})
    top_p: float = field(default=0.9, metadata={"description": "Policy nucleus sampling."})
    max_tokens: int = field(default=4096, metadata={"description": "Maximum tokens per policy round."})
    max_rounds: int = field(default=11, metadata={"description": "Maximum policy rounds; the last one must answer."})
    max_tool_calls: int = field(default=10, metadata={"description": "Maximum tool calls in a trajectory."})
    n_max_reference_images: int = field(default=2, metadata={"description": "Maximum reference images in a program."})
    max_prompt_chars: int = field(default=4000, metadata={"description": "Longest gen_prompt in characters; a longer one is cut at a word boundary (a recorded repair)."})
    top_k: int = field(default=5, metadata={"description": "Default number of results per search when the policy gives none."})
    request_timeout: float = field(default=120.0, metadata={"description": "Seconds one policy request may take in all, connect to last byte (the outbound total deadline)."})
    max_retries: int = field(default=3, metadata={"description": "Retries of a failed policy request (429, 5xx, timeouts, connection errors)."})
    retry_initial_delay: float = field(default=1.0, metadata={"description": "First backoff delay in seconds; it doubles per retry, with jitter."})
    search: SearchName = field(default="local", metadata={"description": "Text search backend: 'local' (BM25 over a JSONL corpus) or a web backend."})
    corpus: str = field(default="", metadata={"description": "JSONL corpus for the local search backend (title, url, text per line). Empty: the bundled example corpus."})
    image_search: ImageSearchName = field(default="local", metadata={"description": "Image search backend: 'local' (a folder of captioned images) or a web backend."})
    image_dir: str = field(default="", metadata={"description": "Image folder for the local image search backend. Empty: the bundled example images."})
    skills_dir: str = field(default="", metadata={"description": "Folder of extra or overriding skill guides (NAME.md)."})
    system_prompt_file: str = field(default="", metadata={"description": "File with another system prompt; '{tools}' in it is replaced by the tool signatures."})
    renderer: RendererName = field(default="preview", metadata={"description": "Generator backend: 'preview' (offline storyboard), 'none' to skip rendering, or another installed backend."})
    output_dir: str = field(default="", metadata={"description": "Where rendered images go. Empty: a folder under the user's cache directory."})
    seed: int = field(default=0, metadata={"description": "Render seed."})
    review_before_render: bool = field(
        default=False,
        metadata={"description": "Pause after the emitter for a human to approve, edit or reject the program before it is rendered (needs a checkpointer; resume with Command(resume={'action': 'approve' | 'edit' | 'reject'}))."},
    )
    experiment: str = field(default="", metadata={"description": "Experiment tag recorded in checkpoint metadata."})
    guidance: Guidance = field(
        default="off",
        metadata={"description": "'off': the released protocol. 'retrieve': look up the top Decision Guide for the request (long-term memory: guide_dir when set, else the graph's store) and append it to the system prompt, as the SDL teacher reads it."},
    )
    guide_gate: float = field(default=0.84, metadata={"description": "Minimum cosine similarity for a retrieved guide to be used (the training gate)."})
    guide_namespace: str = field(default="genevolve/guides", metadata={"description": "Store namespace of the guides, '/'-separated."})
    guide_dir: str = field(default="", metadata={"description": "Experience buffer folder (guides.jsonl + embeddings.npy) used for guidance=retrieve; when set it wins over the graph's store (under langgraph dev the server always brings one)."})
    embedding_model: str = field(default="Qwen/Qwen3-Embedding-0.6B", metadata={"description": "sentence-transformers model (hub id or local path) that embeds requests for guide_dir."})
    options: dict[str, Any] = field(default_factory=dict, metadata={"description": "Backend-specific options (for example service URLs or a pipeline path)."})

    def __post_init__(self) -> None:
        check_value_types(self)
        if self.protocol not in ("genevolve", "native"):
            raise ValueError(f"unknown protocol {self.protocol!r} (context field 'protocol'); choose 'genevolve' or 'native'")
        for name, registry in REGISTRIES.items():
            registry.check(getattr(self, name))
        if not self.base_url:
            self.base_url = _env("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL")
        if not self.model:
            self.model = _env("GENEVOLVE_MODEL")

    def with_updates(self, **changes: Any) -> "AgentContext":
        """A copy with some fields changed (a caller's context stays a caller's context)."""
        copy = replace(self, **changes)
        return mark_caller(copy) if is_caller_context(self) else copy

    @classmethod
    def coerce(cls, value: "AgentContext | dict[str, Any] | None") -> "AgentContext":
        """Accept a context object, a plain dict (Studio, the SDK) or nothing.

        A dict is caller data: the object made from it is marked so that the nodes confine
        it (``genevolve_graph.core.guard``)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return mark_caller(cls(**value))  # unknown keys raise in __init__ (check_fields)
        raise TypeError(f"context must be an AgentContext or a dict, not {type(value).__name__}")


_CALLER_MARK = "_genevolve_caller"


def mark_caller(ctx: AgentContext) -> AgentContext:
    """Tag a context built from caller data, so that every node checks it (``core.guard``).

    The mark lives here, beside the type, so that ``with_updates`` and ``coerce`` keep it
    without the context importing the guard that reads it."""
    object.__setattr__(ctx, _CALLER_MARK, True)
    return ctx


def is_caller_context(ctx: Any) -> bool:
    """Whether ``ctx`` was built from caller data (see :func:`mark_caller`)."""
    return bool(getattr(ctx, _CALLER_MARK, False))


def check_fields(value: dict[str, Any]) -> None:
    """Raise a one-line ``ValueError`` naming unknown context keys and the known ones."""
    known = [f.name for f in fields(AgentContext)]
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"unknown context field(s) {unknown}; known fields: {sorted(known)}")


_dataclass_init = AgentContext.__init__


def _checked_init(self: AgentContext, **kwargs: Any) -> None:
    # LangGraph builds the context with ``AgentContext(**dict)``; an unknown key would
    # otherwise surface as a bare "unexpected keyword argument" TypeError.
    check_fields(kwargs)
    _dataclass_init(self, **kwargs)
    object.__setattr__(self, "_explicit", frozenset(kwargs))


def explicit_fields(ctx: AgentContext) -> frozenset[str]:
    """The fields a caller set when building ``ctx`` (the others hold defaults)."""
    return getattr(ctx, "_explicit", frozenset(f.name for f in fields(ctx)))


def with_defaults(ctx: "AgentContext | dict[str, Any] | None", defaults: dict[str, Any]) -> AgentContext:
    """``ctx`` on top of ``defaults``: what the caller set wins, the rest comes from ``defaults``
    (the settings given to ``create_genevolve_agent``)."""
    if ctx is None:
        return AgentContext(**defaults)
    if isinstance(ctx, dict):
        return AgentContext(**{**defaults, **ctx})
    explicit = explicit_fields(ctx)
    missing = {k: v for k, v in defaults.items() if k not in explicit}
    return ctx.with_updates(**missing) if missing else ctx


_checked_init.__wrapped__ = _dataclass_init  # type: ignore[attr-defined]
AgentContext.__init__ = _checked_init  # type: ignore[method-assign]


_KINDS: dict[str, tuple[tuple[type, ...], str]] = {}
"""Field name -> (accepted Python types, the kind in words), read once from the annotations."""


def _kinds() -> dict[str, tuple[tuple[type, ...], str]]:
    if not _KINDS:
        import typing

        hints = typing.get_type_hints(AgentContext)
        for item in fields(AgentContext):
            hint = hints[item.name]
            origin = typing.get_origin(hint)
            if hint is bool:
                _KINDS[item.name] = ((bool,), "true or false")
            elif hint is int:
                _KINDS[item.name] = ((int,), "a whole number")
            elif hint is float:
                _KINDS[item.name] = ((int, float), "a number")
            elif hint is str or origin is Literal:
                _KINDS[item.name] = ((str,), "a string")
            elif origin is dict or hint is dict:
                _KINDS[item.name] = ((dict,), "a JSON object")
    return _KINDS


def check_value_types(ctx: Any) -> None:
    """``ValueError`` naming the first field whose value has the wrong JSON type: a served
    graph builds its context from a caller's JSON, where ``"max_rounds": "11"`` would
    otherwise fail deep inside a node (``'<' not supported between 'int' and 'str'``)."""
    for name, (types, kind) in _kinds().items():
        value = getattr(ctx, name)
        wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if wrong:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ValueError(f"context field {name!r} must be {kind}, not {shown} ({type(value).__name__}); fix the value in the run's context")
