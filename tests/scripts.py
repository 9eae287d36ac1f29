"""Helpers that write GenEvolve-format policy replies for scripted servers."""

from __future__ import annotations

import json
from typing import Any


def tool(name: str, think: str = "planning", **arguments: Any) -> str:
    return f"<think>{think}</think>\n<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def answer(gen_prompt: str, refs: list[tuple[str, str]] | None = None, think: str = "done") -> str:
    payload = {"gen_prompt": gen_prompt, "reference_images": [{"img_id": i, "note": n} for i, n in refs or []]}
    return f"<think>{think}</think>\n<answer>{json.dumps(payload)}</answer>"


PARIS = 'A 1990s travel-magazine cover in front of the Eiffel Tower, title "PARIS"'

PARIS_SCRIPT = [
    tool("query_knowledge", "Exact title text is needed.", skill_name="text_rendering"),
    tool("search", "Check the tower's facts.", queries=["Eiffel Tower height and material", "1990s travel magazine cover layout"]),
    tool("image_search", "Find a reference of the tower.", query="Eiffel Tower at dusk", top_k=3),
    tool("query_knowledge", "Layout of a cover.", skill_name="spatial_layout"),
    answer(
        'A glossy 1990s travel-magazine cover: the Eiffel Tower from the first reference image stands in the centre at dusk, '
        'the masthead title "PARIS" in bold serif capitals across the top.',
        [("IMG_001", "tower silhouette and lattice shape")],
    ),
]
