"""docs/extending.md, run as written: its four plugin modules and its pyproject's entry points
are installed into a temporary folder (a ``*.dist-info`` with ``entry_points.txt``, which is
what pip writes), and its command-line and Python snippets run in subprocesses that have
that folder on ``sys.path``."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "extending.md"
IMAGES = ROOT / "genevolve_graph" / "data" / "images"
BLOCK = re.compile(r"<!-- (file|run): (\S+) -->\n```\w+\n(.*?)```", re.S)
GROUPS = ("genevolve_graph.search", "genevolve_graph.image_search", "genevolve_graph.generators", "genevolve_graph.policies")


def blocks() -> dict[tuple[str, str], str]:
    return {(kind, name): body for kind, name, body in BLOCK.findall(DOC.read_text(encoding="utf-8"))}


@pytest.fixture
def installed(tmp_path) -> tuple[Path, dict[str, str]]:
    """The doc's package installed into ``tmp_path/site``, and an environment that sees it."""
    site = tmp_path / "site"
    found = blocks()
    project = tomllib.loads(found[("file", "pyproject.toml")])["project"]
    for (kind, name), body in found.items():
        if kind == "file" and name.endswith(".py"):
            (site / name).parent.mkdir(parents=True, exist_ok=True)
            (site / name).write_text(body, encoding="utf-8")
    (site / "my_genevolve_plugins" / "__init__.py").write_text("", encoding="utf-8")
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n", encoding="utf-8")
    sections = [f"[{group}]\n" + "".join(f"{n} = {target}\n" for n, target in entries.items())
                for group, entries in project["entry-points"].items()]
    (dist / "entry_points.txt").write_text("\n".join(sections), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), HF_HUB_OFFLINE="1", LANGSMITH_TRACING="false",
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    (tmp_path / "photos").symlink_to(IMAGES)
    return tmp_path, env


def test_the_doc_has_one_example_per_kind():
    found = blocks()
    project = tomllib.loads(found[("file", "pyproject.toml")])["project"]
    assert sorted(project["entry-points"]) == sorted(GROUPS)
    for kind, name in found:
        if name.endswith(".py"):
            code = [line for line in found[(kind, name)].splitlines() if line.strip()]
            assert len(code) <= 18, f"{name} is meant to be a short example ({len(code)} lines)"


def test_plugins_run_through_the_command_line(installed):
    folder, env = installed
    command = blocks()[("run", "cli")].replace("\\\n", " ")
    argv = shlex.split(command)
    assert argv[0] == "genevolve-graph"
    argv = [sys.executable, "-c", "from genevolve_graph.cli.app import main; main()", *argv[1:]]
    proc = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    program = json.loads((folder / "plugin-out" / "program.json").read_text())
    assert program["gen_prompt"] == "A lighthouse on a cliff, shaped like the first reference image."
    assert Path(program["reference_images"][0]["local_path"]).name == "lighthouse.png"
    assert program["render"]["backend"] == "swatch" and program["render"]["success"]
    assert Image.open(program["render"]["output_path"]).size == (256, 256)
    from genevolve_graph import build_graph
    from genevolve_graph.persistence import open_checkpointer_sync

    with open_checkpointer_sync(f"sqlite:///{folder / 'plugin-out' / 'trace.sqlite'}") as saver:
        values = build_graph(saver).get_state({"configurable": {"thread_id": program["thread_id"]}}).values
    observations = [m.content for m in values["messages"] if m.type == "tool"]
    assert "guides ships along a dangerous coast" in observations[0]  # the glossary's hit was observed
    assert "IMG_001: title: lighthouse" in observations[1]


