"""docs/studio.md says what the repository holds (issue 24, item 14): the graphs of
langgraph.studio.json, the notebooks, and an SDK snippet that finds the agent by graph id."""

from __future__ import annotations

import json
import re

from .conftest import ROOT

DOC = (ROOT / "docs" / "studio.md").read_text(encoding="utf-8")
WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def test_the_graphs_and_notebooks_are_counted_right():
    graphs = json.loads((ROOT / "langgraph.studio.json").read_text())["graphs"]
    assert f"`langgraph.studio.json` declares {WORDS[len(graphs)]} graphs" in DOC
    assert all(f"`{name}`" in DOC for name in graphs)
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert f"comes with {WORDS[len(notebooks)]} notebooks" in DOC and f"executes all {WORDS[len(notebooks)]}" in DOC
    table = re.findall(r"\| `notebooks/([\w]+\.ipynb)` \|", DOC)
    assert sorted(table) == notebooks


def test_the_sdk_snippet_finds_the_agent_by_graph_id():
    assert "assistants.search()[0]" not in DOC.replace("not search()[0]", "")
    assert 'client.assistants.search(graph_id="genevolve")' in DOC
