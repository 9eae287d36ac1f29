"""Serper, SearXNG and Tavily backends against compatible servers on 127.0.0.1: results,
image downloads with rejections, retries, the run cache, failures as clear messages, and
keys that never leak."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from genevolve_graph.core.context import AgentContext
from genevolve_graph.tools.base import BackendUnavailable, ImageSearchBackend, SearchBackend
from genevolve_graph.tools.registry import UnknownBackend, make_image_search_backend, make_search_backend
from genevolve_graph.tools.searxng import SearxngBackend
from genevolve_graph.tools.serper import SerperBackend
from genevolve_graph.tools.tavily import TavilyBackend
from genevolve_graph.tools.web_common import search_many


def ctx(backend: str, options: dict[str, Any], **extra: Any) -> AgentContext:
    return AgentContext(search=backend, image_search=backend, options={**options, **extra})


@pytest.fixture
def serper(servers, web_options, monkeypatch) -> SerperBackend:
    monkeypatch.setenv("SERPER_API_KEY", servers.search_state.serper_key)
    monkeypatch.setenv("SERPER_BASE_URL", f"{servers.search.url}/serper")
    backend = make_search_backend(ctx("serper", web_options))
    assert isinstance(backend, SerperBackend)
    return backend


@pytest.fixture
def searxng(servers, web_options) -> SearxngBackend:
    backend = make_search_backend(ctx("searxng", web_options, searxng_url=f"{servers.search.url}/searxng"))
    assert isinstance(backend, SearxngBackend)
    return backend


@pytest.fixture
def tavily(servers, web_options, monkeypatch) -> TavilyBackend:
    monkeypatch.setenv("TAVILY_API_KEY", servers.search_state.tavily_key)
    backend = make_search_backend(ctx("tavily", web_options, tavily_base_url=f"{servers.search.url}/tavily"))
    assert isinstance(backend, TavilyBackend)
    return backend


# --------------------------------------------------------------------------- Serper


async def test_serper_text_search(serper, servers) -> None:
    hits = await serper.search("Eiffel Tower height", 3)
    assert [h.url for h in hits] == [f"https://example.org/eiffel-tower-height/{i}" for i in (1, 2, 3)]
    assert hits[0].title == "Eiffel Tower height — result 1" and hits[0].snippet == "About Eiffel Tower height, fact 1."
    assert servers.search_state.last_body == {"q": "Eiffel Tower height", "num": 3}


async def test_serper_image_search_downloads_and_reports_rejections(serper, servers, web_options) -> None:
    img = servers.image_url
    servers.search_state.image_results["red panda"] = [
        f"{img}/img/panda-1",
        f"{img}/html-as-jpeg",
        f"{img}/redirect?to=http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        f"{img}/img/panda-2",
        f"{img}/img/panda-3",
    ]
    image_backend = make_image_search_backend(ctx("serper", web_options))
    assert isinstance(image_backend, ImageSearchBackend)
    outcome = await image_backend.search_images("red panda", 3)
    assert [h.url for h in outcome.hits] == [f"{img}/img/panda-{i}" for i in (1, 2, 3)]
    assert [h.title for h in outcome.hits] == ["red panda image 0", "red panda image 4", "red panda image 5"]
    assert outcome.hits[0].page_url == "https://example.org/page/red-panda/0"
    for hit in outcome.hits:
        assert Path(hit.local_path).is_file() and Path(hit.local_path).is_relative_to(web_options["image_download_dir"])
    assert outcome.rejected == [
        f"{img}/html-as-jpeg: not an allowed image format (looks like HTML); allowed: JPEG, PNG, WebP, GIF",
        f"{img}/redirect?to=http://169.254.169.254/latest/meta-data/: blocked: 169.254.169.254 -> 169.254.169.254 is link-local (cloud metadata range)",
        "file:///etc/passwd: blocked: scheme 'file' is not allowed (only http and https)",
    ]
    assert servers.search_state.last_body == {"q": "red panda", "num": 6}  # twice top_k candidates


async def test_missing_key_is_a_clear_message(servers, web_options) -> None:
    backend = make_search_backend(ctx("serper", web_options))
    with pytest.raises(BackendUnavailable, match="^search unavailable: SERPER_API_KEY is not set$"):
        await backend.search("anything", 5)
    with pytest.raises(BackendUnavailable, match="^image_search unavailable: SERPER_API_KEY is not set$"):
        await make_image_search_backend(ctx("serper", web_options)).search_images("anything", 5)


async def test_429_then_success_is_retried(serper, servers) -> None:
    hits = await serper.search("flaky query", 2)
    assert len(hits) == 2
    assert servers.search_state.calls[("serper/search", "flaky query")] == 3  # two 429s, then 200


async def test_retries_give_up_with_a_clear_message(serper, servers, web_options) -> None:
    servers.search_state.flaky_failures = 100
    backend = SerperBackend(serper.options.__class__.from_options({**web_options, "search_retries": 2}))
    with pytest.raises(BackendUnavailable, match=r"^search unavailable: serper at http://127\.0\.0\.1:\d+ is rate limiting requests \(HTTP 429\) after 3 attempt\(s\)$"):
        await backend.search("flaky forever", 5)
    assert servers.search_state.calls[("serper/search", "flaky forever")] == 3
    with pytest.raises(BackendUnavailable, match=r"returned HTTP 503 after 3 attempt\(s\)$"):
        await backend.search("boom", 5)


async def test_timeouts_are_retried_then_reported(serper, servers, web_options) -> None:
    servers.search_state.slow_delay = 0.5
    backend = SerperBackend(serper.options.__class__.from_options({**web_options, "search_timeout": 0.1, "search_retries": 1}))
    with pytest.raises(BackendUnavailable, match=r"serper at .* did not answer within the total deadline of 0\.1 s, 2 attempt\(s\)$"):
        await backend.search("slow query", 5)
    assert servers.search_state.calls[("serper/search", "slow query")] == 2


async def test_backend_down(servers, web_options, closed_port, monkeypatch) -> None:
    monkeypatch.setenv("SERPER_API_KEY", servers.search_state.serper_key)
    monkeypatch.setenv("SERPER_BASE_URL", f"http://127.0.0.1:{closed_port}")
    backend = make_search_backend(ctx("serper", web_options))
    with pytest.raises(BackendUnavailable, match=rf"^search unavailable: serper at http://127\.0\.0\.1:{closed_port} is unreachable"):
        await backend.search("anything", 5)


async def test_keys_never_appear_in_messages_or_logs(servers, web_options, closed_port, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    monkeypatch.setenv("TAVILY_API_KEY", servers.search_state.tavily_key)
    for base, key in ((f"{servers.search.url}/serper", servers.search_state.serper_key + "-wrong"), (f"{servers.search.url}/serper", servers.search_state.serper_key), (f"http://127.0.0.1:{closed_port}", servers.search_state.serper_key)):
        monkeypatch.setenv("SERPER_API_KEY", key)
        monkeypatch.setenv("SERPER_BASE_URL", base)
        backend = make_search_backend(ctx("serper", web_options))
        for query in ("boom", "flaky again", "wrong key?"):
            try:
                await backend.search(query, 2)
            except BackendUnavailable as exc:
                messages.append(str(exc))
    tavily = make_search_backend(ctx("tavily", web_options, tavily_base_url=f"{servers.search.url}/tavily"))
    for query in ("boom", "flaky"):
        try:
            await tavily.search(query, 2)
        except BackendUnavailable as exc:
            messages.append(str(exc))
    assert any("rejected the API key (HTTP 403); check SERPER_API_KEY" in m for m in messages)
    assert any("HTTP 503" in m for m in messages) and any("unreachable" in m for m in messages)
    everything = "\n".join(messages) + caplog.text
    assert "attempt 1/4 failed" in caplog.text  # retries were logged ...
    for secret in (servers.search_state.serper_key, servers.search_state.tavily_key):
        assert secret not in everything  # ... without the keys


async def test_repeated_queries_cost_nothing(serper, servers, web_options) -> None:
    first = await serper.search("cached query", 3)
    again = await serper.search("cached query", 3)
    assert first == again and first is not again
    assert servers.search_state.calls[("serper/search", "cached query")] == 1
    await serper.search("cached query", 4)  # another top_k is another key
    assert servers.search_state.calls[("serper/search", "cached query")] == 2
    # Identical queries in flight at once share one request.
    servers.search_state.slow_delay = 0.2
    await asyncio.gather(*(serper.search("slow shared", 2) for _ in range(5)))
    assert servers.search_state.calls[("serper/search", "slow shared")] == 1
    # Image search outcomes are cached too (hits and rejections).
    images = make_image_search_backend(ctx("serper", web_options))
    one = await images.search_images("cached images", 2)
    two = await images.search_images("cached images", 2)
    assert one == two and servers.search_state.calls[("serper/images", "cached images")] == 1
    # The cache can be switched off.
    uncached = make_search_backend(ctx("serper", web_options, search_cache=False))
    await uncached.search("uncached", 1)
    await uncached.search("uncached", 1)
    assert servers.search_state.calls[("serper/search", "uncached")] == 2


async def test_multi_query_search_runs_concurrently(serper, servers) -> None:
    servers.search_state.slow_delay = 0.3
    results = await search_many(serper, ["slow a", "slow b", "slow c", "slow d"], 2)
    assert [r[0].title for r in results] == [f"slow {c} — result 1" for c in "abcd"]
    assert servers.search_state.max_inflight == 4


async def test_search_many_keeps_going_when_one_query_fails(serper, servers) -> None:
    results = await search_many(serper, ["fine", "boom"], 1)
    assert results[0][0].title == "fine — result 1"
    assert isinstance(results[1], BackendUnavailable) and "HTTP 503" in str(results[1])


async def test_top_k_is_clamped(serper, servers) -> None:
    assert len(await serper.search("many", 500)) == 20
    assert len(await serper.search("few", 0)) == 1
    assert await serper.search("   ", 3) == []


# --------------------------------------------------------------------------- SearXNG


async def test_searxng_text_and_images(searxng, servers, web_options) -> None:
    hits = await searxng.search("aurora borealis", 4)
    assert len(hits) == 4 and hits[0].snippet == "SearXNG on aurora borealis 1."
    img = servers.image_url
    servers.search_state.image_results["aurora"] = [f"{img}/img/aurora-1", f"{img}/svg", f"{img}/img/aurora-2"]
    outcome = await searxng.search_images("aurora", 2)
    assert [h.url for h in outcome.hits] == [f"{img}/img/aurora-1", f"{img}/img/aurora-2"]
    assert outcome.hits[0].page_url == "https://example.com/aurora/0"
    assert outcome.rejected == [f"{img}/svg: Content-Type image/svg+xml is not an image"]


async def test_searxng_relative_image_proxy_urls_resolve_against_the_instance(searxng, servers) -> None:
    # The instance is on 127.0.0.1 but not allow-listed: its proxied images are refused.
    servers.search_state.image_results["proxied"] = ["/image_proxy?url=x"]
    outcome = await searxng.search_images("proxied", 1)
    assert outcome.hits == []
    assert outcome.rejected[0].startswith(f"{servers.search.url}/image_proxy?url=x: blocked: port {servers.search.port} is not allowed")


async def test_searxng_without_json_format_says_how_to_fix_it(searxng, servers) -> None:
    servers.search_state.searxng_json = False
    with pytest.raises(BackendUnavailable) as info:
        await searxng.search("anything", 3)
    assert "refused format=json" in str(info.value)
    assert "`json` under `search: formats:` in the instance's settings.yml (HTTP 403)" in str(info.value)


async def test_searxng_needs_an_instance(servers, web_options) -> None:
    backend = make_search_backend(ctx("searxng", web_options))
    with pytest.raises(BackendUnavailable, match=r"no SearXNG instance is configured; set options\['searxng_url'\] or SEARXNG_URL"):
        await backend.search("anything", 3)


# --------------------------------------------------------------------------- Tavily


async def test_tavily_text_and_images(tavily, servers, web_options) -> None:
    hits = await tavily.search("Mount Fuji", 2)
    assert [h.url for h in hits] == ["https://example.net/mount-fuji/1", "https://example.net/mount-fuji/2"]
    assert servers.search_state.last_body["max_results"] == 2 and servers.search_state.last_body["search_depth"] == "basic"
    outcome = await make_image_search_backend(ctx("tavily", web_options, tavily_base_url=f"{servers.search.url}/tavily")).search_images("Mount Fuji", 3)
    assert len(outcome.hits) == 3 and outcome.rejected == []
    assert outcome.hits[0].title == "Mount Fuji picture 0"  # a {url, description} item
    assert outcome.hits[1].title == outcome.hits[1].url  # a plain URL item: no title given
    assert servers.search_state.last_body["include_images"] is True


async def test_tavily_missing_and_wrong_key(servers, web_options, monkeypatch) -> None:
    backend = make_search_backend(ctx("tavily", web_options, tavily_base_url=f"{servers.search.url}/tavily"))
    with pytest.raises(BackendUnavailable, match="^search unavailable: TAVILY_API_KEY is not set$"):
        await backend.search("q", 2)
    monkeypatch.setenv("TAVILY_API_KEY", "tvly-wrong-key-123456")
    with pytest.raises(BackendUnavailable, match=r"rejected the API key \(HTTP 401\); check TAVILY_API_KEY$") as info:
        await backend.search("q", 2)
    assert "tvly-wrong-key-123456" not in str(info.value)


# --------------------------------------------------------------------------- registry and options


@pytest.mark.parametrize("name", ["serper", "searxng", "tavily", "ddgs"])
def test_registry_builds_each_backend(name: str, web_options) -> None:
    context = ctx(name, web_options)
    assert isinstance(make_search_backend(context), SearchBackend)
    assert isinstance(make_image_search_backend(context), ImageSearchBackend)


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(UnknownBackend, match=r"unknown search backend 'bing' \(context field 'search'\); choose one of .*serper"):
        make_search_backend(AgentContext(search="bing"))


def test_bad_backend_options_name_the_option(web_options) -> None:
    with pytest.raises(ValueError, match="option 'searxng_safesearch' must be 0, 1 or 2"):
        make_search_backend(ctx("searxng", web_options, searxng_safesearch=7))
    with pytest.raises(ValueError, match="option 'search_timeout' must be a number of seconds"):
        make_search_backend(ctx("serper", web_options, search_timeout="soon"))


def test_api_calls_use_the_environment_proxy_but_not_for_no_proxy_hosts(monkeypatch) -> None:
    from genevolve_graph.net.webclient import env_proxy

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy("https://google.serper.dev/search") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "searx.internal,127.0.0.1")
    assert env_proxy("https://google.serper.dev/search") == "http://proxy.internal:3128"
    assert env_proxy("https://searx.internal/search") is None
    assert env_proxy("http://127.0.0.1:8080/search") is None
    assert env_proxy("http://example.org/search") is None  # no HTTP_PROXY or ALL_PROXY
    monkeypatch.setenv("ALL_PROXY", "http://all.internal:8080")
    assert env_proxy("http://example.org/search") == "http://all.internal:8080"