def test_plugins_run_through_the_python_api_and_show_in_the_schema(installed):
    folder, env = installed
    code = blocks()[("run", "python")] + (
        "\nfrom genevolve_graph.agent.graph import graph\nschema = graph.get_context_jsonschema()['properties']\n"
        "print([name in schema[field]['enum'] for field, name in "
        "(('policy', 'one-look'), ('search', 'glossary'), ('image_search', 'folder'), ('renderer', 'swatch'))])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("DEBUG")]
    assert lines == ["A lighthouse on a cliff, shaped like the first reference image.", "[True, True, True, True]"]
    assert len(list((folder / "plugin-out").glob("*.png"))) == 1


def test_a_plugin_that_cannot_be_imported_fails_with_its_name(installed, tmp_path):
    folder, env = installed
    dist = next((folder / "site").glob("*.dist-info"))
    with (dist / "entry_points.txt").open("a", encoding="utf-8") as stream:
        stream.write("\n[genevolve_graph.generators]\nbroken = my_genevolve_plugins.missing:from_context\n")
    code = ("from genevolve_graph import create_genevolve_agent\n"
            "out = create_genevolve_agent(renderer='broken').invoke({'request': 'a cat'})\nprint(out['render'].error)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "renderer 'broken' (entry point in group 'genevolve_graph.generators' of package" in proc.stdout
    assert "points at 'my_genevolve_plugins.missing:from_context', which cannot be imported" in proc.stdout


def test_one_registry_pattern_serves_all_four_kinds_in_process(installed, monkeypatch):
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.core.registry import GENERATORS, IMAGE_SEARCH, POLICIES, REGISTRIES, SEARCH, UnknownName, refresh_all

    folder, _ = installed
    dist = next((folder / "site").glob("*.dist-info"))
    with (dist / "entry_points.txt").open("a", encoding="utf-8") as stream:  # may not shadow a built-in
        stream.write("\n[genevolve_graph.search]\nlocal = my_genevolve_plugins.search:from_context\n")
    monkeypatch.syspath_prepend(str(folder / "site"))
    refresh_all()
    try:
        assert {r.group for r in REGISTRIES.values()} == set(GROUPS)
        assert SEARCH.names()[:2] == ["local", "serper"] and "glossary" in SEARCH and SEARCH["local"].startswith("genevolve_graph.")
        assert "folder" in IMAGE_SEARCH and "swatch" in GENERATORS and GENERATORS.names()[-1] == "none" and "one-look" in POLICIES
        ctx = AgentContext(policy="one-look", search="glossary", image_search="folder", renderer="swatch", options={"image_folder": str(IMAGES)})
        assert [type(r.make(ctx)).__name__ for r in (POLICIES, SEARCH, IMAGE_SEARCH, GENERATORS)] == ["OneLook", "Glossary", "FolderImages", "Swatch"]
        with pytest.raises(UnknownName, match="or install a package that registers it under the entry-point group 'genevolve_graph.search'"):
            AgentContext(search="bing")
    finally:
        monkeypatch.undo()
        refresh_all()
    assert "glossary" not in SEARCH


def chat_model_factory(ctx):
    """A registered policy factory that returns a plain LangChain chat model."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from tests.scripts import answer

    return FakeListChatModel(responses=[answer("a plain poster of a cat")])


def retriever_factory(ctx):
    """A registered search factory that returns a LangChain retriever."""
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class Notes(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager):
            return [Document(page_content=f"Cats purr ({query}).", metadata={"title": "cat notes", "url": "https://notes.example/cat"})]

    return Notes()


async def test_registered_factories_may_return_chat_models_and_retrievers(monkeypatch):
    from genevolve_graph.core.context import AgentContext
    from genevolve_graph.policies import make_policy
    from genevolve_graph.policies.chat_model import ChatModelPolicy
    from genevolve_graph.core.registry import POLICIES, SEARCH
    from genevolve_graph.tools.registry import make_search_backend

    monkeypatch.setitem(POLICIES.builtins, "chat-plugin", "tests.core.test_extending:chat_model_factory")
    monkeypatch.setitem(SEARCH.builtins, "notes", "tests.core.test_extending:retriever_factory")
    ctx = AgentContext(policy="chat-plugin", search="notes", protocol="genevolve")
    policy = make_policy(ctx)
    assert isinstance(policy, ChatModelPolicy) and policy.name == "chat-plugin"
    hits = await make_search_backend(ctx).search("cats", 3)
    assert hits[0].title == "cat notes" and hits[0].snippet == "Cats purr (cats)."


@pytest.mark.timeout(180)
def test_the_docs_pyproject_builds_a_wheel_beside_a_data_folder(tmp_path):
    """Issue 24, item 14: without ``[build-system]`` and an explicit package list, setuptools'
    flat-layout discovery refused the plugin project as soon as a data folder (the doc's
    ``photos/``) sat beside the package. Built offline with the environment's setuptools."""
    import zipfile

    project_dir = tmp_path / "my-genevolve-plugins"
    found = blocks()
    for (kind, name), body in found.items():
        if kind == "file":
            (project_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (project_dir / name).write_text(body, encoding="utf-8")
    (project_dir / "my_genevolve_plugins" / "__init__.py").write_text("", encoding="utf-8")
    (project_dir / "photos").mkdir()
    (project_dir / "photos" / "red_bus.png").write_bytes(b"not read")
    assert "build-backend" in tomllib.loads((project_dir / "pyproject.toml").read_text())["build-system"]
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                           "-w", str(tmp_path / "dist"), str(project_dir)], capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("my_genevolve_plugins-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "my_genevolve_plugins/search.py" in names and not any(n.startswith("photos/") for n in names)
    assert "[genevolve_graph.search]" in entry_points and "glossary = my_genevolve_plugins.search:from_context" in entry_points
