"""Graph state and the pydantic models that travel through it.

The state keeps ordinary LangChain messages (``AIMessage`` with ``tool_calls``,
``ToolMessage``) so that LangChain apps, LangSmith and Studio see what they expect; the
protocol layer (``protocol.py``) turns them into exactly what the policy reads.

``messages`` lives in a ``DeltaChannel``: each checkpoint stores only the step's new
messages plus a periodic snapshot, so checkpoint storage grows linearly with the length of
a trajectory instead of quadratically (every message must carry an ``id``).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, Optional

from langchain_core.messages import AnyMessage
from langgraph.channels import DeltaChannel, LastValue
from langgraph.graph.message import _messages_delta_reducer
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12 for the JSON schemas Studio shows

Termination = Literal["answer", "no_answer", "answer_parse_failed", "error", "rejected"]
"""Why a trajectory ended: a valid program, no answer within budget, an answer that could
not be turned into a program, an unrecoverable error (endpoint down, ...), or a human
reviewer rejected the program (``review_before_render``)."""

REQUEST_EXAMPLE = 'A 1990s travel-magazine cover in front of the Eiffel Tower, title "PARIS"'



MAX_NOTE_CHARS = 1000
"""A reference's ``note`` says what to take from the image in a sentence or two; the emitter
cuts a longer one (a repair) and the render graph refuses it, so a note is never megabytes."""


class Reference(BaseModel):
    """One retrieved image, known to the trajectory by its ``IMG_###`` id."""

    img_id: str = Field(description="Trajectory-unique id, IMG_001 upward.")
    title: str = ""
    url: str = ""
    local_path: str = Field(default="", description="Where the image lies on disk.")
    page_url: str = ""
    note: str = Field(default="", description="What the policy wants taken from it.")


class Program(BaseModel):
    """The prompt-reference program z = (gen_prompt, reference_images)."""

    gen_prompt: str
    reference_images: list[Reference] = Field(default_factory=list)

    def answer_json(self) -> dict[str, Any]:
        """The program as the policy writes it inside ``<answer>``."""
        return {
            "gen_prompt": self.gen_prompt,
            "reference_images": [{"img_id": r.img_id, "note": r.note} for r in self.reference_images],
        }


class RenderResult(BaseModel):
    """What a generator backend made of a program."""

    success: bool
    output_path: str | None = None
    backend: str = ""
    error: str | None = None
    seconds: float | None = None
    notes: list[str] = Field(default_factory=list)
    """What the backend changed without failing (a size rounded to the pipeline's multiple)."""


def _model_value(model: type[BaseModel], field: str) -> LastValue:
    """A last-value channel for ``field`` that reads what is written as ``model``: a client
    that sets the state with plain JSON (``update_state`` over the LangGraph API, Studio's
    state editor) stores the same model the nodes write, or gets an error naming the field,
    instead of a dict that fails later inside a node. (A reducer would not do: LangGraph
    stores the first write to an empty channel without calling it.)"""

    class ModelValue(LastValue):
        def update(self, values: Any) -> bool:
            return super().update([v if v is None or isinstance(v, model) else _validated(model, field, v) for v in values])

    ModelValue.__name__ = ModelValue.__qualname__ = f"{model.__name__}Value"
    return ModelValue(Optional[model])


def _merge_references(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    """The IMG_### registry's merge (``old | new``), with plain JSON references read as ``Reference``."""
    if not isinstance(new, dict):
        raise ValueError(f"state field 'images' must be an object of IMG_### id -> reference, not {type(new).__name__}")
    merged = dict(old or {})
    for key, value in new.items():
        merged[key] = value if isinstance(value, Reference) else _validated(Reference, f"images.{key}", value)
    return merged


def _validated(model: type[BaseModel], field: str, value: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in (field, *error.get("loc", ())))
        raise ValueError(f"state field {where}: {error.get('msg')}; send a {model.__name__} as JSON") from None


class InputState(TypedDict, total=False):
    """What a caller passes in: the open-ended image request."""

    __pydantic_config__ = ConfigDict(json_schema_extra={"examples": [{"request": REQUEST_EXAMPLE}]})  # type: ignore[misc]

    request: Annotated[
        str,
        Field(
            description="The image request in plain words: subject, style, any exact text to show (in quotes), counts and layout.",
            examples=[REQUEST_EXAMPLE],
        ),
    ]
    request_images: list[str]
    """Optional reference images of the user, as ``data:image/...;base64,`` URIs (a vision
    policy sees them after the request text; checked under the image safety limits)."""
    messages: list[AnyMessage]
    """A chat input instead of ``request`` (chat front-ends on the LangGraph API): the last
    human message is the request; the run ends with an AIMessage stating the program."""


class OutputState(TypedDict, total=False):
    """What a caller gets back."""

    request: str
    messages: list[AnyMessage]
    program: Program | None
    render: RenderResult | None
    termination: Termination | None
    error: str | None
    repairs: list[str]
    rounds: int
    tool_calls: int
    review: dict[str, Any] | None
    backend_calls: dict[str, Any]
    guide: dict[str, Any] | None


class AgentState(TypedDict, total=False):
    """The whole state of one trajectory."""

    request: str
    request_images: list[str]
    messages: Annotated[list[AnyMessage], DeltaChannel(_messages_delta_reducer, snapshot_frequency=50)]
    rounds: int
    """Policy turns taken so far (a malformed reply counts)."""
    tool_calls: int
    """Tool calls executed so far."""
    images: Annotated[dict[str, Reference], _merge_references]
    """The IMG_### registry: id -> reference (without note)."""
    answer: dict[str, Any] | None
    """The raw answer JSON of the policy, once it gave one."""
    references: list[Reference | None]
    """The answer's references resolved by the binder, in the answer's order (with notes and
    local files); ``None`` marks one that had to be dropped, so ordinals can be remapped."""
    program: Annotated[Program | None, _model_value(Program, "program")]
    render: Annotated[RenderResult | None, _model_value(RenderResult, "render")]
    termination: Termination | None
    error: str | None
    repairs: Annotated[list[str], operator.add]
    """Every repair made to the answer, in words."""
    next_step: Literal["review", "render", "__end__"] | None
    """Where the graph goes after the emitter (and after review): decided by those nodes,
    so that routing reads only the state and never needs a runtime."""
    review: dict[str, Any] | None
    """The human reviewer's decision (``review_before_render``): action and reason."""
    trajectory_from: int | None
    """Index in ``messages`` of the current trajectory's system prompt, written by the planner
    (0 for a ``request`` run; after the caller's chat for a ``messages`` run). Not an input:
    a caller's messages can never pass for the planner's."""
    backend_calls: dict[str, Any]
    """Search and image-search backend calls: ``{"calls": N, "unavailable": M, "reason": str}``.
    When every call was unavailable (a missing key, a service down), the runner fails the
    trajectory instead of recording a program planned without any evidence (issue 24)."""
    guide: dict[str, Any] | None
    """The Decision Guide the planner was given (``guidance="retrieve"``): id, score, trigger,
    source and the text appended to the system prompt; None when none was used."""


from genevolve_graph.core.checkpoint_types import PUBLIC_STATE_MODULE, register_safe_types  # noqa: E402 - after the models it names

for _model in (Reference, Program, RenderResult):
    _model.__module__ = PUBLIC_STATE_MODULE  # the name checkpoints record (core.checkpoint_types)
register_safe_types()
