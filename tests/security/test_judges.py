"""Threat-model row "judges": a judge endpoint and the results file it scores are data.

- The judge's reply names a model; it is recorded beside the configured one (per sample and
  in the summary), so a gateway that routes a name to another model shows in the report.
- ``report.md`` escapes every table cell and header: a category or a label from the input
  becomes text, never HTML or Markdown structure.
- The judge's reply cap and total deadline are in ``test_outbound_limits.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from genevolve_graph.cli.evaluate import register
from genevolve_graph.evaluation.report import build_report, md_text
from genevolve_graph.testing.server_thread import ServerThread
from tests.evaluation.conftest import kscore_reply, make_image

HOSTILE = "<img src=x onerror=alert(1)>|**bold**|[link](http://evil.example)"


async def substituting_judge(request: Request) -> JSONResponse:
    """Answers every request well, but names another model than the one asked for."""
    await request.json()
    return JSONResponse({"id": "c", "object": "chat.completion", "created": int(time.time()), "model": "cheap-model-v0",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": kscore_reply(1, 1, 1, 1)},
                                      "finish_reason": "stop"}]})


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    make_image(run / "images" / "a1.png")
    make_image(tmp_path / "bench" / "images" / "a1.png")
    row = {"id": "a1", "prompt": "a red square", "gt_image": "images/a1.png", "eval_type": "KA", "category": HOSTILE,
           "difficulty": "hard", "output_path": "images/a1.png", "success": True}
    (run / "results.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    return run


def test_the_model_named_in_the_reply_is_recorded_and_every_report_cell_is_escaped(tmp_path):
    run = _run(tmp_path)
    app = typer.Typer()
    register(app)
    with ServerThread(Starlette(routes=[Route("/v1/chat/completions", substituting_judge, methods=["POST"])])) as url:
        result = CliRunner().invoke(app, ["evaluate", "--results", str(run / "results.jsonl"), "--gt-root", str(tmp_path / "bench"),
                                          "--judge-model", "judge-configured", "--judge-base-url", f"{url}/v1", "--judge-api-key", "k"],
                                    catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((run / "results_eval.jsonl").read_text().splitlines()[0])
    assert (record["judge_model"], record["judge_reply_model"]) == ("judge-configured", "cheap-model-v0")
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["judge_model"], summary["judge_reply_models"]) == ("judge-configured", ["cheap-model-v0"])

    console = _quiet_console()
    files = build_report([run], tmp_path / "report", labels=["ours | <b>evil</b>"], console=console)
    text = files.markdown.read_text(encoding="utf-8")
    assert "judge-configured (replies: cheap-model-v0)" in text
    assert "<img" not in text and "<b>" not in text
    assert "[link](" not in text.replace("\\[link\\](", "") and "**bold**" not in text.replace("\\*\\*bold\\*\\*", "")
    assert md_text(HOSTILE) in text and "&lt;img src=x onerror=alert(1)&gt;\\|\\*\\*bold\\*\\*\\|\\[link\\]" in text
    # every table line keeps exactly its columns: no cell opened another one
    widths = {len(t.headers) for t in files.tables}
    table_lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert table_lines
    for line in table_lines:
        assert line.replace("\\|", "").count("|") - 1 in widths, line
    # the terminal table shows the text as it is (rich markup such as [link] is not interpreted)
    assert "[link](http://evil.example)" in console.file.getvalue().replace("\n", "")


def _quiet_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), width=200)
