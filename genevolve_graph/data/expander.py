"""Recipe cell -> natural requests with explicit hard constraints, written by a chat model.

Any LangChain chat model works (``ainvoke`` on a list of messages); an OpenAI-compatible
endpoint is used through ``langchain_openai.ChatOpenAI``. The model's reply is read as JSON
(fences, prose around it and trailing commas forgiven); a reply that cannot be read is
asked for again, up to three replies in all.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from genevolve_graph.data.recipes import AXES, AXIS_LABELS, Cell, ExpanderConfig, Recipe, RecipeError

MAX_REQUEST_CHARS = 2000
MAX_CONSTRAINTS = 12


class ExpansionError(RuntimeError):
    """The expander gave no usable reply (endpoint failure or unreadable output)."""


def expander_prompt() -> str:
    return resources.files("genevolve_graph.data").joinpath("prompts", "expander.md").read_text(encoding="utf-8").strip()


def cell_message(recipe: Recipe, cell: Cell, count: int) -> str:
    """The user turn: the cell, axis by axis, and how many requests to write."""
    lines = [f"Recipe: {recipe.name}" + (f" ({recipe.description.strip()})" if recipe.description.strip() else ""), "Cell:"]
    for axis in AXES:
        lines.append(f"- {AXIS_LABELS[axis]}: {recipe.describe(axis, getattr(cell, axis))}")
    lines.append(f"Write {count} requests.")
    return "\n".join(lines)


def make_chat_model(config: ExpanderConfig) -> Any:
    """The configured chat model: ``chat_model: module:attr`` or an OpenAI-compatible endpoint."""
    if config.chat_model:
        module_name, _, attribute = config.chat_model.partition(":")
        if not module_name or not attribute:
            raise RecipeError(f"expander.chat_model {config.chat_model!r} is not module:attribute (e.g. mypkg.models:chat)")
        from genevolve_graph.core.registry import import_path

        try:
            target = import_path(config.chat_model)
        except (ImportError, AttributeError) as exc:
            raise RecipeError(f"expander.chat_model {config.chat_model!r} cannot be imported ({exc}); check the name") from None
        model = target() if callable(target) and not hasattr(target, "ainvoke") else target
        if not hasattr(model, "ainvoke"):
            raise RecipeError(f"expander.chat_model {config.chat_model!r} is not a LangChain chat model (no ainvoke)")
        return model
    if not config.base_url or not config.model:
        raise RecipeError("the recipe's expander needs base_url and model (an OpenAI-compatible endpoint) or chat_model")
    from langchain_openai import ChatOpenAI

    from genevolve_graph.net.limits import OutboundLimits, limited_client

    # An HTTP client of this event loop: langchain-openai otherwise shares one cached async
    # client per process, which a second asyncio.run (a notebook, a resumed build) finds closed.
    # It is under the outbound policy: ``timeout`` is each request's total deadline, the reply capped.
    return ChatOpenAI(base_url=config.base_url, model=config.model, api_key=config.api_key() or "EMPTY",
                      temperature=config.temperature, max_retries=config.max_retries, timeout=config.timeout,
                      max_tokens=config.max_tokens, http_async_client=limited_client(OutboundLimits.resolve(total_deadline_s=config.timeout)))


def parse_requests(text: str) -> list[Any]:
    """The list of request entries in a reply; raises ``ValueError`` when there is none."""
    from genevolve_graph.evaluation.parsing import recover_object

    obj = recover_object(text, ("requests",))
    entries = obj.get("requests")
    if not isinstance(entries, list):
        raise ValueError("the reply has no 'requests' list")
    return entries


def clean_entry(entry: Any) -> tuple[dict[str, Any] | None, str]:
    """A checked request entry, or None and why it is unusable."""
    if not isinstance(entry, dict):
        return None, "not an object"
    text = entry.get("request")
    if not isinstance(text, str) or not text.strip():
        return None, "no request text"
    text = " ".join(text.split())
    if len(text) > MAX_REQUEST_CHARS:
        return None, f"request longer than {MAX_REQUEST_CHARS} characters"
    constraints = entry.get("hard_constraints")
    if not isinstance(constraints, list) or not constraints:
        return None, "no hard constraints"
    cleaned = [" ".join(str(c).split()) for c in constraints if isinstance(c, (str, int, float)) and str(c).strip()]
    if len(cleaned) != len(constraints) or len(cleaned) > MAX_CONSTRAINTS:
        return None, "hard constraints must be 1-12 non-empty strings"
    return {"request": text, "hard_constraints": cleaned}, ""


class RequestExpander:
    """Asks a chat model for ``count`` requests of one cell."""

    def __init__(self, chat_model: Any, *, language: str = "English", attempts: int = 3) -> None:
        self.chat_model = chat_model
        self.language = language
        self.attempts = attempts

    async def expand(self, recipe: Recipe, cell: Cell, count: int) -> tuple[list[dict[str, Any]], list[str]]:
        """Usable entries (at most ``count``) and the problems of the unusable ones.

        Raises ``ExpansionError`` when the model fails or no reply can be read.
        """
        from langchain_core.messages import HumanMessage, SystemMessage

        messages = [SystemMessage(expander_prompt().replace("{language}", self.language)),
                    HumanMessage(cell_message(recipe, cell, count))]
        last = ""
        for _ in range(self.attempts):
            try:
                reply = await self.chat_model.ainvoke(messages)
            except Exception as exc:  # noqa: BLE001 - any model failure is the endpoint's
                raise ExpansionError(f"expander_error: {type(exc).__name__}: {str(exc)[:300]}") from exc
            text = reply.content if isinstance(reply.content, str) else "".join(
                p.get("text", "") if isinstance(p, dict) else str(p) for p in reply.content)
            try:
                entries = parse_requests(text)
            except ValueError as exc:
                last = str(exc)
                continue
            kept, problems = [], []
            for entry in entries:
                cleaned, why = clean_entry(entry)
                if cleaned is None:
                    problems.append(why)
                else:
                    kept.append(cleaned)
            return kept[:count], problems
        raise ExpansionError(f"expander_unreadable: no readable reply after {self.attempts} tries ({last})")
