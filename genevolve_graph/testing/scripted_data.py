"""Scripted endpoints for the data pipeline (tests, the data notebook, offline demos).

One OpenAI-compatible server plays four models, chosen by the request's ``model``:

- ``scripted-expander`` writes requests for a recipe cell. It reads the cell from the
  user turn, picks subjects from a fixed catalogue (landmarks and facts for cells that need
  outside evidence, everyday objects otherwise) and states each request's hard constraints.
  On purpose it fails one cell (HTTP 500), writes one malformed entry (no constraints) and
  one near-duplicate request.
- ``scripted-teacher`` is the strong agent. Its behaviour depends on the request's subject
  (``BEHAVIOURS``): most subjects get a sound trajectory (skill guide, search, image search,
  an answer naming the first reference image and every hard constraint); some get a bad one
  on purpose (a URL in the prompt, a reference never named, an over-simple program, a cited
  id that no search returned, a malformed turn, no answer at all, a dropped constraint, an
  endpoint failure).
- ``scripted-auditor`` scores trajectories by reading what it is sent: a reference supports
  the image when its title names the subject; a constraint is covered when the generation
  prompt states it. It fails (HTTP 500) for one subject.
- ``scripted-visual`` scores renders: low quality when the generation prompt asks for soft
  focus, otherwise good.
- ``scripted-kscore`` answers KScore judgements (for ``evaluate`` on the benchmark view).

Nothing here is random; the same recipe gives the same funnel on every run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from genevolve_graph.core.protocol import format_answer, format_tool_call
from genevolve_graph.testing.scripted_openai import ScriptedChatServer

EXPANDER, TEACHER, AUDITOR, VISUAL = "scripted-expander", "scripted-teacher", "scripted-auditor", "scripted-visual"
KSCORE = "scripted-kscore"
"""A KScore judge for ``evaluate`` on the benchmark view (full marks, text applicable)."""


@dataclass(frozen=True)
class Subject:
    name: str
    """As written in requests (also what the auditor looks for in a reference's title)."""
    image_query: str
    fact_query: str
    title: str
    """Text a 'text' request asks to render."""
    things: str
    """What a 'count' request counts."""
    knowledge: bool


SUBJECTS = [
    Subject("Colosseum", "Colosseum arches", "Colosseum Rome amphitheatre", "ROMA", "arched openings", True),
    Subject("Eiffel Tower", "Eiffel Tower silhouette", "Eiffel Tower height", "PARIS", "visitor levels", True),
    Subject("lighthouse", "red and white lighthouse", "lighthouse light", "HARBOUR", "white stripes", True),
    Subject("Saturn", "Saturn rings", "Saturn planet rings", "SATURN", "moons", True),
    Subject("emperor penguin", "emperor penguin ice", "emperor penguin", "ANTARCTICA", "penguin chicks", True),
    Subject("monarch butterfly", "monarch butterfly milkweed", "monarch butterfly migration", "MIGRATION", "wing spots", True),
    Subject("torii gate", "torii gate Mount Fuji", "torii gate shrine", "FUJI", "torii posts", True),
    Subject("DNA double helix", "DNA double helix", "DNA double helix structure", "HELIX", "base pairs", True),
    Subject("teapot", "teal teapot", "teapot", "TEA TIME", "teacups", False),
    Subject("bicycle", "bicycle side view", "bicycle", "RIDE", "spokes", False),
    Subject("robot", "friendly retro robot", "robot", "HELLO", "antennas", False),
    Subject("paper lantern", "red paper lantern", "paper lantern", "FESTIVAL", "lanterns", False),
    Subject("sunflower", "sunflower field", "sunflower", "SUMMER", "sunflowers", False),
    Subject("ginger cat", "ginger tabby cat", "cat", "MEOW", "whiskers", False),
]
BY_NAME = {s.name.lower(): s for s in SUBJECTS}

BEHAVIOURS = {
    "colosseum": "good",
    "eiffel tower": "good",
    "lighthouse": "url_leak",
    "saturn": "teacher_error",
    "emperor penguin": "unbound_reference",
    "monarch butterfly": "dropped_constraint",
    "torii gate": "soft_focus",
    "dna double helix": "audit_judge_error",
    "teapot": "good",
    "bicycle": "over_simple",
    "robot": "invented_reference",
    "paper lantern": "malformed_turn",
    "sunflower": "no_answer",
    "ginger cat": "good",
}
"""The teacher's behaviour per subject (and, for two subjects, the judges')."""

FAILING_CELL = ("infographic", "none", "count")
"""(task family, missing evidence, requirement) of the cell whose expansion fails with HTTP 500."""
MALFORMED_CELL = ("poster", "none", "count")
DUPLICATE_CELL = ("infographic", "landmark_facts", "count")
FAMILY_INDEX = {"poster": 0, "infographic": 1}
REQUIREMENT_INDEX = {"text": 0, "count": 1}


# --------------------------------------------------------------------------- the expander


def _cell_fields(text: str) -> dict[str, str]:
    fields = {}
    for key, label in (("task_family", "task family"), ("missing_evidence", "missing external evidence"),
                       ("visual_anchor", "visual anchor"), ("requirement", "dominant generation requirement"),
                       ("difficulty", "difficulty")):
        match = re.search(rf"^- {label}: (\S+)", text, re.M)
        fields[key] = match.group(1) if match else ""
    count = re.search(r"Write (\d+) requests", text)
    fields["count"] = count.group(1) if count else "3"
    return fields


def constraints_for(subject: Subject, requirement: str) -> list[str]:
    """The hard constraints of a request (the teacher states them in its prompt word for word)."""
    first = f"the {subject.name} is the main subject"
    if requirement == "text":
        return [first, f'the title "{subject.title}" is written at the top']
    if requirement == "count":
        return [first, f"exactly three {subject.things} are visible"]
    return [first, f"the {subject.name} sits in the left half of the frame"]


def request_text(subject: Subject, family: str, requirement: str, difficulty: str) -> str:
    kind = {"poster": "a printed poster", "infographic": "an explanatory infographic"}.get(family, f"a {family}")
    need = {"text": f'with the title "{subject.title}" written at the top',
            "count": f"showing exactly three {subject.things}"}.get(requirement, "with a clear layout")
    style = "for a museum shop" if difficulty == "hard" else "in a clean modern style"
    return f"Make {kind} of the {subject.name} {need}, {style}."


def expander_reply(text: str, outages: bool = True) -> dict[str, Any] | str:
    fields = _cell_fields(text)
    key = (fields["task_family"], fields["missing_evidence"], fields["requirement"])
    if key == FAILING_CELL and outages:
        return {"status": 500, "message": "scripted expander outage"}
    pool = [s for s in SUBJECTS if s.knowledge == (fields["missing_evidence"] != "none")]
    count = int(fields["count"])
    # Each family takes its own run of subjects, shifted per requirement, so that one
    # subject meets one requirement once (the wording then differs between requests).
    start = FAMILY_INDEX.get(key[0], 0) * count + REQUIREMENT_INDEX.get(key[2], 0) * (count + 1)
    entries: list[dict[str, Any]] = []
    for k in range(count):
        subject = pool[(start + k) % len(pool)]
        entries.append({"request": request_text(subject, fields["task_family"], fields["requirement"], fields["difficulty"]),
                        "hard_constraints": constraints_for(subject, fields["requirement"])})
    if key == DUPLICATE_CELL and count >= 3:
        entries[2] = {"request": "Please " + entries[0]["request"][0].lower() + entries[0]["request"][1:],
                      "hard_constraints": entries[0]["hard_constraints"]}
    if key == MALFORMED_CELL and count >= 2:
        entries[1] = {"request": entries[1]["request"]}
    return "Here are the requests:\n```json\n" + json.dumps({"requests": entries}, indent=1) + "\n```"


# --------------------------------------------------------------------------- the teacher


def subject_of(text: str) -> Subject | None:
    lowered = text.lower()
    for name in sorted(BY_NAME, key=len, reverse=True):
        if name in lowered:
            return BY_NAME[name]
    return None


def _requirement_of(text: str) -> str:
    if "title" in text and '"' in text:
        return "text"
    if "exactly three" in text:
        return "count"
    return "layout"


def _tool(name: str, think: str, **arguments: Any) -> str:
    return f"<think>\n{think}\n</think>\n\n{format_tool_call(name, arguments)}"


def _answer(gen_prompt: str, refs: list[tuple[str, str]], think: str = "The program is ready.") -> str:
    return f"<think>\n{think}\n</think>\n\n" + format_answer(
        {"gen_prompt": gen_prompt, "reference_images": [{"img_id": i, "note": n} for i, n in refs]})


def teacher_script(request: str, outages: bool = True) -> list[str] | dict[str, Any]:
    """The teacher's replies for one request, turn by turn (a dict: an HTTP error)."""
    subject = subject_of(request)
    if subject is None:
        return [_answer(f"An image for: {request}", [])]
    behaviour = BEHAVIOURS[subject.name.lower()]
    if behaviour == "teacher_error" and outages:
        return {"status": 500, "message": "scripted teacher outage"}
    requirement = _requirement_of(request)
    constraints = constraints_for(subject, requirement)
    skill = {"text": "text_rendering", "count": "quantity_counting"}.get(requirement, "spatial_layout")
    research = [
        _tool("query_knowledge", f"The hard part is {requirement}.", skill_name=skill),
        _tool("search", f"Check the facts about the {subject.name}.", queries=[subject.fact_query], top_k=2),
        _tool("image_search", f"Find a photo of the {subject.name}.", query=subject.image_query, top_k=2),
    ]
    body = (f"A detailed image of the {subject.name} as in the first reference image, " + "; ".join(constraints)
            + ", crisp lighting and a balanced composition")
    refs = [("IMG_001", f"shape and colours of the {subject.name}")]
    if behaviour == "url_leak":
        return research + [_answer(body + f", see https://example.org/{subject.name.replace(' ', '_')}", refs)]
    if behaviour == "unbound_reference":
        return research + [_answer(body.replace(" as in the first reference image", ""), refs)]
    if behaviour == "dropped_constraint":
        return research + [_answer(f"A detailed image of the {subject.name} as in the first reference image, "
                                   f"{constraints[0]}, crisp lighting and a balanced composition", refs)]
    if behaviour == "soft_focus":
        return research + [_answer(body + ", in a dreamy soft focus haze", refs)]
    if behaviour == "over_simple":
        return [_answer(f"A picture of a {subject.name}.", [])]
    if behaviour == "invented_reference":
        return research + [_answer(body, [("IMG_001", "the main shape"), ("IMG_007", "a second view")])]
    if behaviour == "malformed_turn":
        return [research[0], "Let me think about this a bit more before I decide.", research[1], research[2], _answer(body, refs)]
    if behaviour == "no_answer":
        return ["I am not sure what to do."] * 20
    return research + [_answer(body, refs)]


def teacher_reply(body: dict[str, Any], outages: bool = True) -> str | dict[str, Any]:
    request = ScriptedChatServer.conversation_key(body)
    script = teacher_script(request, outages)
    if isinstance(script, dict):
        return script
    turn = ScriptedChatServer.turn(body)
    return script[min(turn, len(script) - 1)]


# --------------------------------------------------------------------------- the judges


def _text(body: dict[str, Any]) -> str:
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts += [p.get("text", "") for p in content or [] if p.get("type") == "text"]
    return "\n".join(parts)


def _section(text: str, head: str) -> str:
    match = re.search(rf"{head}:\n(.*?)(?:\n\n|\Z)", text, re.S)
    return match.group(1).strip() if match else ""


def auditor_reply(body: dict[str, Any], outages: bool = True) -> str | dict[str, Any]:
    text = _text(body).split("Request:\n", 1)[-1]
    request = text.split("\n", 1)[0]
    subject = subject_of(request)
    if subject is not None and BEHAVIOURS[subject.name.lower()] == "audit_judge_error" and outages:
        return {"status": 500, "message": "scripted judge outage"}
    program = text.split("Program:\n", 1)[-1]
    prompt = _section(program, "Generation prompt").lower()
    titles = re.findall(r"^  title: (.*)$", program, re.M)
    name = subject.name.lower().split()[-1] if subject else ""
    support = [1 if name and name in t.lower() else 0 for t in titles]
    constraints = [re.sub(r"^\d+\. ", "", line) for line in _section(text, "Hard constraints").splitlines() if line.strip()]
    covered = [c.lower() in prompt for c in constraints if c != "(none)"]
    evidence = _section(text, "Evidence from the agent's text searches")
    adoption = None if evidence.startswith("(no text search") else 1
    return json.dumps({"reference_support": support, "evidence_adoption": adoption, "constraints": covered,
                       "rationale": "Scripted audit: titles and constraint wording compared with the program."})


def visual_reply(body: dict[str, Any]) -> str:
    text = _text(body)
    prompt = _section(text, "Generation prompt").lower()
    has_refs = "There are no reference images." not in text
    return json.dumps({"prompt_consistency": 4, "reference_use": 4 if has_refs else None, "visual_coherence": 4,
                       "quality": 2 if "soft focus" in prompt else 4, "rationale": "Scripted visual check."})


class DataScript:
    """The one script of the server: dispatch on the model name. ``outages`` (on by default)
    switches the scripted endpoint failures on or off, so a test can end an outage."""

    def __init__(self, outages: bool = True) -> None:
        self.outages = outages

    def __call__(self, body: dict[str, Any]) -> str | dict[str, Any]:
        return reply(body, self.outages)


def reply(body: dict[str, Any], outages: bool = True) -> str | dict[str, Any]:
    model = body.get("model")
    if model == EXPANDER:
        return expander_reply(_text(body), outages)
    if model == TEACHER:
        return teacher_reply(body, outages)
    if model == AUDITOR:
        return auditor_reply(body, outages)
    if model == VISUAL:
        return visual_reply(body)
    if model == KSCORE:
        return json.dumps({"faithfulness": 1, "visual_correctness": 0.5, "text_accuracy": 1, "aesthetics": 1,
                           "text_accuracy_na": False, "rationale": "Scripted KScore."})
    return {"status": 404, "message": f"no scripted model {model!r}"}


def vocabulary() -> list[str]:
    """Every request the scripted expander can write (for a tiny word-level embedder)."""
    texts = []
    for subject in SUBJECTS:
        for family in ("poster", "infographic"):
            for requirement in ("text", "count", "layout"):
                for difficulty in ("medium", "hard"):
                    texts.append("Please " + request_text(subject, family, requirement, difficulty))
    return texts


def build_embedder(directory) -> Any:
    """The tiny deterministic embedder the bundled recipe's near-duplicate step uses offline."""
    from genevolve_graph.testing.tiny_models import build_word_sentence_transformer

    return build_word_sentence_transformer(vocabulary(), directory=directory)


def data_server(latency: float = 0.0, outages: bool = True) -> ScriptedChatServer:
    """``with data_server() as server:`` all scripted models at ``server.base_url``;
    ``server.script.outages = False`` ends the scripted outages."""
    return ScriptedChatServer(DataScript(outages), latency=latency, model="scripted-data")


def serve(embedder: str | None = None, outages: bool = True) -> None:
    """Start the scripted endpoints, build the embedder, print the two variables the bundled
    recipe reads, and serve until interrupted: the command-line route to an offline
    ``data build`` (docs/data.md)::

        python -m genevolve_graph.testing.scripted_data --embedder /tmp/genevolve-embedder
        # in another shell, with the printed exports:
        genevolve-graph data build --recipes bundled:small --out data-demo
    """
    import signal
    import sys
    import tempfile
    import threading
    from pathlib import Path

    directory = Path(embedder).expanduser().resolve() if embedder else Path(tempfile.mkdtemp(prefix="genevolve-embedder-"))
    if not (directory / "modules.json").is_file():
        build_embedder(directory)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with data_server(outages=outages) as server:
        print(f"export GENEVOLVE_DATA_BASE_URL={server.base_url}")
        print(f"export GENEVOLVE_DATA_EMBEDDER={directory}")
        print("# scripted data endpoints are serving; Ctrl-C stops them", file=sys.stderr)
        sys.stdout.flush()
        stop.wait()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m genevolve_graph.testing.scripted_data",
                                     description="Serve the scripted data endpoints and print GENEVOLVE_DATA_BASE_URL / GENEVOLVE_DATA_EMBEDDER.")
    parser.add_argument("--embedder", help="Folder of the tiny embedder (built there when missing; default: a new temporary folder).")
    parser.add_argument("--no-outages", action="store_true", help="No scripted failures (every endpoint answers).")
    args = parser.parse_args(argv)
    serve(args.embedder, outages=not args.no_outages)


if __name__ == "__main__":
    main()
