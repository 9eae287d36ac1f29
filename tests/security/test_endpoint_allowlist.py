"""Studio / dev-server callers, part 3: the endpoints that may receive the server's credentials.

``GENEVOLVE_ALLOWED_BASE_URLS=http://h:p/v1`` allows that endpoint and the paths below it. A
path that only *looks* below it (dot segments, percent-encoded dot segments, empty segments,
encoded separators) is refused: a client or a proxy may resolve it elsewhere on the host.
"""

from __future__ import annotations

import pytest

from genevolve_graph import AgentContext
from genevolve_graph.core.guard import ContextRefused, OperatorSettings, check_caller_context

ALLOWED = "http://vllm.internal:8000/v1"


@pytest.fixture
def settings(monkeypatch) -> OperatorSettings:
    for name in ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "SERPER_BASE_URL", "TAVILY_BASE_URL", "SEARXNG_URL"):
        monkeypatch.delenv(name, raising=False)
    return OperatorSettings.from_env({"GENEVOLVE_ALLOWED_BASE_URLS": ALLOWED})


@pytest.mark.parametrize("url", [
    "http://vllm.internal:8000/v1/../../x",
    "http://vllm.internal:8000/v1/..",
    "http://vllm.internal:8000/v1/./../admin",
    "http://vllm.internal:8000/v1/%2e%2e/%2E%2E/x",
    "http://vllm.internal:8000/v1/.%2e/x",
    "http://vllm.internal:8000/v1/%2e/x",
    "http://vllm.internal:8000/v1//x",
    "http://vllm.internal:8000//v1",
    "http://vllm.internal:8000/v1/..%2fadmin",
    "http://vllm.internal:8000/v1/%252e%252e/x",
    "http://vllm.internal:8000/v1\\..\\x",
    "http://vllm.internal:8000/v1/x/%5c..%5cy",
])
def test_paths_that_leave_the_allowed_prefix_are_refused(settings, url):
    assert not settings.endpoint_allowed(url)
    with pytest.raises(ContextRefused, match="GENEVOLVE_ALLOWED_BASE_URLS"):
        check_caller_context(AgentContext.coerce({"policy": "openai", "base_url": url, "model": "m"}), settings)
    with pytest.raises(ContextRefused, match="serper_base_url"):
        check_caller_context(AgentContext.coerce({"options": {"serper_base_url": url}}), settings)


@pytest.mark.parametrize("url", [ALLOWED, ALLOWED + "/", ALLOWED + "/chat/completions", "HTTP://VLLM.internal:8000/v1/models"])
def test_the_allowed_endpoint_and_what_is_below_it_still_pass(settings, url):
    assert settings.endpoint_allowed(url)
    check_caller_context(AgentContext.coerce({"policy": "openai", "base_url": url, "model": "m"}), settings)


def test_an_allowed_prefix_with_dot_segments_allows_nothing(monkeypatch):
    settings = OperatorSettings.from_env({"GENEVOLVE_ALLOWED_BASE_URLS": "http://h:1/v1/../admin"})
    assert not settings.endpoint_allowed("http://h:1/v1/../admin") and not settings.endpoint_allowed("http://h:1/admin")
