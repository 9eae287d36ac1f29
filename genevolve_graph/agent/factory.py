"""``create_genevolve_agent``: the agent as a compiled graph, in the manner of LangChain's
``create_agent`` / LangGraph's ``create_react_agent``.

    from langchain_openai import ChatOpenAI
    from genevolve_graph import create_genevolve_agent

    agent = create_genevolve_agent(ChatOpenAI(model="gpt-4o-mini"), protocol="native", renderer="none")
    agent.invoke({"request": "A red fox in fresh snow"})

- ``model``: any LangChain chat model, or an ``init_chat_model`` string such as
  ``"openai:gpt-4o-mini"`` (with ``base_url=`` as its endpoint when given). ``protocol="genevolve"`` parses its text replies as
  the released checkpoint's protocol; ``protocol="native"`` binds the tools with
  ``bind_tools`` and reads its ``tool_calls``. ``None`` keeps the context's choice: an
  OpenAI-compatible endpoint (``policy="openai"``) or the offline rule-based planner.
- ``**context_fields`` are ``AgentContext`` fields used as this graph's defaults; a run's
  own ``context=`` overrides the fields it sets. ``policy``, ``search``, ``image_search``
  and ``renderer`` may also be objects instead of names: a policy or chat model, a search
  backend or any LangChain ``BaseTool``/``BaseRetriever``, an image search backend, a
  renderer.
- ``checkpointer`` and ``store`` are handed to ``compile`` as they are: a bare
  ``InMemorySaver()``, ``SqliteSaver`` or ``PostgresSaver`` works without ``serde=``
  (see ``genevolve_graph.core.checkpoint_types``).
"""

from __future__ import annotations

from typing import Any

from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from genevolve_graph.core.context import AgentContext, check_fields
from genevolve_graph.agent.graph import GRAPH_NAME, build_builder
from genevolve_graph.nodes.common import CONTEXT_DEFAULTS_KEY
from genevolve_graph.policies.chat_model import ChatModelPolicy, load_chat_model
from genevolve_graph.core.tracing import default_tags
from genevolve_graph.safety.redaction import redact_value

SERVICE_FIELDS = ("policy", "search", "image_search", "renderer")
"""Context fields that may be given as objects instead of names."""


def _search_object(value: Any) -> Any:
    if isinstance(value, (BaseTool, BaseRetriever)):
        from genevolve_graph.tools.langchain_adapter import LangChainSearch

        return LangChainSearch(value)
    return value


def create_genevolve_agent(
    model: Runnable | str | None = None,
    *,
    protocol: str = "genevolve",
    checkpointer: BaseCheckpointSaver | None = None,
    store: BaseStore | None = None,
    name: str = GRAPH_NAME,
    skills: Any = None,
    **context_fields: Any,
) -> CompiledStateGraph:
    """A compiled GenEvolve agent (see the module docstring)."""
    check_fields(context_fields)
    services: dict[str, Any] = {"skills": skills}
    for field in SERVICE_FIELDS:
        value = context_fields.get(field)
        if value is not None and not isinstance(value, str):
            services[field] = context_fields.pop(field)
    services["search"] = _search_object(services.get("search"))
    if model is not None and services.get("policy") is not None:
        raise ValueError("pass either model= or policy= as an object, not both")
    if isinstance(model, str):  # an init_chat_model string, "openai:gpt-4o-mini"
        model = load_chat_model(model, base_url=context_fields.get("base_url") or None)
    if model is not None:
        services["policy"] = ChatModelPolicy(model, protocol=protocol)
    elif isinstance(services.get("policy"), Runnable) and not hasattr(services["policy"], "respond"):
        services["policy"] = ChatModelPolicy(services["policy"], protocol=protocol)  # a chat model given as policy=
    defaults = {**context_fields, "protocol": protocol}
    ctx = AgentContext(**defaults)  # fails now, with the field named, on a bad value
    policy = services.get("policy")
    label = str(getattr(policy, "name", "") or ctx.policy)
    graph = build_builder(**services).compile(checkpointer=checkpointer, store=store, name=name)
    # Checkpoint metadata takes config["metadata"]: the same tags run_with_saver records, so
    # `export --experiment X` finds the threads of this graph (a run's own metadata wins).
    metadata = {"experiment": ctx.experiment, "policy": label, "protocol": protocol,
                "model": str(getattr(policy, "model", "") or (ctx.model if ctx.policy != "rules" else "rules-v1"))}
    return graph.with_config(configurable={CONTEXT_DEFAULTS_KEY: defaults}, tags=default_tags(label, ctx.experiment),
                             metadata=redact_value(metadata))


__all__ = ["create_genevolve_agent"]
