"""Stage 2 with the preview renderer: images by row id, stage-2 fields, fallbacks, failures, resume."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from genevolve_graph.batch.renders import program_of
from genevolve_graph.util.paths import file_stem
from genevolve_graph.cli.batch import _render_context

from .conftest import read_results, write_jsonl

DATA = Path(__file__).resolve().parents[2] / "genevolve_graph" / "data" / "images"
STAGE2_FIELDS = {"output_path", "success", "render_error", "backend"}


def reference(img_id: str, name: str, note: str) -> dict:
    return {"img_id": img_id, "note": note, "local_path": str(DATA / f"{name}.png"), "url": f"https://example.org/{name}.png",
            "title": name.replace("_", " "), "page_url": f"https://example.org/{name}"}


def stage1_rows() -> list[dict]:
    base = {"eval_type": "Quality-Anchored", "category": "art", "difficulty": "medium", "messages": [], "rounds": 3, "error": None}
    return [
        {"id": "two-refs", "question": "a cat and a teapot", "prompt": "a cat and a teapot", "termination": "answer", **base,
         "gen_prompt": "The cat from the first reference image sits beside the teapot from the second reference image.",
         "reference_images": [reference("IMG_001", "cat", "the cat's fur"), reference("IMG_002", "teapot", "the teapot shape")],
         "thread_id": "r:two-refs"},
        {"id": 7, "question": "saturn over a field", "prompt": "saturn over a field", "termination": "answer", **base,
         "gen_prompt": "Saturn rising over a sunflower field.", "reference_images": [], "thread_id": "r:7"},
        {"id": "cat/no-answer", "question": "a robot", "prompt": "a robot", "termination": "no_answer", **base,
         "gen_prompt": None, "reference_images": [], "thread_id": "r:cat/no-answer"},
    ]


def test_render_writes_images_named_by_id_with_stage2_fields(cli, tmp_path):
    source = write_jsonl(tmp_path / "results.jsonl", stage1_rows())
    out = tmp_path / "renders"
    result = cli("render", "--input", source, "--out", out, "--renderer", "preview", "--concurrency", "2", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "renders: 3/3 rows recorded (rendered 3); 0 remaining" in result.stdout
    records = {r["id"]: r for r in json.loads((out / "results.json").read_text())}
    assert list(records) == ["two-refs", 7, "cat/no-answer"]
    for key, record in records.items():
        assert STAGE2_FIELDS <= set(record) and record["success"] and record["render_error"] is None and record["backend"] == "preview"
        assert record["output_path"] == str(out.resolve() / "images" / f"{file_stem(str(key))}.png")
        with Image.open(record["output_path"]) as image:
            assert image.format == "PNG" and image.width == 1024
        assert record["category"] == "art" and record["thread_id"] == f"r:{key}"  # stage-1 fields kept
    assert records["two-refs"]["render_source"] == "program" and records[7]["render_source"] == "program"
    assert records["cat/no-answer"]["render_source"] == "prompt"  # the request itself, as the reference renderer does
    assert (out / "images" / "two-refs.png").exists() and (out / "images" / "7.png").exists()


def test_fallback_skip_and_a_failing_render_are_recorded_not_raised(cli, tmp_path):
    source = write_jsonl(tmp_path / "results.jsonl", stage1_rows())
    out = tmp_path / "renders"
    (out / "images" / "7.png").mkdir(parents=True)  # the preview renderer cannot write this image
    result = cli("render", "--input", source, "--out", out, "--fallback", "skip", "--no-progress")
    assert result.exit_code == 0, result.stderr
    records = {r["id"]: r for r in read_results(out / "results.jsonl")}
    assert records["two-refs"]["success"] is True
    assert records[7]["success"] is False and "cannot write" in records[7]["render_error"] and records[7]["output_path"] is None
    skipped = records["cat/no-answer"]
    assert skipped["success"] is False and "no program (termination: no_answer)" in skipped["render_error"]
    assert "renders: 3/3 rows recorded (failed 2, rendered 1)" in result.stdout


def test_render_resumes_and_follows_the_stage1_input_order(cli, tmp_path):
    stage1 = tmp_path / "rollouts"
    stage1.mkdir()
    rows = stage1_rows()
    write_jsonl(stage1 / "results.jsonl", [rows[2], rows[0], rows[1]])  # completion order
    (stage1 / "run.json").write_text(json.dumps({"stage": "rollouts", "rows": [[0, "two-refs"], [1, "7"], [2, "cat/no-answer"]]}))
    out = tmp_path / "renders"
    first = cli("render", "--input", stage1, "--out", out, "--max-samples", "2", "--no-progress")
    assert first.exit_code == 0, first.stderr
    assert [r["id"] for r in read_results(out / "results.jsonl")] in (["two-refs", 7], [7, "two-refs"])
    stamp = (out / "images" / "two-refs.png").stat().st_mtime_ns
    second = cli("render", "--input", stage1 / "results.jsonl", "--out", out, "--no-progress")
    assert second.exit_code == 0, second.stderr
    assert "this session: 1 rows in" in second.stdout
    assert (out / "images" / "two-refs.png").stat().st_mtime_ns == stamp  # not rendered again
    assert [r["id"] for r in json.loads((out / "results.json").read_text())] == ["two-refs", 7, "cat/no-answer"]
    assert sorted(map(str, (r["id"] for r in read_results(out / "results.jsonl")))) == ["7", "cat/no-answer", "two-refs"]


def test_a_torn_last_line_of_a_running_stage1_is_left_for_later(cli, tmp_path):
    source = tmp_path / "results.jsonl"
    rows = stage1_rows()
    source.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1])[:40], encoding="utf-8")
    result = cli("render", "--input", source, "--out", tmp_path / "renders", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in read_results(tmp_path / "renders" / "results.jsonl")] == ["two-refs"]


def test_program_is_rebuilt_from_stage1_fields():
    program = program_of(stage1_rows()[0])
    assert program.gen_prompt.startswith("The cat from the first reference image")
    assert [(r.img_id, Path(r.local_path).name, r.note) for r in program.reference_images] == [
        ("IMG_001", "cat.png", "the cat's fur"), ("IMG_002", "teapot.png", "the teapot shape")]
    assert program_of({"gen_prompt": None}) is None and program_of({"gen_prompt": "  "}) is None


def test_renderer_options_pass_through_to_the_context(tmp_path):
    values = {"renderer": "preview", "fallback": "prompt", "seed": 42, "pipeline": "Qwen/Qwen-Image-Edit-2511",
              "service_url": ["http://gpu0:8001", "http://gpu1:8001"],
              "render_option": ["num_inference_steps=8", "negative_prompt=blurry, low quality", "multi_reference=true"]}
    ctx = _render_context(values, tmp_path / "images")
    assert ctx.renderer == "preview" and ctx.seed == 42 and ctx.output_dir == str((tmp_path / "images").resolve())
    assert ctx.options == {"service_urls": ["http://gpu0:8001", "http://gpu1:8001"], "pipeline": "Qwen/Qwen-Image-Edit-2511",
                           "num_inference_steps": 8, "negative_prompt": "blurry, low quality", "multi_reference": True}


def test_render_input_errors_exit_2(cli, tmp_path):
    bad = write_jsonl(tmp_path / "results.jsonl", [{"id": 1, "gen_prompt": "x"}])
    result = cli("render", "--input", bad, "--out", tmp_path / "r", "--no-progress")
    assert result.exit_code == 2 and "line 1 (id 1): missing prompt" in result.stderr
    result = cli("render", "--input", bad, "--out", tmp_path / "r", "--renderer", "dalle")
    assert result.exit_code == 2 and "unknown renderer 'dalle' (--renderer)" in result.stderr
    result = cli("render", "--input", bad, "--out", tmp_path / "r", "--option", "novalue")
    assert result.exit_code == 2 and "--option 'novalue' is not KEY=VALUE" in result.stderr


def keyed_renderer(ctx):
    """An installed renderer that reads an ``api_key`` option (the preview renderer underneath)."""
    from genevolve_graph.core.registry import GENERATORS, import_path

    return import_path(GENERATORS.builtins["preview"])(ctx)


keyed_renderer.options = ("api_key", "steps")  # declared, so --option accepts them (issue 24)


def test_secret_looking_options_are_not_written_to_the_run_folder(cli, tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    from genevolve_graph.core.registry import GENERATORS

    monkeypatch.setattr(GENERATORS, "_installed", {"keyed": EntryPoint("keyed", f"{__name__}:keyed_renderer", GENERATORS.group)})
    source = write_jsonl(tmp_path / "results.jsonl", stage1_rows()[:1])
    out = tmp_path / "renders"
    result = cli("render", "--input", source, "--out", out, "--renderer", "keyed", "--option", "api_key=sk-secret-42",
                 "--option", "steps=4", "--no-progress")
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["sessions"][0]["settings"]["options"] == {"api_key": "***", "steps": 4}
    assert not any("sk-secret-42" in p.read_text(errors="ignore") for p in out.iterdir() if p.is_file())


async def test_stopping_a_render_stage_keeps_what_was_rendered_and_resume_finishes(tmp_path):
    import asyncio

    from genevolve_graph.batch.engine import StopController
    from genevolve_graph.batch.renders import RenderOptions, arun_renders
    from genevolve_graph.batch.rows import read_rows
    from genevolve_graph.core.context import AgentContext

    template = stage1_rows()[0]
    source = write_jsonl(tmp_path / "results.jsonl", [dict(template, id=f"img{i:02d}") for i in range(24)])
    rows = read_rows(source)
    out = tmp_path / "renders"
    ctx = AgentContext(renderer="preview", output_dir=str(out / "images"))
    controller = StopController(grace=30.0, notify=lambda message: None)
    task = asyncio.create_task(arun_renders(rows, ctx, RenderOptions(out_dir=out, concurrency=1, progress=False), controller=controller))
    while not (out / "results.jsonl").exists() or len(read_results(out / "results.jsonl")) < 3:
        await asyncio.sleep(0.01)
    controller.request_stop()
    report = await task
    assert report.interrupted is not None and 0 < report.remaining < 24
    first = read_results(out / "results.jsonl")
    assert len({r["id"] for r in first}) == len(first) == 24 - report.remaining and all(r["success"] for r in first)
    resumed = await arun_renders(rows, ctx, RenderOptions(out_dir=out, concurrency=4, progress=False))
    assert resumed.complete and resumed.session.done == report.remaining
    assert sorted(r["id"] for r in read_results(out / "results.jsonl")) == [f"img{i:02d}" for i in range(24)]
