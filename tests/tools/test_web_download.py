"""The safe downloader against a real image host on 127.0.0.1: formats, the
content-addressed cache, once-per-URL, the concurrency bound, and hostile servers."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from genevolve_graph.tools.download import DownloadRejected, ImageCandidate, ImageDownloader, shared_downloader
from genevolve_graph.testing.search_servers import image_bytes
from genevolve_graph.net.netguard import NetPolicy
from genevolve_graph.tools.web_options import OptionError, WebOptions


def downloader(options: dict[str, Any], **changes: Any) -> ImageDownloader:
    return shared_downloader(WebOptions.from_options({**options, **changes}))


def stored_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and p.parent.name != "urls"]


@pytest.mark.parametrize("fmt, stored_as", [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("gif", "PNG"), ("gifanim", "PNG")])
async def test_allowed_formats_are_stored_content_addressed(servers, web_options, fmt: str, stored_as: str) -> None:
    d = downloader(web_options)
    stored = await d.fetch(f"{servers.image_url}/img/cat?fmt={fmt}")
    assert stored.format == stored_as
    data = stored.local_path.read_bytes()
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.local_path.name.startswith(stored.sha256)
    assert stored.local_path.parent.parent == Path(web_options["image_download_dir"])
    if fmt in ("jpeg", "png", "webp"):
        assert data == image_bytes("cat", fmt)  # single-frame originals are kept byte for byte


async def test_content_type_is_not_trusted_either_way(servers, web_options) -> None:
    d = downloader(web_options)
    assert (await d.fetch(f"{servers.image_url}/octet/cat")).format == "JPEG"  # octet-stream, but a JPEG
    with pytest.raises(DownloadRejected, match="looks like HTML"):
        await d.fetch(f"{servers.image_url}/html-as-jpeg")  # says image/jpeg, is HTML


async def test_same_url_is_downloaded_once_concurrently_and_across_runs(servers, web_options) -> None:
    url = f"{servers.image_url}/img/once"
    d = downloader(web_options)
    results = await asyncio.gather(*(d.fetch(url) for _ in range(8)))
    assert len({r.local_path for r in results}) == 1
    await d.fetch(url)
    assert servers.image_state.hits["/img/once"] == 1
    # A new process (a new downloader) finds it through the on-disk URL index.
    fresh = ImageDownloader(Path(web_options["image_download_dir"]), d.policy, d.limits, 4)
    again = await fresh.fetch(url)
    assert again.local_path == results[0].local_path
    assert servers.image_state.hits["/img/once"] == 1 and fresh.stats.disk_hits == 1


async def test_downloads_respect_the_concurrency_bound(servers, web_options) -> None:
    servers.image_state.delay = 0.1
    d = downloader(web_options, download_concurrency=3)
    await asyncio.gather(*(d.fetch(f"{servers.image_url}/img/bound-{i}") for i in range(9)))
    assert servers.image_state.max_inflight == 3
    assert d.stats.network == 9


HOSTILE = [
    ("/html-as-jpeg", "not an allowed image format (looks like HTML)"),
    ("/svg", "Content-Type image/svg+xml is not an image"),
    ("/svg-as-png", "not an allowed image format (looks like SVG)"),
    ("/bomb.png", "decompression bomb refused"),
    ("/bomb.png?w=9000&h=9000", "exceeds the 40000000-pixel cap"),
    ("/truncated.jpg", "truncated or corrupt JPEG"),
    ("/big?n=300000", "Content-Length 300000 exceeds the 200000-byte cap"),
    ("/big-chunked?n=300000", "body exceeds the 200000-byte cap"),
    ("/drip?interval=0.2", "timed out after 1s"),
    ("/status/404", "HTTP 404"),
    ("/text", "Content-Type text/plain is not an image"),
    ("/loop", "more than 3 redirects"),
]


@pytest.mark.parametrize("path, reason", HOSTILE, ids=[p for p, _ in HOSTILE])
async def test_hostile_responses_are_rejected_with_a_reason(servers, web_options, path: str, reason: str) -> None:
    # Only the stalled server is meant to meet the 1 s timeout; the others get a wide one, so a
    # loaded machine cannot turn their reason into a timeout.
    timeout = 1.0 if path.startswith("/drip") else 30.0
    d = downloader(web_options, download_max_bytes=200_000, download_timeout=timeout)
    with pytest.raises(DownloadRejected) as info:
        await d.fetch(f"{servers.image_url}{path}")
    assert reason in info.value.reason
    assert stored_files(Path(web_options["image_download_dir"])) == []  # nothing hostile reaches the cache


BLOCKED = [
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("ftp://example.org/cat.jpg", "scheme 'ftp' is not allowed"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
    ("http://127.0.0.1/admin", "127.0.0.1 is loopback"),
    ("http://[::ffff:127.0.0.1]/x.png", "127.0.0.1 is loopback (embedded in ::ffff:7f00:1)"),
    ("http://[64:ff9b::a00:1]/x.png", "10.0.0.1 is private (embedded in 64:ff9b::a00:1)"),
    ("http://10.1.2.3:8080/x.png", "10.1.2.3 is private"),
    ("http://[::1]:443/x.png", "::1 is loopback"),
    ("http://0.0.0.0/x.png", "0.0.0.0 is unspecified"),
    ("http://224.0.0.1/x.png", "224.0.0.1 is multicast"),
    ("http://user:secret@example.org/x.png", "URLs with credentials are not allowed"),
    ("http://93.184.216.34:22/x.png", "port 22 is not allowed"),
    # Odd spellings of loopback are resolved (by the system resolver, offline) and caught.
    ("http://2130706433/x.png", "127.0.0.1 is loopback"),
    ("http://127.1/x.png", "127.0.0.1 is loopback"),
    ("http://localhost:8080/x.png", "is loopback"),
]


@pytest.mark.parametrize("url, reason", BLOCKED, ids=[u for u, _ in BLOCKED])
async def test_ssrf_targets_are_refused_before_connecting(web_options, servers, url: str, reason: str) -> None:
    with pytest.raises(DownloadRejected, match="blocked") as info:
        await downloader(web_options).fetch(url)
    assert reason in info.value.reason


REDIRECTS = [
    ("http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254 is link-local"),
    ("http://127.0.0.1:8080/admin", "127.0.0.1 is loopback"),
    ("http://localhost/", "is loopback"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("ftp://example.org/x.jpg", "scheme 'ftp' is not allowed"),
]


@pytest.mark.parametrize("target, reason", REDIRECTS, ids=[t for t, _ in REDIRECTS])
async def test_every_redirect_hop_is_checked(servers, web_options, target: str, reason: str) -> None:
    with pytest.raises(DownloadRejected) as info:
        await downloader(web_options).fetch(f"{servers.image_url}/redirect?to={target}")
    assert reason in info.value.reason
    assert servers.image_state.hits["/redirect"] == 1


async def test_a_redirect_to_an_allowed_image_is_followed(servers, web_options) -> None:
    stored = await downloader(web_options).fetch(f"{servers.image_url}/redirect?to=/img/moved&code=301")
    assert stored.local_path.read_bytes() == image_bytes("moved")


async def test_loopback_is_refused_without_an_allow_list(servers, web_options) -> None:
    options = {**web_options, "allow_hosts": []}
    with pytest.raises(DownloadRejected, match=f"port {servers.images.port} is not allowed"):
        await downloader(options).fetch(f"{servers.image_url}/img/a")
    # Even with the port allowed, the address is loopback.
    with pytest.raises(DownloadRejected, match="127.0.0.1 is loopback"):
        await downloader(options, download_ports=[servers.images.port]).fetch(f"{servers.image_url}/img/a")
    assert servers.image_state.hits["/img/a"] == 0


async def test_dns_rebinding_is_caught_at_the_connected_peer(servers, web_options) -> None:
    """The name resolves to a public address when checked, but the connection lands on
    127.0.0.1 (as a rebinding DNS server would arrange): the peer check refuses it."""

    async def rebinding_resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    policy = NetPolicy.build([], ports=[servers.images.port], resolver=rebinding_resolver)
    opts = WebOptions.from_options({**web_options, "allow_hosts": []})
    d = shared_downloader(opts, policy)
    with pytest.raises(DownloadRejected, match=r"blocked: localhost -> 127\.0\.0\.1 is loopback"):
        await d.fetch(f"http://localhost:{servers.images.port}/img/rebound")
    # The check runs on the connection itself: it was made, but not one byte of the request
    # was written to it, so the image host never saw the request.
    assert servers.image_state.hits["/img/rebound"] == 0
    assert stored_files(opts.image_download_dir) == []


async def test_fetch_ranked_replaces_rejected_images_and_reports_them(servers, web_options) -> None:
    base = servers.image_url
    candidates = [
        ImageCandidate(url=f"{base}/img/first", title="first", page_url="https://example.org/p1"),
        ImageCandidate(url=f"{base}/svg-as-png", title="svg"),
        ImageCandidate(url=f"{base}/redirect?to=http://169.254.169.254/", title="metadata"),
        ImageCandidate(url=f"{base}/octet/first", title="same bytes as the first"),
        ImageCandidate(url=f"{base}/img/second", title="second"),
        ImageCandidate(url=f"{base}/img/third", title="third"),
        ImageCandidate(url=f"{base}/img/fourth", title="fourth"),
    ]
    outcome = await downloader(web_options).fetch_ranked(candidates, 3)
    assert [h.title for h in outcome.hits] == ["first", "second", "third"]
    assert outcome.hits[0].page_url == "https://example.org/p1"
    assert all(Path(h.local_path).is_file() for h in outcome.hits)
    assert len(outcome.rejected) == 3
    assert outcome.rejected[0].startswith(f"{base}/svg-as-png: not an allowed image format")
    assert "169.254.169.254 is link-local" in outcome.rejected[1]
    assert outcome.rejected[2] == f"{base}/octet/first: same image as {base}/img/first"
    assert servers.image_state.hits["/img/fourth"] == 0  # not needed, not fetched


async def test_no_temporary_files_are_left_behind(servers, web_options) -> None:
    d = downloader(web_options)
    await asyncio.gather(*(d.fetch(f"{servers.image_url}/img/t{i}") for i in range(5)))
    leftovers = [p for p in Path(web_options["image_download_dir"]).rglob(".tmp-*")]
    assert leftovers == []
    assert len(stored_files(Path(web_options["image_download_dir"]))) == 5


def test_allow_list_entries_must_be_host_port() -> None:
    with pytest.raises(ValueError, match="allow-list entry '127.0.0.1' must be 'host:port'"):
        NetPolicy.build(["127.0.0.1"])
    with pytest.raises(OptionError, match="option 'allow_hosts' must be a list"):
        WebOptions.from_options({"allow_hosts": [8080]})
    with pytest.raises(OptionError, match="option 'download_concurrency' must be an integer >= 1"):
        WebOptions.from_options({"download_concurrency": 0})


def test_download_dir_defaults(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("IMAGE_DOWNLOAD_DIR", str(tmp_path / "env-dir"))
    assert WebOptions.from_options({}).image_download_dir == tmp_path / "env-dir"
    monkeypatch.delenv("IMAGE_DOWNLOAD_DIR")
    assert WebOptions.from_options({}).image_download_dir.parts[-2:] == ("genevolve-graph", "images")


async def test_transient_failures_may_be_retried_later_in_the_run(servers, web_options) -> None:
    d = downloader(web_options)
    for _ in range(2):
        with pytest.raises(DownloadRejected, match="HTTP 503"):
            await d.fetch(f"{servers.image_url}/status/503")
        with pytest.raises(DownloadRejected, match="HTTP 404"):
            await d.fetch(f"{servers.image_url}/status/404")
    assert servers.image_state.hits["/status/503"] == 2  # worth another try
    assert servers.image_state.hits["/status/404"] == 1  # remembered


async def test_relative_cache_dir_gives_absolute_paths(servers, web_options, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    stored = await downloader(web_options, image_download_dir="relative-cache").fetch(f"{servers.image_url}/img/rel")
    assert stored.local_path.is_absolute() and stored.local_path.is_relative_to(tmp_path / "relative-cache")


@pytest.mark.parametrize("fmt", ["jpeg", "gifanim"])
async def test_each_download_is_decoded_once(servers, web_options, monkeypatch, fmt: str) -> None:
    """One full decode checks the bytes and, for a GIF, gives the frame that is stored; a
    second fetch of the URL decodes nothing."""
    from genevolve_graph.safety import imaging

    decodes: list[int] = []
    real = imaging._decode
    monkeypatch.setattr(imaging, "_decode", lambda data, *a, **k: decodes.append(len(data)) or real(data, *a, **k))
    d = downloader(web_options)
    url = f"{servers.image_url}/img/once-decoded?fmt={fmt}"
    await d.fetch(url)
    await d.fetch(url)
    assert decodes == [len(image_bytes("once-decoded", fmt))]
