"""The parts of the data pipeline on their own: recipes, checks, judges' parsing, split, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genevolve_graph.data.checks import CHECKS, run_checks
from genevolve_graph.data.judges import audit_verdict, parse_audit, parse_visual, visual_verdict
from genevolve_graph.data.pipeline import parse_stages
from genevolve_graph.data.recipes import KNOWLEDGE, QUALITY, AuditConfig, FilterConfig, RecipeError, bundled_recipe, load_recipe
from genevolve_graph.data.split import take
from genevolve_graph.core.protocol import format_answer, format_tool_call

from .conftest import cli

# --------------------------------------------------------------------------- recipes


def test_the_bundled_recipe_gives_its_cells_and_anchors(monkeypatch):
    monkeypatch.setenv("GENEVOLVE_DATA_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GENEVOLVE_DATA_EMBEDDER", "/nowhere")
    recipe = load_recipe(bundled_recipe())
    cells = recipe.all_cells()
    assert len(cells) == 8 and len({c.id for c in cells}) == 8
    assert cells[0].id == "poster.landmark_facts.subject_photo.text.medium"
    assert {c.eval_type for c in cells if c.missing_evidence == "none"} == {QUALITY}
    assert {c.eval_type for c in cells if c.missing_evidence != "none"} == {KNOWLEDGE}
    assert recipe.category_of(cells[0]) == "poster design" and recipe.expander.base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\ngrid: {task_family: [a]}\n", "grid lacks the axis 'missing_evidence'"),
    ("name: x\ngrid: {colour: [a]}\n", "unknown grid axis 'colour'"),
    ("name: x\ncells: []\ngrid: {}\nfilter: {min_tool_calls: -1}\n", "filter.min_tool_calls"),
    ("name: x\nvisual_filter: {thresholds: {beauty: 3}}\ncells: [{task_family: a, missing_evidence: b, visual_anchor: c, requirement: d, difficulty: e}]\n", "unknown visual dimension 'beauty'"),
    ("- a list\n", "must be a YAML mapping"),
    ("name: [unclosed\n", "is not valid YAML"),
    ("name: x\nexpander: {base_url: '${GENEVOLVE_DATA_NOT_SET_42}'}\n", "uses ${GENEVOLVE_DATA_NOT_SET_42}, which is not set"),
])
def test_a_bad_recipe_is_one_line_naming_the_field(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert message in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_reports_bad_input_in_one_line(tmp_path):
    missing = cli("data", "build", "--recipes", tmp_path / "none.yaml", "--out", tmp_path / "o")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    bad_stage = cli("data", "build", "--recipes", "bundled:small", "--out", tmp_path / "o", "--stages", "polish")
    assert bad_stage.exit_code == 2 and "unknown stage 'polish'" in bad_stage.stderr
    report = cli("data", "report", tmp_path)
    assert report.exit_code == 2 and "not a data folder" in report.stderr


def test_a_stage_needs_the_previous_stage_complete(data_env, tmp_path):
    data_env()
    result = cli("data", "build", "--recipes", "bundled:small", "--out", tmp_path / "o", "--stages", "filter", "--no-progress")
    assert result.exit_code == 2
    assert "reads the trajectories stage's output, which is not complete" in result.stderr and "--stages trajectories" in result.stderr


def test_no_resume_refuses_a_started_stage(data_env, tmp_path):
    data_env()
    args = ["data", "build", "--recipes", "bundled:small", "--out", tmp_path / "o", "--stages", "requests", "--no-progress", "--max-samples", "3"]
    assert cli(*args).exit_code == 0
    again = cli(*args, "--no-resume")
    assert again.exit_code == 2 and "already holds results" in again.stderr
    assert len((tmp_path / "o" / "requests" / "requests.jsonl").read_text().splitlines()) == 3  # one cell of 3


def test_stages_are_kept_in_pipeline_order():
    assert parse_stages("split,requests") == ("requests", "split")
    assert parse_stages(["filter", "render,visual-filter"]) == ("filter", "render", "visual-filter")
    assert parse_stages(None)[0] == "requests" and parse_stages("all")[-1] == "split"


# --------------------------------------------------------------------------- programmatic checks


def _tool(name, **arguments):
    return {"role": "assistant", "content": "<think>\nx\n</think>\n\n" + format_tool_call(name, arguments)}


def _obs(text="--- search result for [x] ---\n1. title: t\n  url: u\n  snippet: s\n--- end of search result ---"):
    return {"role": "user", "content": f"<tool_response>\n{text}\n</tool_response>"}


IMAGES = "--- image search result for [tower] ---\nIMG_001: title: Tower\n  url: u\n  local_path: /x.png\n  page_url: p\n--- end of image search result ---"


def _record(tmp_path: Path, gen_prompt: str, *, raw_prompt: str | None = None, refs=("IMG_001",), tool_calls=2, extra_turns=()):
    image = tmp_path / "ref.png"
    image.write_bytes(b"png")
    answer = {"gen_prompt": raw_prompt or gen_prompt, "reference_images": [{"img_id": r, "note": "n"} for r in refs]}
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "a tower poster"},
                _tool("search", queries=["tower"]), _obs(), *extra_turns, _tool("image_search", query="tower"), _obs(IMAGES),
                {"role": "assistant", "content": "<think>\nok\n</think>\n\n" + format_answer(answer)}]
    return {"question": "a tower poster", "messages": messages, "termination": "answer", "tool_calls": tool_calls,
            "gen_prompt": gen_prompt, "repairs": [],
            "reference_images": [{"img_id": "IMG_001", "local_path": str(image)}] if refs else []}


GOOD = "A poster of the tall tower as in the first reference image, title TOWER at the top, blue dusk sky"


def test_a_sound_trajectory_passes_every_check(tmp_path):
    assert run_checks(_record(tmp_path, GOOD), FilterConfig()) == {}


def test_each_check_catches_its_fault(tmp_path):
    config = FilterConfig()
    leak = _record(tmp_path, GOOD, raw_prompt=GOOD + " https://example.org/tower")
    assert list(run_checks(leak, config)) == ["url_or_id_leak"]  # the raw answer leaked, though the program was repaired
    ids = _record(tmp_path, GOOD, raw_prompt=GOOD + " (IMG_001)")
    assert list(run_checks(ids, config)) == ["url_or_id_leak"]
    unbound = _record(tmp_path, GOOD.replace(" as in the first reference image", ""))
    assert list(run_checks(unbound, config)) == ["missing_ordinal_binding"]
    too_many = _record(tmp_path, GOOD + ", lit like the second reference image")
    assert "missing_ordinal_binding" in run_checks(too_many, config)
    invented = _record(tmp_path, GOOD, refs=("IMG_001", "IMG_009"))
    assert "invalid_reference" in run_checks(invented, config)
    gone = _record(tmp_path, GOOD)
    gone["reference_images"][0]["local_path"] = str(tmp_path / "missing.png")
    assert list(run_checks(gone, config)) == ["invalid_reference"]
    simple = _record(tmp_path, GOOD, tool_calls=1)
    assert list(run_checks(simple, config)) == ["over_simple_program"]
    short = _record(tmp_path, "A tower, the first reference image.")
    assert list(run_checks(short, config)) == ["over_simple_program"]
    malformed = _record(tmp_path, GOOD, extra_turns=({"role": "assistant", "content": "hmm"}, _obs("format error")))
    assert list(run_checks(malformed, config)) == ["incomplete_tool_cycle"]
    no_obs = _record(tmp_path, GOOD)
    del no_obs["messages"][3]
    assert "incomplete_tool_cycle" in run_checks(no_obs, config)
    assert set(CHECKS) == {"incomplete_tool_cycle", "invalid_reference", "url_or_id_leak", "missing_ordinal_binding", "over_simple_program"}


# --------------------------------------------------------------------------- judges


def test_audit_replies_are_read_and_judged_against_thresholds():
    scores = parse_audit('```json\n{"reference_support": [1, 0.5], "evidence_adoption": null, "constraints": [true, "yes", false]}\n```',
                         references=2, constraints=3)
    assert scores.reference_support == [1.0, 0.5] and scores.evidence_adoption is None and scores.coverage == pytest.approx(2 / 3)
    assert audit_verdict(scores, AuditConfig()) == "audit_constraint_coverage"
    assert audit_verdict(scores, AuditConfig(min_constraint_coverage=0.5)) is None
    assert audit_verdict(scores, AuditConfig(min_reference_support=0.75, min_constraint_coverage=0)) == "audit_reference_support"
    with pytest.raises(ValueError, match="2 scores for 1 reference"):
        parse_audit('{"reference_support": [1, 1], "constraints": [true]}', references=1, constraints=1)
    with pytest.raises(ValueError, match="one per hard constraint"):
        parse_audit('{"reference_support": [], "constraints": [true]}', references=0, constraints=2)


def test_visual_replies_are_read_and_judged_against_thresholds():
    scores = parse_visual('{"prompt_consistency": 5, "reference_use": null, "visual_coherence": 4.2, "quality": 2}', has_references=False)
    assert scores["reference_use"] is None and scores["visual_coherence"] == 4.0
    assert visual_verdict(scores, {"prompt_consistency": 3, "quality": 3}) == "visual_quality"
    assert visual_verdict(scores, {"quality": 2}) is None
    with pytest.raises(ValueError, match="reference_use"):
        parse_visual('{"prompt_consistency": 5, "visual_coherence": 4, "quality": 2}', has_references=True)


# --------------------------------------------------------------------------- split


def test_the_split_is_seeded_and_independent_of_order():
    ids = [f"id{i:03d}" for i in range(200)]
    chosen = take(ids, 0.3, seed=4, view="bench")
    assert len(chosen) == 60 and chosen == [i for i in ids if i in set(chosen)]
    assert set(take(list(reversed(ids)), 0.3, seed=4, view="bench")) == set(chosen)
    assert set(take(ids, 0.3, seed=5, view="bench")) != set(chosen)
    assert len(take(ids, 0.3, seed=4, view="bench", size=7)) == 7 and take(ids, 0.0, seed=4, view="bench") == []
    # a new id does not move the others: items are placed by their own key
    grown = take(ids + ["extra"], 0.3, seed=4, view="bench", size=60)
    assert len(set(grown) & set(chosen)) >= 59


def test_report_counts_a_partly_built_folder(data_env, tmp_path):
    data_env()
    out = tmp_path / "o"
    assert cli("data", "build", "--recipes", "bundled:small", "--out", out, "--stages", "requests", "--no-progress").exit_code == 0
    result = cli("data", "report", out)
    assert result.exit_code == 0
    data = json.loads((out / "report" / "funnel.json").read_text())
    assert data["headline"] == [["requests", 19]] and (out / "report" / "funnel.png").is_file()


@pytest.mark.postgres
def test_the_trajectories_can_live_in_postgres(data_env, tmp_path):
    import os
    import uuid

    url = os.environ.get("GENEVOLVE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL: set GENEVOLVE_TEST_POSTGRES_URL (scripts/start_test_postgres.sh starts one, as .ci/run does)")
    data_env()
    recipe = tmp_path / "recipe.yaml"  # a recipe of its own, so that thread ids are new in a shared database
    recipe.write_text(bundled_recipe().read_text().replace("name: small", f"name: pg-{uuid.uuid4().hex[:8]}"))
    out = tmp_path / "o"
    result = cli("data", "build", "--recipes", recipe, "--out", out, "--checkpoint", url, "--no-progress", "--max-samples", "6")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert not (out / "trajectories" / "trace.sqlite").exists()
    split = json.loads((out / "split.json").read_text())
    sft = [json.loads(line) for line in (out / "sft" / "train.jsonl").read_text().splitlines()]
    assert len(sft) == split["sft"] and all(r["messages"][-1]["content"].count("<answer>") == 1 for r in sft)


def test_retry_infra_runs_the_outages_again_once_they_end(data_env, tmp_path):
    server = data_env()
    out = tmp_path / "o"
    args = ["data", "build", "--recipes", "bundled:small", "--out", out, "--no-progress"]
    assert cli(*args).exit_code == 0
    assert cli("data", "report", out).exit_code == 0
    before = json.loads((out / "report" / "funnel.json").read_text())
    assert [s["infra_error_total"] for s in before["stages"]] == [1, 1, 1, 0, 0]
    server.script.outages = False
    again = cli(*args, "--retry-infra")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "retrying 1 item(s) recorded as infrastructure failures" in again.stdout + again.stderr
    assert cli("data", "report", out).exit_code == 0
    after = json.loads((out / "report" / "funnel.json").read_text())
    assert [s["infra_error_total"] for s in after["stages"]] == [0, 0, 0, 0, 0]
    stages = {s["stage"]: s for s in after["stages"]}
    assert stages["requests"]["generated"] == 23 and stages["requests"]["kept"] == 22
    for stage in ("requests", "trajectories", "filter", "render", "visual-filter"):
        ids = [json.loads(line)["id"] for line in (out / stage / "results.jsonl").read_text().splitlines()]
        assert len(ids) == len(set(ids))  # every item recorded once
    # the items that were fine the first time kept their records and their split
    assert set(before["split"]) == set(after["split"]) and after["split"]["rl"] + after["split"]["bench"] >= before["split"]["rl"] + before["split"]["bench"]


def test_an_unreadable_gt_render_fails_alone_as_infrastructure(data_env, tmp_path):
    data_env()
    out = tmp_path / "o"
    base = ["data", "build", "--recipes", "bundled:small", "--out", out, "--no-progress"]
    assert cli(*base, "--stages", "requests,trajectories,filter,render").exit_code == 0
    renders = [json.loads(line) for line in (out / "render" / "results.jsonl").read_text().splitlines()]
    broken = renders[0]
    Path(broken["output_path"]).write_bytes(b"not an image")
    result = cli(*base, "--stages", "visual-filter,split")
    assert result.exit_code == 0, result.stdout + result.stderr
    judged = {r["id"]: r for r in (json.loads(line) for line in (out / "visual-filter" / "results.jsonl").read_text().splitlines())}
    assert judged[broken["id"]]["visual_status"] == "infra_error" and judged[broken["id"]]["visual_reason"] == "unreadable_image"
    assert [r["visual_status"] for i, r in judged.items() if i != broken["id"]].count("infra_error") == 0 and len(judged) == 4
    assert cli("data", "report", out).exit_code == 0
    stages = {s["stage"]: s for s in json.loads((out / "report" / "funnel.json").read_text())["stages"]}
    assert stages["visual-filter"]["infra_error"] == {"unreadable_image": 1}


def test_a_judge_gets_only_its_own_key(monkeypatch):
    from genevolve_graph.data.judges import make_client
    from genevolve_graph.data.recipes import EndpointConfig

    monkeypatch.setenv("OPENAI_API_KEY", "sk-teacher-key")
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "judge-key")
    assert make_client(EndpointConfig(base_url="http://127.0.0.1:9/v1", model="j")).api_key == "EMPTY"
    assert make_client(EndpointConfig(base_url="http://127.0.0.1:9/v1", model="j", api_key_env="JUDGE_KEY_FOR_TEST")).api_key == "judge-key"
