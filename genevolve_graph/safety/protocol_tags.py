"""Keeping web content inside its frame: protocol tags in observations are neutralised.

A search snippet, a page title, an image caption or a backend's error text is data from the
web. If it carried ``</tool_response>`` or ``<tool_call>`` as is, the policy would read a
forged end of the observation and a forged tool call (and the SFT export would train on it).
Every tag of the protocol (and the chat template's special tokens) inside an observation has
its angle brackets swapped for the look-alikes ``‹ ›``: a reader still sees what the page
said, no parser or tokenizer sees a tag. Text without such tags keeps its bytes.
"""

from __future__ import annotations

import re
from typing import Any

PROTOCOL_TAGS = ("tool_response", "tool_call", "tools", "answer", "think", "tool", "function", "function_call",
                 "functions", "system", "user", "assistant", "im_start", "im_end")
_TAG = re.compile(r"<(\s*/?\s*(?:" + "|".join(PROTOCOL_TAGS) + r")\b[^<>]{0,200}?)>", re.I)
_SPECIAL = re.compile(r"<(\|[^<>|\s]{1,40}\|)>")


def neutralize_tags(text: str) -> str:
    """``text`` with protocol tags and special tokens defused; unchanged when it has none."""
    if "<" not in text:
        return text
    text = _TAG.sub(lambda m: f"‹{m.group(1)}›", text)
    return _SPECIAL.sub(lambda m: f"‹{m.group(1)}›", text)


def neutralize_observation(observation: Any) -> Any:
    """A tool observation (text, or content parts whose text parts are neutralised)."""
    if isinstance(observation, str):
        return neutralize_tags(observation)
    if isinstance(observation, list):
        return [
            {**part, "text": neutralize_tags(part["text"])} if isinstance(part, dict) and isinstance(part.get("text"), str) else part
            for part in observation
        ]
    return observation


def neutralize_data(value: Any) -> Any:
    """Every string inside JSON-like data (dicts, lists), neutralised; keys and other values
    as they are. For structured text from outside that enters a prompt (a reviewer's edit)."""
    if isinstance(value, str):
        return neutralize_tags(value)
    if isinstance(value, dict):
        return {key: neutralize_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [neutralize_data(item) for item in value]
    return value


__all__ = ["PROTOCOL_TAGS", "neutralize_data", "neutralize_observation", "neutralize_tags"]
