"""The render-only graph (``genevolve_render``): what a caller sends is hostile.

The served graph confines every run: the output file lands in the run's folder under
``GENEVOLVE_RENDERS_DIR`` and any reference named by path stays under ``GENEVOLVE_ALLOWED_ROOTS``; inline references are decoded under the download caps;
a refused input is its row's failed ``RenderResult`` naming the field. Rendered with the
preview renderer (Pillow, no GPU)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from PIL import Image

from genevolve_graph import AgentContext
from genevolve_graph.util.paths import file_stem
from genevolve_graph.safety.imaging import to_data_uri
from genevolve_graph.serving.render_graph import MAX_REFERENCES, RENDER_GRAPH_NAME, build_render_graph, make_render_graph, render_graph

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "genevolve_graph" / "data" / "images"


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "root"
    (folder / "refs").mkdir(parents=True)
    shutil.copy(DATA / "cat.png", folder / "refs" / "cat.png")
    monkeypatch.setenv("GENEVOLVE_ALLOWED_ROOTS", str(folder))
    monkeypatch.setenv("GENEVOLVE_RENDERS_DIR", str(folder))
    return folder


def run(graph, graph_input: dict, output_dir: Path | str, thread: str = "t-1", **context) -> dict:
    config = {"configurable": {"thread_id": thread}}
    return graph.invoke(graph_input, config, context={"renderer": "preview", "output_dir": str(output_dir), **context})


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_renders_inline_and_rooted_references_into_the_row_s_file(root):
    teapot = to_data_uri((DATA / "teapot.png").read_bytes())
    out = root / "out"
    program = {"gen_prompt": "The cat from the first reference image beside the teapot from the second reference image.",
               "reference_images": [{"img_id": "IMG_001", "local_path": str(root / "refs" / "cat.png"), "note": "fur"},
                                    {"img_id": "IMG_002", "note": "spout", "url": "http://169.254.169.254/never-fetched.png"}]}
    result = run(render_graph, {"program": program, "reference_data": {"IMG_002": teapot}, "row_id": "../../row 1", "batch_run": "run/a"}, out)
    render = result["render"]
    assert render.success, render.error
    # the run's folder is the server's (its thread); the row id is cleaned into a file name
    assert render.output_path == str(out / "t-1" / f"{file_stem('../../row 1')}.png")
    assert Path(render.output_path).parent.parent == out and Path(render.output_path).name.startswith("row_1-")
    with Image.open(render.output_path) as image:
        assert image.format == "PNG"
    cat, tea = result["program"].reference_images
    assert cat.local_path == str((root / "refs" / "cat.png").resolve())
    stored = Path(tea.local_path)
    assert stored.parent.parent.name == "references" and stored.read_bytes() == (DATA / "teapot.png").read_bytes()


@pytest.mark.parametrize("case, expected", [
    ("outside_root", "local_path .* is refused: caller paths must stay under"),
    ("symlink_out", "local_path .* is refused: caller paths must stay under"),
    ("not_an_image", "local_path .* is not a usable image"),
    ("missing", "does not exist on the server"),
    ("bad_inline", "reference_data is not a usable image"),
    ("unknown_inline", "reference_data names 'IMG_009', which is not a reference"),
    ("no_image", "IMG_001: no image; send it inline"),
    ("too_many", f"at most {MAX_REFERENCES} are rendered"),
    ("no_prompt", r"input program.gen_prompt: Field required"),
    ("overwrite", "is the output file .* rendering would overwrite it"),
    ("output_outside", "context output_dir = .* is refused"),
])
def test_hostile_inputs_fail_their_row_naming_the_field_and_write_nothing(root, tmp_path, case, expected):
    out = root / "out"
    cat = {"img_id": "IMG_001", "local_path": str(root / "refs" / "cat.png")}
    program: dict = {"gen_prompt": "the first reference image", "reference_images": [dict(cat)]}
    extra: dict = {}
    output_dir: Path = out
    outside = tmp_path / "outside" / "cat.png"  # a host image outside the roots (the bundled folder is the server's own)
    outside.parent.mkdir()
    shutil.copy(DATA / "cat.png", outside)
    if case == "outside_root":
        program["reference_images"][0]["local_path"] = str(outside)
    elif case == "symlink_out":
        os.symlink(outside, root / "refs" / "link.png")
        program["reference_images"][0]["local_path"] = str(root / "refs" / "link.png")
    elif case == "not_an_image":
        (root / "refs" / "notes.png").write_text("operator notes, not an image")
        program["reference_images"][0]["local_path"] = str(root / "refs" / "notes.png")
    elif case == "missing":
        program["reference_images"][0]["local_path"] = str(root / "refs" / "gone.png")
    elif case == "bad_inline":
        extra["reference_data"] = {"IMG_001": to_data_uri(b"GIF89a but not really", "image/gif")}
    elif case == "unknown_inline":
        extra["reference_data"] = {"IMG_009": to_data_uri((DATA / "cat.png").read_bytes())}
    elif case == "no_image":
        program["reference_images"] = [{"img_id": "IMG_001", "url": "http://127.0.0.1:9/cat.png"}]
    elif case == "too_many":
        program["reference_images"] = [dict(cat, img_id=f"IMG_{i:03d}") for i in range(1, MAX_REFERENCES + 2)]
    elif case == "no_prompt":
        del program["gen_prompt"]
    elif case == "overwrite":  # the caller names the row's own output file as its reference
        (out / "t-1").mkdir(parents=True)
        shutil.copy(DATA / "cat.png", out / "t-1" / "x.png")
        program["reference_images"][0]["local_path"] = str(out / "t-1" / "x.png")
    elif case == "output_outside":
        output_dir = tmp_path / "elsewhere"
    before = files_under(root) + files_under(tmp_path / "elsewhere")
    result = run(render_graph, {"program": program, "row_id": "x", "batch_run": "r", **extra}, output_dir)
    render = result["render"]
    assert render.success is False and render.output_path is None
    assert re.search(expected, render.error), render.error
    assert files_under(root) + files_under(tmp_path / "elsewhere") == before  # nothing written, nothing overwritten


def test_an_operator_s_own_graph_may_read_references_anywhere(tmp_path):
    """``confine=False`` with an ``AgentContext`` object (the application's own): paths are
    not held to the roots, but a reference must still be an image file."""
    graph = build_render_graph(InMemorySaver(), confine=False)
    config = {"configurable": {"thread_id": "own"}}
    program = {"gen_prompt": "p", "reference_images": [{"img_id": "IMG_001", "local_path": str(DATA / "cat.png")}]}
    result = graph.invoke({"program": program, "row_id": "a"}, config, context=AgentContext(output_dir=str(tmp_path / "o")))
    assert result["render"].success and result["render"].output_path == str(tmp_path / "o" / "a.png")
    assert graph.get_state(config).values["render"].success  # checkpointed like any thread


def test_served_factory_refuses_an_unknown_context_key_and_langgraph_json_lists_the_graph():
    with pytest.raises((TypeError, ValueError), match="output_dirr"):
        make_render_graph(SimpleNamespace(context={"output_dirr": "/tmp"}))
    assert make_render_graph(SimpleNamespace(context=None)) is render_graph
    assert set(render_graph.get_graph().nodes) == {"__start__", "render", "__end__"}
    for name in ("langgraph.json", "langgraph.studio.json"):
        graphs = json.loads((ROOT / name).read_text())["graphs"]
        assert graphs[RENDER_GRAPH_NAME] == "./genevolve_graph/serving/render_graph.py:make_render_graph"


def test_the_render_graph_has_json_schemas_for_studio_and_the_server():
    """The server shows (and checks against) these schemas; they must build on every Python."""
    assert set(render_graph.get_input_jsonschema()["properties"]) == {"program", "reference_data", "row_id", "batch_run"}
    assert {"render", "program"} <= set(render_graph.get_output_jsonschema()["properties"])
    assert "output_dir" in render_graph.get_context_jsonschema()["properties"]
