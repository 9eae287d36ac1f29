"""JudgeClient against the scripted server: retries, refusals, the shared rate limiter."""

from __future__ import annotations

import asyncio
import time

import pytest

from genevolve_graph.evaluation.judge_client import JudgeClient, JudgeError, RateLimiter, ask_parsed
from tests.evaluation.judge_server import ScriptedJudge, error, ok

# The limiter tests space requests RPM apart and allow JITTER (a quarter of the interval) for a
# loaded machine shifting one arrival; a bunch-up of unlimited requests is far tighter than that.
RPM = 150.0
JITTER = 0.1


def client_for(judge: ScriptedJudge, **kwargs) -> JudgeClient:
    options = {"max_retries": 3, "timeout": 10.0, "backoff_base": 0.01, "backoff_max": 0.05}
    options.update(kwargs)
    return JudgeClient(judge.base_url, "judge-test", "test-key", **options)


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "Grade it."}, {"role": "user", "content": [{"type": "text", "text": text}]}]


async def test_complete_sends_temperature_zero_and_returns_text(judge: ScriptedJudge) -> None:
    judge.on("case-plain", ok("fine"))
    async with client_for(judge) as client:
        assert await client.complete(user("case-plain")) == "fine"
    (request,) = judge.requests_for("case-plain")
    assert request.body["temperature"] == 0
    assert request.body["model"] == "judge-test"
    assert "max_tokens" not in request.body


async def test_429_and_5xx_are_retried_until_success(judge: ScriptedJudge) -> None:
    judge.on("case-flaky", error(429, retry_after="0"), error(503), error(500), ok("third time lucky"))
    async with client_for(judge) as client:
        assert await client.complete(user("case-flaky")) == "third time lucky"
    assert len(judge.requests_for("case-flaky")) == 4


async def test_retries_exhausted_raise_judge_error_with_status(judge: ScriptedJudge) -> None:
    judge.on("case-down", error(429))
    async with client_for(judge, max_retries=2) as client:
        with pytest.raises(JudgeError, match="failed after 3 attempts: HTTP 429") as caught:
            await client.complete(user("case-down"))
    assert caught.value.status == 429 and not caught.value.is_configuration_error
    assert len(judge.requests_for("case-down")) == 3


async def test_client_errors_are_not_retried(judge: ScriptedJudge) -> None:
    judge.on("case-auth", error(401))
    async with client_for(judge) as client:
        with pytest.raises(JudgeError, match="refused the request: HTTP 401") as caught:
            await client.complete(user("case-auth"))
    assert caught.value.is_configuration_error
    assert len(judge.requests_for("case-auth")) == 1


async def test_empty_reply_is_retried(judge: ScriptedJudge) -> None:
    judge.on("case-empty", ok(""), ok("now with words"))
    async with client_for(judge) as client:
        assert await client.complete(user("case-empty")) == "now with words"


async def test_ask_parsed_asks_again_on_unreadable_output(judge: ScriptedJudge) -> None:
    judge.on("case-parse", ok("garbage"), ok("42"))
    async with client_for(judge) as client:
        assert await ask_parsed(client, user("case-parse"), int, attempts=3) == 42
        judge.on("case-never", ok("garbage"))
        with pytest.raises(JudgeError, match="could not read the judge output after 2 replies.*garbage"):
            await ask_parsed(client, user("case-never"), int, attempts=2)


async def test_limiter_keeps_the_rate_across_concurrent_workers(judge: ScriptedJudge) -> None:
    """8 requests from 8 concurrent workers at 300 rpm arrive at least 0.2 s apart at the server.

    A warm-up request first: the SDK's first request pays one-off set-up costs that would
    otherwise shorten the first measured gap (transport, not the limiter).
    """
    judge.on("case-rate", ok("ok"))
    judge.on("case-warm", ok("ok"))
    rpm, n = RPM, 8
    async with client_for(judge, rpm=rpm) as client:
        await client.complete(user("case-warm"))
        await asyncio.gather(*(client.complete(user(f"case-rate {i}")) for i in range(n)))
    times = sorted(r.at for r in judge.requests_for("case-rate"))
    assert len(times) == n
    gaps = [b - a for a, b in zip(times, times[1:])]
    interval = 60.0 / rpm
    # a loaded machine can shift one arrival; JITTER is a quarter of the interval
    assert min(gaps) >= interval - JITTER, gaps
    assert times[-1] - times[0] >= (n - 1) * interval - JITTER
    assert (n - 1) / (times[-1] - times[0]) * 60 <= rpm * 1.05


