"""A scripted judge endpoint: one OpenAI-compatible chat server on 127.0.0.1 that answers as the
KScore judge, the program-sufficiency judge or the guide distiller, depending on the request.

The training tests use it, and so does the first GRPO run of docs/training.md
(``python -m genevolve_graph.testing.first_run judge``), which needs no external endpoint. Its
scores are fixed rules, not judgements: a cited reference image beats a long prompt beats a bare one.
"""

from __future__ import annotations

import json
from typing import Any

from genevolve_graph.testing.scripted_openai import ScriptedChatServer
from genevolve_graph.training.distill import DISTILLER_SYSTEM, VISUAL_DISTILLER_SYSTEM


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def sufficiency_for(program_text: str) -> float:
    """Scripted R_text: a cited reference beats a long prompt beats a bare one."""
    if "reference image (" in program_text:
        return 1.0
    prompt = program_text.split("Generation prompt:", 1)[-1].split("Reference images", 1)[0]
    return 0.5 if len(prompt.strip()) > 30 else 0.0


class JudgeScript:
    """Callable script; counts what it was asked."""

    def __init__(self, *, guide_summary: str | None = None, guide_trigger: str = "animal in snow", kscore: str | None = None) -> None:
        self.guide_summary = guide_summary
        self.guide_trigger = guide_trigger
        self.kscore = kscore
        self.calls = {"kscore": 0, "sufficiency": 0, "distiller": 0}
        self.distiller_prompts: list[str] = []
        self.distiller_images: list[list[str]] = []
        """Per distiller request, the image_url URLs of its user message, in order."""

    def __call__(self, body: dict[str, Any]) -> str:
        messages = body["messages"]
        system = _text(messages[0]["content"])
        user = _text(messages[-1]["content"])
        if system in (DISTILLER_SYSTEM, VISUAL_DISTILLER_SYSTEM):
            self.calls["distiller"] += 1
            self.distiller_prompts.append(user)
            content = messages[-1]["content"]
            self.distiller_images.append([p["image_url"]["url"] for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
                                         if isinstance(content, list) else [])
            request = user.split("## Request\n", 1)[1].split("\n", 1)[0]
            return json.dumps({
                "retrieval_key": {"trigger": self.guide_trigger, "summary": self.guide_summary or request},
                "decision_guidance": {
                    "tool_plan": ["Search the animal's colours, then fetch one reference image"],
                    "reference_selection": ["Cite the reference that shows the pose"],
                    "program_writing": ["Name fur colours and the setting in the prompt"],
                },
            })
        if "Image 1 follows" in user:
            self.calls["kscore"] += 1
            return self.kscore or json.dumps({
                "rationale": "scripted", "faithfulness": 1, "visual_correctness": 0.5,
                "text_accuracy": 0.5, "text_accuracy_na": True, "aesthetics": 1,
            })
        if "Program:" in user:
            self.calls["sufficiency"] += 1
            return json.dumps({"rationale": "scripted", "score": sufficiency_for(user)})
        return "I do not know this request"


def judge_server(script: JudgeScript) -> ScriptedChatServer:
    """The script behind ``/v1/chat/completions`` on a free loopback port (``with ... as server``)."""
    return ScriptedChatServer(script, model="scripted-judge")


__all__ = ["JudgeScript", "judge_server", "sufficiency_for"]
