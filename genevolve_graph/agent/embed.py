"""The agent inside other applications: a LangChain ``Runnable``, and a node of another graph.

- :func:`as_runnable` turns the agent into a ``Runnable`` that takes a request (a string, a
  dict, a prompt value or a message) and returns the :class:`~genevolve_graph.core.state.Program`,
  so it composes with ``|``, ``batch``, ``with_retry``, ``with_fallbacks`` like any chain step.
- :func:`agent_subgraph` is the compiled agent without a checkpointer, to be added as a node
  of a parent graph whose state shares the agent's keys (``request``, ``program``, ...): it
  then records into the parent's checkpointer under its own checkpoint namespace.
- :func:`agent_node` is a node for a parent graph with other key names: it reads the request
  from one key and writes the program (and why it ended) to others, with its own context.

Everything streams: a parent run with ``stream_mode=["updates", "custom"], subgraphs=True``
sees the agent's node updates and its progress events (``tool_started``, ``image_ready``,
``tool_done``, ``render_started``, ``render_done``, ...), tagged with the subgraph namespace.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.graph.state import CompiledStateGraph

from genevolve_graph.core.context import AgentContext
from genevolve_graph.agent.graph import build_builder, build_graph, recursion_limit
from genevolve_graph.core.guard import check_caller_context, is_caller_context
from genevolve_graph.core.state import Program

REQUEST_KEYS = ("request", "question", "prompt")
"""Keys read from a dict input, in this order (benchmark rows carry ``question`` or ``prompt``)."""


class NoProgramError(RuntimeError):
    """The agent ended without a program; ``termination`` and ``error`` say why."""

    def __init__(self, termination: str | None, error: str | None, state: Mapping[str, Any] | None = None) -> None:
        self.termination = termination
        self.error = error
        self.state = dict(state or {})
        super().__init__(f"the agent produced no program (termination {termination!r}): {error or 'no reason recorded'}")


def request_text(value: Any) -> str:
    """The request in ``value``: a string, a dict with ``request``/``question``/``prompt``, a
    prompt value (from a prompt template) or a message (from a chat model)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, PromptValue):
        text = value.to_string()
    elif isinstance(value, BaseMessage):
        text = value.text if isinstance(value.text, str) else str(value.content)
    elif isinstance(value, Mapping):
        key = next((k for k in REQUEST_KEYS if isinstance(value.get(k), str)), None)
        if key is None:
            raise TypeError(f"the agent's input dict needs a 'request' string (or 'question'/'prompt'); got keys {sorted(value)}")
        text = value[key]
    else:
        raise TypeError(
            f"the agent takes a request string, a dict with 'request', a prompt value or a message; got {type(value).__name__}"
        )
    if not text.strip():
        raise ValueError("the request is empty; pass the image request as text")
    return text.strip()


def to_agent_input(value: Any) -> dict[str, str]:
    """The graph input for any accepted request form."""
    return {"request": request_text(value)}


def to_program(state: Mapping[str, Any]) -> Program:
    """The program from a finished run's output, or ``NoProgramError`` naming the cause."""
    program = state.get("program")
    if program is None:
        raise NoProgramError(state.get("termination"), state.get("error"), state)
    return program if isinstance(program, Program) else Program.model_validate(program)


def _coerce_checked(context: AgentContext | Mapping[str, Any] | None) -> AgentContext:
    """The context as an object; a dict is a caller's and is confined now (a clear error at
    construction) and again by every node when it runs."""
    ctx = AgentContext.coerce(dict(context) if isinstance(context, Mapping) else context)
    if is_caller_context(ctx):
        check_caller_context(ctx)
    return ctx


def as_runnable(
    graph: CompiledStateGraph | None = None,
    *,
    context: AgentContext | Mapping[str, Any] | None = None,
) -> Runnable[Any, Program]:
    """The agent as ``request -> Program``, built from LangChain runnables.

    ``graph`` defaults to a new agent graph without a checkpointer. With a graph that has one,
    each call runs in its own thread (a new uuid) unless the caller's config names a
    ``thread_id``, and carries the run metadata of ``runner.run_config`` (policy, model,
    experiment, ...), so embedded runs export like command-line runs.
    """
    ctx = _coerce_checked(context)
    agent = graph if graph is not None else build_graph()
    bound = agent.bind(context=ctx).with_config(recursion_limit=recursion_limit(ctx))
    step: Runnable = bound
    if agent.checkpointer is not None:
        from genevolve_graph.agent.runner import run_config

        def recorded_config(config: RunnableConfig) -> dict[str, Any]:
            thread_id = (config.get("configurable") or {}).get("thread_id") or str(uuid.uuid4())
            base = run_config(ctx, thread_id)
            base["metadata"] = {**base["metadata"], **(config.get("metadata") or {})}
            return base

        def run(payload: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
            return bound.invoke(payload, recorded_config(config))

        async def arun(payload: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
            return await bound.ainvoke(payload, recorded_config(config))

        step = RunnableLambda(run, afunc=arun, name="genevolve_recorded")
    chain = RunnableLambda(to_agent_input, name="request") | step | RunnableLambda(to_program, name="program")
    return chain.with_config(run_name="genevolve")


def agent_subgraph(*, confine: bool = False, **services: Any) -> CompiledStateGraph:
    """The compiled agent with no checkpointer of its own: as a node of a parent graph it
    uses the parent's (its checkpoints sit under the node's checkpoint namespace). The parent
    passes an ``AgentContext`` (or a dict of its fields) as the run's context.

    A dict context is a caller's and is confined (``genevolve_graph.core.guard``). A parent that
    declares ``AgentContext`` as its own context schema gets dicts turned into objects by
    LangGraph before the agent sees them: if it serves callers, pass ``confine=True``."""
    return build_builder(confine=confine, **services).compile(name="genevolve")


def agent_node(
    context: AgentContext | Mapping[str, Any] | None = None,
    *,
    graph: CompiledStateGraph | None = None,
    input_key: str = "request",
    output_key: str = "program",
    termination_key: str | None = "termination",
) -> RunnableLambda:
    """A node for a parent graph whose state names things differently.

    It reads the request from ``state[input_key]`` (any form :func:`request_text` accepts),
    runs the agent with ``context`` (the parent's own context is not an ``AgentContext``),
    and returns ``{output_key: Program | None, termination_key: ...}``. The agent's
    checkpoints go to the parent's checkpointer, and its progress events stream through the
    parent's ``custom`` mode.
    """
    ctx = _coerce_checked(context)
    agent = graph if graph is not None else agent_subgraph()

    def update(result: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {output_key: result.get("program")}
        if termination_key:
            out[termination_key] = result.get("termination")
        return out

    def node(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        result = agent.invoke(to_agent_input(state[input_key]), config, context=ctx)
        return update(result)

    async def anode(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        result = await agent.ainvoke(to_agent_input(state[input_key]), config, context=ctx)
        return update(result)

    return RunnableLambda(node, afunc=anode, name="genevolve_agent")


__all__ = [
    "NoProgramError",
    "agent_node",
    "agent_subgraph",
    "as_runnable",
    "request_text",
    "to_agent_input",
    "to_program",
]
