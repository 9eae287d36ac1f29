"""Discoverable backends (issue 24, item 6): ``genevolve-graph backends`` lists every kind's
built-in and installed names with the installing distribution; the backend flags' help
lists the built-ins; the render assistant's ``program`` input has a typed JSON schema."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint, distribution

from typer.testing import CliRunner

from genevolve_graph.cli.app import _register_commands, app
from genevolve_graph.core.registry import SEARCH

_register_commands()
runner = CliRunner()


def test_backends_lists_builtins_and_installed_names_with_their_package(monkeypatch):
    dist = distribution("typer")  # any installed distribution stands in for a plugin package
    entry = EntryPoint("glossary", "my_plugins.search:from_context", SEARCH.group)._for(dist)
    monkeypatch.setattr(SEARCH, "_installed", {"glossary": entry})
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for line in ("policy (--policy):", "search (--search):", "image_search (--image-search):", "renderer (--renderer):"):
        assert line in text
    assert f"glossary     typer {dist.version}" in text
    assert "serper       built-in  needs SERPER_API_KEY" in text and "gemini       built-in  needs GOOGLE_API_KEY or GEMINI_API_KEY" in text
    rows = json.loads(runner.invoke(app, ["backends", "--json"]).stdout)
    assert {"kind": "search", "flag": "--search", "name": "glossary", "source": f"typer {dist.version}", "needs": "",
            "target": "my_plugins.search:from_context"} in rows
    assert {r["name"] for r in rows if r["kind"] == "policy"} >= {"rules", "openai"}


def test_backend_flags_list_the_builtin_names():
    raw = runner.invoke(app, ["run", "--help"]).stdout
    text = " ".join(raw.replace("│", " ").split())  # rich wraps the help into a box
    assert "rules | openai" in text and "local | serper | searxng | tavily | ddgs | langchain" in text
    assert "preview | diffusers | service | gemini | none" in text and "genevolve-graph backends" in text


def test_render_graph_program_input_is_typed():
    from genevolve_graph.serving.render_graph import render_graph

    schema = render_graph.get_input_jsonschema()
    program = schema["$defs"][schema["properties"]["program"]["$ref"].rsplit("/", 1)[1]]
    assert program["properties"]["gen_prompt"]["type"] == "string" and program["required"] == ["gen_prompt"]
    reference = schema["$defs"][program["properties"]["reference_images"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"img_id", "note", "local_path"} <= set(reference["properties"]) and reference["required"] == ["img_id"]
