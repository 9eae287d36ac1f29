"""A judge endpoint that answers 200 with garbage: one ``JudgeError`` naming the endpoint and
the fault (which evaluation records per sample and the trainer maps to a missing reward),
never a raw ``JSONDecodeError`` or ``IndexError``. Real HTTP against the scripted server."""

from __future__ import annotations

import pytest

from genevolve_graph.evaluation.judge_client import JudgeClient, JudgeError
from genevolve_graph.testing.scripted_openai import ScriptedChatServer

CASES = {
    "html": ({"raw": b"<html>502</html>", "content_type": "text/html"}, "is not JSON"),
    "binary": ({"raw": b"\x89PNG\r\n\x1a\n\x00\xff", "content_type": "application/json"}, "is not utf-8 text"),
    "no choices": ({"raw": b'{"id": "x"}', "content_type": "application/json"}, "has no 'choices'"),
    "empty choices": ({"raw": b'{"id": "x", "choices": []}', "content_type": "application/json"}, "empty 'choices'"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_garbage_from_the_judge_is_one_judge_error(case):
    reply, problem = CASES[case]
    with ScriptedChatServer([reply]) as server:
        base_url = server.base_url
        async with JudgeClient(base_url, "judge-m", max_retries=2, backoff_base=0.01) as client:
            with pytest.raises(JudgeError) as info:
                await client.complete([{"role": "user", "content": "score this"}])
    message = str(info.value)
    assert f"the judge endpoint {base_url}/chat/completions sent a malformed reply" in message
    assert problem in message
    assert len(server.requests) == 1  # not retried: the same endpoint would answer the same
