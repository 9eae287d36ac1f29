"""No credential from a URL is recorded anywhere: run.json, checkpoint metadata, results, logs."""

from __future__ import annotations

import logging
import sqlite3

from genevolve_graph.safety.redaction import RedactingFilter, redact_text, redact_url, redact_value

from .conftest import read_results, script_for, write_jsonl

PASSWORD = "hunter2-very-secret"
TOKEN = "tok-0123456789abcdef"


def test_redact_url_masks_userinfo_and_secret_query_values_only():
    assert redact_url(f"http://alice:{PASSWORD}@vllm:8000/v1") == "http://alice:***@vllm:8000/v1"
    assert redact_url(f"postgresql://postgres:{PASSWORD}@db:5432/gg") == "postgresql://postgres:***@db:5432/gg"
    assert redact_url(f"https://{TOKEN}@api.example.com/v1") == "https://***@api.example.com/v1"
    assert redact_url(f"https://h/v1?api_key={TOKEN}&model=x&sig={TOKEN}") == "https://h/v1?api_key=***&model=x&sig=***"
    assert redact_url(f"http://h/search?x-amz-signature={TOKEN}") == "http://h/search?x-amz-signature=***"
    for plain in ("http://127.0.0.1:8000/v1", "postgresql://postgres@127.0.0.1:5432/db", "sqlite:///tmp/x.sqlite",
                  "https://h/path?q=keyboard&token_count=3", "not a url"):
        assert redact_url(plain) == plain  # ordinary values keep their bytes
    assert redact_url(redact_url(f"http://a:{PASSWORD}@h/")) == "http://a:***@h/"  # idempotent
    assert redact_text(f"cannot reach http://a:{PASSWORD}@h:1/v1 (refused)") == "cannot reach http://a:***@h:1/v1 (refused)"
    assert redact_value({"urls": [f"http://a:{PASSWORD}@h/"], "n": 3}) == {"urls": ["http://a:***@h/"], "n": 3}


def test_logs_are_redacted_by_the_filter(caplog):
    logger = logging.getLogger("genevolve_graph.test_redaction")
    caplog.handler.addFilter(RedactingFilter())
    logger.warning("retrying %s", f"http://a:{PASSWORD}@h/v1")
    assert PASSWORD not in caplog.text and "http://a:***@h/v1" in caplog.text


def test_batch_records_no_password_from_base_url(cli, tmp_path, scripted_server):
    ids = ["a", "b"]
    server = scripted_server(script_for(ids, rounds=2))
    host = server.base_url.split("://", 1)[1]
    secret_url = f"http://alice:{PASSWORD}@{host}?api_key={TOKEN}"
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"request {i}"} for i in ids])
    out = tmp_path / "run"
    result = cli("batch", "--input", path, "--out", out, "--policy", "openai", "--base-url", secret_url, "--model", "scripted",
                 "--retry-delay", "0.01", "--no-progress", "--no-preflight", "--max-retries", "0")
    assert result.exit_code in (0, 1), result.output + result.stderr
    manifest = (out / "run.json").read_text()
    assert PASSWORD not in manifest and TOKEN not in manifest and "alice:***@" in manifest
    assert PASSWORD not in (out / "results.jsonl").read_text() and TOKEN not in (out / "results.jsonl").read_text()
    with sqlite3.connect(out / "trace.sqlite") as conn:
        blobs = b"".join(bytes(m or b"") for (m,) in conn.execute("select metadata from checkpoints"))
    assert PASSWORD.encode() not in blobs
    assert PASSWORD not in result.output + result.stderr


def test_an_unreachable_endpoint_with_credentials_is_recorded_without_them(cli, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "prompt": "a fox"}])
    out = tmp_path / "run"
    result = cli("batch", "--input", path, "--out", out, "--policy", "openai", "--base-url", f"http://bob:{PASSWORD}@127.0.0.1:9/v1",
                 "--model", "m", "--retry-delay", "0.01", "--no-progress", "--no-preflight", "--max-retries", "0")
    records = read_results(out / "results.jsonl")
    assert records and records[0]["termination"] == "error"
    everything = (out / "run.json").read_text() + (out / "results.jsonl").read_text() + result.output + result.stderr
    assert PASSWORD not in everything


def test_the_manifest_row_list_is_redacted_only_where_an_id_holds_a_url():
    """The manifest's row list is copied as it is when no id holds a URL (a resume at 100,000
    rows must not walk it row by row); an id that holds one is redacted like every other value."""
    from genevolve_graph.batch.engine import redacted_manifest

    plain = {"run_id": "r", "settings": {"base_url": "http://user:secret@host/v1"}, "rows": [[0, "a"], [1, "b"]]}
    out = redacted_manifest(plain)
    assert out["rows"] is plain["rows"]
    assert "secret" not in out["settings"]["base_url"] and list(out) == list(plain)

    with_url = {**plain, "rows": [[0, "a"], [1, "http://user:secret@host/x"]]}
    out = redacted_manifest(with_url)
    assert "secret" not in out["rows"][1][1] and out["rows"][0] == [0, "a"]
    assert "secret" not in redacted_manifest({**plain, "rows": [[0, "a"], ["http://u:secret@h/", "b"]]})["rows"][1][0]
