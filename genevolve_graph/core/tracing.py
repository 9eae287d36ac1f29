"""Names and tags that make a trajectory easy to find in LangSmith (or any LangChain tracer).

- The policy turn is a run named ``policy`` (a chat-model run for model policies, a chain
  run for the rule-based planner).
- Each tool call is a LangChain tool run named after the tool.
- Every run the agent starts carries the tags ``genevolve``, ``policy:<name>`` and, when the
  context names one, ``experiment:<name>``; the same values go into the run metadata.
Nothing here sends anything anywhere: tracing happens only when the caller configured a
tracer (``LANGSMITH_TRACING=true`` or callbacks in the run config).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.globals import get_debug, get_verbose
from langchain_core.runnables.config import ensure_config
from langchain_core.tracers.context import _configure_hooks, _tracing_v2_is_enabled, tracing_v2_callback_var
from langchain_core.utils.env import env_var_is_set
from langsmith.run_helpers import get_tracing_context

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

POLICY_RUN_NAME = "policy"
BASE_TAG = "genevolve"


def default_tags(policy: str, experiment: str = "") -> list[str]:
    """``["genevolve", "policy:<policy>", "experiment:<experiment>"]`` (the last one when set)."""
    tags = [BASE_TAG, f"policy:{policy}"]
    if experiment:
        tags.append(f"experiment:{experiment}")
    return tags


def policy_label(ctx: "AgentContext", policy: Any = None) -> str:
    """The policy's name for tags: an injected policy's own ``name``, else the context's."""
    return str(getattr(policy, "name", "") or ctx.policy)


def run_config(ctx: "AgentContext", *, run_name: str | None = None, policy: Any = None) -> dict[str, Any]:
    """A child run config with the default tags and metadata (merged into the parent's by LangChain)."""
    label = policy_label(ctx, policy)
    config: dict[str, Any] = {
        "tags": default_tags(label, ctx.experiment),
        "metadata": {"genevolve_policy": label, "genevolve_experiment": ctx.experiment},
    }
    if run_name:
        config["run_name"] = run_name
    return config


def nobody_listens(config: Any = None) -> bool:
    """Whether no LangChain run started now would be observed: no callback handler in the
    running config or in ``config``, no LangSmith/LangChain tracing (environment, context
    or tracing hooks), no debug or verbose mode. Callers skip building runs nobody sees
    (callback managers cost more than a tool call or an HTTP exchange at batch sizes);
    with any listener they make the run as usual."""
    for callbacks in (ensure_config().get("callbacks"), (config or {}).get("callbacks")):
        if callbacks and (isinstance(callbacks, list) or callbacks.handlers or callbacks.inheritable_handlers):
            return False
    if get_debug() or get_verbose():
        return False
    if _tracing_v2_is_enabled() or tracing_v2_callback_var.get() is not None or get_tracing_context()["parent"] is not None:
        return False
    if env_var_is_set("LANGCHAIN_TRACING"):
        return False
    return not any(var.get() is not None or (env and env_var_is_set(env)) for var, _inh, _cls, env in _configure_hooks)


__all__ = ["BASE_TAG", "POLICY_RUN_NAME", "default_tags", "nobody_listens", "policy_label", "run_config"]
