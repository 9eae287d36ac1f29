"""README.md's Python API section, run as written (issue 24): every ``python`` block of the
section, in order, in one namespace. ``ChatOpenAI`` and ``"openai:..."`` models reach a
scripted OpenAI-compatible server through ``OPENAI_BASE_URL``, as they would reach OpenAI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = re.compile(r"## Python API\n(.*?)\n## Beyond one run", re.S)
BLOCK = re.compile(r"```python\n(.*?)```", re.S)

NATIVE = [
    {"content": "", "tool_calls": [{"id": "call_1", "name": "search", "arguments": {"queries": ["red fox winter coat"]}}]},
    {"content": "", "tool_calls": [{"id": "call_2", "name": "submit_program", "arguments": {
        "gen_prompt": "A red fox with a thick winter coat standing in fresh snow.", "reference_images": []}}]},
]


def blocks() -> list[str]:
    section = SECTION.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert section, "README.md lost its Python API section"
    return BLOCK.findall(section.group(1))


@pytest.mark.timeout(180)
def test_the_python_api_section_runs_as_written(scripted_server, tmp_path, monkeypatch, capsys):
    server = scripted_server({"red fox": NATIVE})
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # default renders land in the test's folder
    monkeypatch.chdir(tmp_path)
    code = blocks()
    assert len(code) >= 4
    namespace: dict = {}
    for block in code:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    printed = capsys.readouterr().out
    assert "A red fox with a thick winter coat standing in fresh snow. answer" in printed  # the first block
    assert "Program: A red fox with a thick winter coat" in printed  # the messages form
    assert all(body["model"] == "gpt-4o-mini" for body in server.successful_bodies())
    assert (tmp_path / "traces.sqlite").is_file()  # the lower-level block