async def test_without_limiter_concurrent_requests_bunch_up(judge: ScriptedJudge) -> None:
    """The measurement above can see a violation: unlimited workers arrive closer than the limiter allows."""
    judge.on("case-burst", ok("ok"))
    async with client_for(judge) as client:
        await asyncio.gather(*(client.complete(user(f"case-burst {i}")) for i in range(8)))
    times = sorted(r.at for r in judge.requests_for("case-burst"))
    assert min(b - a for a, b in zip(times, times[1:])) < 60.0 / RPM - JITTER


async def test_limiter_counts_retries_too(judge: ScriptedJudge) -> None:
    judge.on("case-retry-rate", error(500), error(500), ok("ok"))
    judge.on("case-warm", ok("ok"))
    async with client_for(judge, rpm=RPM) as client:
        await client.complete(user("case-warm"))
        await client.complete(user("case-retry-rate"))
    times = [r.at for r in judge.requests_for("case-retry-rate")]
    assert len(times) == 3 and min(b - a for a, b in zip(times, times[1:])) >= 60.0 / RPM - JITTER


def test_client_survives_successive_event_loops(judge: ScriptedJudge) -> None:
    """The trainer may call asyncio.run per step; one JudgeClient must work in each."""
    judge.on("case-loops", ok("ok"))
    client = client_for(judge)
    for _ in range(3):
        assert asyncio.run(client.complete(user("case-loops"))) == "ok"


def test_rate_limiter_reservations_are_spaced() -> None:
    limiter = RateLimiter(120)
    start = time.monotonic()
    waits = [limiter.reserve() for _ in range(4)]
    assert time.monotonic() - start < 0.5  # reserve never sleeps: it returns waits that add up to 1.5 s
    assert waits[0] == pytest.approx(0, abs=0.01)
    assert [round(w, 1) for w in waits[1:]] == [0.5, 1.0, 1.5]
    with pytest.raises(ValueError):
        RateLimiter(0)


async def test_timeouts_are_retried_then_reported(judge: ScriptedJudge) -> None:
    from tests.evaluation.judge_server import Reply

    judge.on("case-slow", Reply(text="late", delay=1.0))
    async with client_for(judge, max_retries=1, timeout=0.3) as client:
        with pytest.raises(JudgeError, match="failed after 2 attempts: the request to .* did not finish within its total deadline of 0.3 s"):
            await client.complete(user("case-slow"))
    assert len(judge.requests_for("case-slow")) == 2


async def test_each_judge_call_is_a_traced_chat_model_run(judge: ScriptedJudge) -> None:
    from langchain_core.tracers.context import collect_runs

    judge.on("case-traced", ok("traced answer"))
    with collect_runs() as collector:
        async with client_for(judge) as client:
            assert await client.complete(user("case-traced")) == "traced answer"
    [run] = [r for r in collector.traced_runs if r.name == "judge"]
    assert run.run_type == "llm" and {"genevolve", "judge"} <= set(run.tags)
    assert run.extra["invocation_params"]["model_name"] == "judge-test"
    assert "traced answer" in str(run.outputs)


async def test_any_langchain_chat_model_can_judge() -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    client = JudgeClient("unused", "any", chat_model=FakeListChatModel(responses=["", "score: 1"]), max_retries=1, backoff_base=0.01)
    assert await client.complete(user("anything")) == "score: 1"  # the empty reply was retried
