"""With ``--gt-root``, a row's ``gt_image`` stays under it: ``../``, absolute paths elsewhere and
symlinks leading out fail that row alone, with the reason; the other rows are judged."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from genevolve_graph.cli.evaluate import register
from genevolve_graph.evaluation.results_io import OutsideRoot, resolve_path
from tests.evaluation.conftest import kscore_reply, make_image
from tests.evaluation.judge_server import ScriptedJudge, ok


def test_rows_leaving_the_gt_root_fail_alone(judge: ScriptedJudge, tmp_path: Path) -> None:
    gt_root, run, secret = tmp_path / "bench", tmp_path / "run", tmp_path / "private"
    make_image(gt_root / "images" / "good.png")
    make_image(secret / "photo.png")  # an image outside the root: never sent to the judge
    (gt_root / "images" / "escape.png").symlink_to(secret / "photo.png")
    names = ["good", "dotdot", "absolute", "symlink"]
    for name in names:
        make_image(run / "images" / f"{name}.png")
    gts = {"good": "images/good.png", "dotdot": "../private/photo.png", "absolute": str(secret / "photo.png"),
           "symlink": "images/escape.png"}
    rows = [{"id": name, "prompt": f"case-{name}: draw it", "gt_image": gts[name], "output_path": f"images/{name}.png",
             "success": True} for name in names]
    results = run / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for name in names:
        judge.on(f"case-{name}", ok(kscore_reply(1, 1, 1, 1)))
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["evaluate", "--results", str(results), "--gt-root", str(gt_root), "--judge-model", "j",
                                      "--judge-base-url", judge.base_url, "--max-retries", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = {r["id"]: r for r in map(json.loads, (run / "results_eval.jsonl").read_text(encoding="utf-8").splitlines())}
    assert records["good"]["status"] == "scored"
    for name in ("dotdot", "absolute", "symlink"):
        assert records[name]["status"] == "failed", records[name]
        assert records[name]["error"].startswith("ground_truth_outside_gt_root: ")
        assert "must stay under --gt-root" in records[name]["error"]
    assert len(judge.requests) == 1  # only the row inside the root reached the judge


def test_resolve_path_confinement(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_image(root / "a.png")
    assert resolve_path("a.png", [root], confine=True) == ((root / "a.png").resolve(), "")
    assert resolve_path(str(root / "a.png"), [root], confine=True)[0] == (root / "a.png").resolve()
    assert resolve_path("missing.png", [root], confine=True)[0] is None
    try:
        resolve_path("../x.png", [root], confine=True)
    except OutsideRoot as exc:
        assert "outside" in str(exc)
    else:
        raise AssertionError("../ was not refused")
    assert resolve_path("../root/a.png", [root])[0] is not None  # without confinement, as before
