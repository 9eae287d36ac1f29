"""The safe image downloader and its content-addressed cache.

Image-search results are URLs chosen by strangers; the generator needs local files. Each
URL is fetched at most once (per process, and across runs through the on-disk index),
downloads run concurrently under a bound, and every download passes the SSRF policy
(``netguard``: each redirect hop and the peer actually connected to), a total deadline
(slow-drip servers), a byte cap (by Content-Length and by streamed bytes) and safe
decoding (``imaging``). A refused image is reported with its reason and never stored.

Layout of the cache directory (``IMAGE_DOWNLOAD_DIR``)::

    ab/abcdef….jpg       the image, named by the SHA-256 of its bytes
    urls/<sha256(url)>.json   {"url", "sha256", "file", "format"}: which file a URL gave

Both are written atomically (temporary file + ``os.replace``), so a crash or a
concurrent process never leaves a half-written image behind a valid name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
from PIL import Image

from genevolve_graph.safety.imaging import UnsafeImageError, decode_image
from genevolve_graph.tools.base import ImageHit, ImageSearchOutcome
from genevolve_graph.net.netguard import BlockedURL, NetPolicy
from genevolve_graph.tools.web_options import WebOptions
from genevolve_graph.net.guarded_http import close_session, image_session
from genevolve_graph.net.limits import OutboundLimits, ReplyTooLarge, aiohttp_chunks, read_body
from genevolve_graph.util.file_modes import write_bytes_atomic

_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NOT_IMAGE_TYPES = ("image/svg+xml", "application/json", "application/xml", "application/xhtml+xml", "application/javascript", "application/pdf")


class DownloadRejected(Exception):
    """A URL whose image was not accepted; ``reason`` says why in a few words.

    ``transient`` marks failures worth trying again later in the run (timeouts, network
    errors, 429 and 5xx replies); other refusals are remembered for the whole run.
    """

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int
    max_pixels: int
    total_timeout: float
    connect_timeout: float
    read_timeout: float
    max_redirects: int

    @classmethod
    def from_options(cls, opts: WebOptions) -> "DownloadLimits":
        return cls(
            max_bytes=opts.download_max_bytes,
            max_pixels=opts.download_max_pixels,
            total_timeout=opts.download_timeout,
            connect_timeout=opts.download_connect_timeout,
            read_timeout=opts.download_read_timeout,
            max_redirects=opts.download_max_redirects,
        )


@dataclass(frozen=True)
class StoredImage:
    """An accepted image in the cache."""

    url: str
    local_path: Path
    sha256: str
    format: str


@dataclass(frozen=True)
class ImageCandidate:
    """One image-search result before download."""

    url: str
    title: str = ""
    page_url: str = ""


@dataclass
class DownloadStats:
    """Counters for benchmarks and tests: what each ``fetch`` cost."""

    network: int = 0
    disk_hits: int = 0
    memory_hits: int = 0
    rejected: int = 0


@dataclass
class _LoopState:
    """What belongs to one event loop: the bound, the shared downloads, the HTTP pool.

    The pooled session keeps connections alive between downloads (one TLS handshake per
    image host, not per image) and is closed as soon as no download is running, so no
    socket outlives the work or its event loop.
    """

    semaphore: asyncio.Semaphore
    inflight: dict[str, "asyncio.Future[StoredImage]"] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None
    users: int = 0

    def acquire(self, policy: NetPolicy, limits: "DownloadLimits", connections: int) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = image_session(
                policy, connections=connections, connect_timeout=limits.connect_timeout, read_timeout=limits.read_timeout
            )
        self.users += 1
        return self.session

    async def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.session is not None:
            session, self.session = self.session, None
            await close_session(session)


class ImageDownloader:
    """Fetches image URLs into a content-addressed directory, safely and at most once."""

    def __init__(self, cache_dir: Path, policy: NetPolicy, limits: DownloadLimits, concurrency: int = 16) -> None:
        self.cache_dir = Path(cache_dir).expanduser().resolve()  # local_path must not depend on the cwd
        self.policy = policy
        self.limits = limits
        self.concurrency = concurrency
        self.stats = DownloadStats()
        self._memo: dict[str, StoredImage | str] = {}
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    # -- public ---------------------------------------------------------------------------

    async def fetch(self, url: str) -> StoredImage:
        """The stored image for ``url`` (downloading it if needed) or ``DownloadRejected``."""
        memo = self._memo.get(url)
        if isinstance(memo, StoredImage):
            self.stats.memory_hits += 1
            return memo
        if isinstance(memo, str):
            self.stats.memory_hits += 1
            raise DownloadRejected(memo)
        state = self._state()
        task = state.inflight.get(url)
        if task is None:
            task = asyncio.ensure_future(self._fetch_once(url, state))
            state.inflight[url] = task
            task.add_done_callback(lambda t: self._settle(state, url, t))
        else:
            self.stats.memory_hits += 1
        return await asyncio.shield(task)

    async def fetch_ranked(self, candidates: Sequence[ImageCandidate], want: int) -> ImageSearchOutcome:
        """Up to ``want`` accepted images, in candidate order.

        The first ``want`` candidates are fetched concurrently; each rejection starts the
        next candidate, so refused images are replaced while candidates last. Every
        refusal is listed as ``"<url>: <reason>"``.
        """
        unique: list[ImageCandidate] = []
        seen: set[str] = set()
        for cand in candidates:
            if cand.url and cand.url not in seen:
                seen.add(cand.url)
                unique.append(cand)
        outcomes: dict[int, StoredImage | str] = {}
        running: dict[asyncio.Future[StoredImage], int] = {}
        distinct: set[str] = set()  # two URLs serving the same bytes count once
        next_index = 0
        try:
            while True:
                while len(distinct) + len(running) < want and next_index < len(unique):
                    running[asyncio.ensure_future(self.fetch(unique[next_index].url))] = next_index
                    next_index += 1
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    index = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        outcomes[index] = task.result()
                        distinct.add(task.result().sha256)
                    elif isinstance(exc, DownloadRejected):
                        outcomes[index] = exc.reason
                    else:
                        raise exc
        finally:
            for task in running:
                task.cancel()
        hits: list[ImageHit] = []
        rejected: list[str] = []
        kept_files: dict[str, str] = {}
        for index in sorted(outcomes):
            cand, result = unique[index], outcomes[index]
            if isinstance(result, str):
                rejected.append(f"{cand.url}: {result}")
            elif result.sha256 in kept_files:
                rejected.append(f"{cand.url}: same image as {kept_files[result.sha256]}")
            elif len(hits) < want:
                kept_files[result.sha256] = cand.url
                hits.append(ImageHit(title=cand.title or cand.url, url=cand.url, local_path=str(result.local_path), page_url=cand.page_url))
        return ImageSearchOutcome(hits=hits, rejected=rejected)

    # -- one URL --------------------------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState(semaphore=asyncio.Semaphore(self.concurrency))
        return state

    def _settle(self, state: _LoopState, url: str, task: "asyncio.Future[StoredImage]") -> None:
        state.inflight.pop(url, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self._memo[url] = task.result()
        elif isinstance(exc, DownloadRejected) and not exc.transient:
            self._memo[url] = exc.reason

    async def _fetch_once(self, url: str, state: _LoopState) -> StoredImage:
        known = self._lookup(url)  # one small file read: cheaper inline than a thread hop
        if known is not None:
            self.stats.disk_hits += 1
            return known
        try:
            async with state.semaphore:
                self.stats.network += 1
                session = state.acquire(self.policy, self.limits, self.concurrency)
                try:
                    data = await self._download(session, url)
                finally:
                    await state.release()
            # Decoding and storing are CPU and disk work: one trip to a worker thread.
            return await asyncio.to_thread(self._accept, url, data)
        except DownloadRejected:
            self.stats.rejected += 1
            raise
        except UnsafeImageError as exc:
            self.stats.rejected += 1
            raise DownloadRejected(str(exc)) from None

    def _accept(self, url: str, data: bytes) -> StoredImage:
        # Verified once, kept as received: the upright RGB copy is made only for what
        # _store re-encodes (GIFs, animations).
        decoded = decode_image(data, max_pixels=self.limits.max_pixels, max_bytes=self.limits.max_bytes, upright=False)
        return self._store(url, data, decoded.format, decoded.frames, decoded.image)

    async def _download(self, session: aiohttp.ClientSession, url: str) -> bytes:
        limits = self.limits
        try:
            async with asyncio.timeout(limits.total_timeout):
                current = url
                for _hop in range(limits.max_redirects + 1):
                    await self.policy.check_destination(current)
                    # The session's connector checks the peer of the connection before
                    # the request is written (guarded_http.PeerCheckedConnector).
                    async with session.get(current, allow_redirects=False) as response:
                        if response.status in _REDIRECTS:
                            location = response.headers.get("location")
                            if not location:
                                raise DownloadRejected(f"HTTP {response.status} redirect without a Location")
                            current = urljoin(current, location)
                            continue
                        return await self._read_body(response)
                raise DownloadRejected(f"more than {limits.max_redirects} redirects")
        except BlockedURL as exc:
            raise DownloadRejected(f"blocked: {exc}") from None
        except aiohttp.ServerTimeoutError as exc:  # a connect or read timeout of the session
            raise DownloadRejected(f"timed out ({type(exc).__name__})", transient=True) from None
        except TimeoutError:
            raise DownloadRejected(f"timed out after {limits.total_timeout:g}s (slow or stalled server)", transient=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DownloadRejected(f"download failed ({type(exc).__name__}: {exc})", transient=True) from None

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        if response.status != 200:
            code = response.status
            raise DownloadRejected(f"HTTP {code}", transient=code in (408, 425, 429) or code >= 500)
        ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype.startswith("text/") or ctype in _NOT_IMAGE_TYPES:
            raise DownloadRejected(f"Content-Type {ctype} is not an image")
        cap = self.limits.max_bytes
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            raise DownloadRejected(f"Content-Length {declared} exceeds the {cap}-byte cap")
        # The outbound policy's reader, with the image cap as its reply cap; the total
        # deadline is the caller's asyncio.timeout around the whole download.
        limits = OutboundLimits(max_reply_bytes=cap, total_deadline_s=self.limits.total_timeout)
        try:
            return await read_body(aiohttp_chunks(response), limits=limits, endpoint=str(response.url))
        except ReplyTooLarge:
            raise DownloadRejected(f"body exceeds the {cap}-byte cap") from None

    # -- the directory --------------------------------------------------------------------

    def _index_path(self, url: str) -> Path:
        return self.cache_dir / "urls" / f"{hashlib.sha256(url.encode()).hexdigest()}.json"

    def _lookup(self, url: str) -> StoredImage | None:
        try:
            entry = json.loads(self._index_path(url).read_text(encoding="utf-8"))
            path = self.cache_dir / entry["file"]
            if entry.get("url") != url or not path.is_file():
                return None
            return StoredImage(url=url, local_path=path, sha256=entry["sha256"], format=entry["format"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, url: str, data: bytes, fmt: str, frames: int, image: Image.Image) -> StoredImage:
        if fmt == "GIF" or frames > 1:
            # Keep only the first frame: re-encode it losslessly as PNG.
            out = BytesIO()
            image.save(out, format="PNG")
            data, fmt = out.getvalue(), "PNG"
        digest = hashlib.sha256(data).hexdigest()
        relative = Path(digest[:2]) / f"{digest}{_EXT[fmt]}"
        path = self.cache_dir / relative
        if not path.is_file():
            write_bytes_atomic(path, data)
        entry = {"url": url, "sha256": digest, "file": relative.as_posix(), "format": fmt}
        write_bytes_atomic(self._index_path(url), json.dumps(entry).encode())
        return StoredImage(url=url, local_path=path, sha256=digest, format=fmt)




_DOWNLOADERS: dict[tuple, ImageDownloader] = {}


def shared_downloader(opts: WebOptions, policy: NetPolicy | None = None) -> ImageDownloader:
    """One downloader per configuration in this process, so that every backend and every
    trajectory of a run share the concurrency bound and the once-per-URL memory."""
    policy = policy or NetPolicy.build(opts.allow_hosts, opts.download_ports)
    limits = DownloadLimits.from_options(opts)
    key = (str(opts.image_download_dir.resolve()), policy, policy.resolver, limits, opts.download_concurrency)
    downloader = _DOWNLOADERS.get(key)
    if downloader is None:
        downloader = _DOWNLOADERS[key] = ImageDownloader(opts.image_download_dir, policy, limits, opts.download_concurrency)
    return downloader
