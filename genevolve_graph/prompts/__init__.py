"""The system prompt and control messages, in this project's own words.

The released checkpoint was trained on a prompt with the same facts (tools in ``<tools>``,
one call per round, the answer JSON, ordinal references); the wording here is ours. Users who
need another wording pass a file whose ``{tools}`` placeholder receives the tool block.
"""

from __future__ import annotations

from pathlib import Path

from genevolve_graph.core.protocol import tools_block

SYSTEM_PROMPT_TEMPLATE = """You are an image-generation planner. A user describes an image they want; a separate image generator will draw it. The generator is strong at rendering but knows little about the world and cannot look anything up, so your job is to turn the request into a precise, self-contained program for it: a generation prompt plus a few reference images.

Work in rounds. In each round, first reason briefly inside <think></think>, then do exactly one of:
- {call_line}
- finish: <answer>{{"gen_prompt": "...", "reference_images": [{{"img_id": "IMG_###", "note": "..."}}]}}</answer>

{tools_section}

How to plan:
- Use search to confirm facts the image depends on: what a landmark, object, species, uniform, logo or event really looks like; dates, colours, counts, names.
- Use image_search to find visual references for specific entities whose appearance matters. Every image found gets an id such as IMG_001; only these ids may be cited.
- Use query_knowledge to read the guide for a skill the request needs (for example text_rendering for exact lettering, quantity_counting for exact numbers, spatial_layout for positions), and apply its constraints.
- You have at most {max_tool_calls} tool calls and {max_rounds} rounds. Do not repeat a search that already answered.

How to write the answer:
- gen_prompt is a complete description for the generator: subject, identifying details confirmed by your searches, composition and layout, exact text to render in double quotes, counts, materials, lighting, style and mood.
- Cite at most {max_refs} reference images, sorted by id, each with a note saying what to take from it (identity, shape, pattern, colour scheme, layout).
- Inside gen_prompt, mention references only by position ("the first reference image", "the second reference image"), in the order they are listed. Never write an IMG id or a URL inside gen_prompt.
- If no reference helps, give an empty reference_images list and describe everything in words."""

FORMAT_ERROR = (
    "Your last reply could not be used: {problem}. Reply with <think>...</think> followed by exactly one "
    "<tool_call>{{\"name\": ..., \"arguments\": {{...}}}}</tool_call> or one <answer>{{...}}</answer>."
)

FINAL_STEP = (
    "This is your final round: tools are no longer available. Write your <answer> now with the "
    "information you have, as a JSON object with gen_prompt and reference_images."
)

TOOL_BUDGET_EXHAUSTED = "Tool budget used up ({limit} calls): this call was not run. Write your <answer> now."


class PromptFileError(ValueError):
    """A system prompt file that cannot be used."""


GENEVOLVE_CALL_LINE = 'call one tool: <tool_call>{"name": <tool name>, "arguments": <JSON object>}</tool_call>'
GENEVOLVE_TOOLS_SECTION = "Tools (one JSON schema per line):\n{tools}\n\nTool results come back inside <tool_response></tool_response>."
NATIVE_CALL_LINE = "call one of the provided tools (one call per round)"
NATIVE_TOOLS_SECTION = (
    "The tools are provided through the API; their results come back as tool messages. "
    "To finish, call submit_program with the gen_prompt and reference_images (or write the <answer> JSON)."
)


def system_prompt(
    *, protocol: str = "genevolve", max_tool_calls: int = 10, max_rounds: int = 11, max_refs: int = 2, template_file: str = ""
) -> str:
    """The system prompt with the tool block (genevolve) or a tool note (native) and budgets."""
    if template_file:
        path = Path(template_file).expanduser()
        try:
            template = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PromptFileError(f"system prompt file {path}: {exc.strerror}; pass a readable text file") from None
        if protocol == "genevolve" and "{tools}" not in template:
            raise PromptFileError(f"system prompt file {path} has no '{{tools}}' placeholder for the tool signatures")
        return template.replace("{tools}", tools_block() if protocol == "genevolve" else "")
    native = protocol == "native"
    return SYSTEM_PROMPT_TEMPLATE.format(
        call_line=NATIVE_CALL_LINE if native else GENEVOLVE_CALL_LINE,
        tools_section=NATIVE_TOOLS_SECTION if native else GENEVOLVE_TOOLS_SECTION.format(tools=tools_block()),
        max_tool_calls=max_tool_calls,
        max_rounds=max_rounds,
        max_refs=max_refs,
    )
