"""The scripts in examples/ run offline and do what their docstrings say."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

from genevolve_graph.persistence import open_checkpointer_sync  # noqa: F401 - the package imports cleanly first

from .conftest import ROOT


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its state TypedDict's annotations resolve through the module
    spec.loader.exec_module(module)
    return module


async def test_embed_subgraph_example(tmp_path, capsys, monkeypatch, caplog):
    # a bare InMemorySaver (issue 24: the example still passed serde=serializer()), under strict msgpack
    assert "serde=" not in (ROOT / "examples" / "embed_subgraph.py").read_text()
    monkeypatch.setenv("LANGGRAPH_STRICT_MSGPACK", "true")
    state = await load("embed_subgraph").main("the Colosseum", tmp_path)
    assert not [r for r in caplog.records if "unregistered type" in r.getMessage() or "Blocked deserialization" in r.getMessage()]
    assert state["termination"] == "answer" and state["caption"].startswith("Poster of the Colosseum (")
    assert '"THE COLOSSEUM"' in state["program"].gen_prompt
    assert (tmp_path / "poster.png").stat().st_size > 5_000
    printed = capsys.readouterr().out
    assert "[agent] image_ready" in printed and "checkpoint namespaces recorded: ['(root)', 'agent']" in printed


def test_langchain_chain_example():
    chain = load("langchain_chain").build_chain()
    result = chain.invoke({"style": "vintage", "subject": "a lighthouse on a cliff", "title": "NORTH"})
    assert result["gen_prompt"].startswith('A vintage poster of a lighthouse on a cliff, with the title "NORTH"')
    assert result["references"] and result["references"][0].startswith("IMG_001: ")


def test_stream_progress_example_as_a_script(tmp_path, subprocess_env):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "stream_progress.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=subprocess_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("-> image_search(" in line for line in lines) and any("image IMG_001:" in line for line in lines)
    assert "rendering with preview ..." in proc.stdout and f"rendered: {tmp_path / 'preview.png'}" in proc.stdout
    assert (tmp_path / "preview.png").stat().st_size > 5_000
