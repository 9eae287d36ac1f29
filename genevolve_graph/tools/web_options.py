"""The web tools' settings, read from ``AgentContext.options`` and validated in one place.

Options are plain JSON values so that Studio's form, the CLI and the SDK can set them;
secrets never live here (backends read API keys from the environment). A wrong value is
reported with the option's name and what it should be.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from genevolve_graph.safety.imaging import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from genevolve_graph.net.netguard import DEFAULT_PORTS


class OptionError(ValueError):
    """An option with a wrong value; the message names the option and the fix."""


def default_download_dir() -> Path:
    """``IMAGE_DOWNLOAD_DIR`` or ``<user cache dir>/genevolve-graph/images``."""
    env = os.environ.get("IMAGE_DOWNLOAD_DIR")
    return Path(env).expanduser() if env else Path(user_cache_dir("genevolve-graph")) / "images"


@dataclass(frozen=True)
class WebOptions:
    """Every tunable of the web search backends and the image downloader."""

    image_download_dir: Path
    allow_hosts: tuple[str, ...] = ()
    """``host:port`` pairs exempt from the public-address rule (loopback test hosts)."""
    download_ports: tuple[int, ...] = tuple(sorted(DEFAULT_PORTS))
    download_concurrency: int = 16
    download_max_bytes: int = DEFAULT_MAX_BYTES
    download_max_pixels: int = DEFAULT_MAX_PIXELS
    download_timeout: float = 20.0
    """Seconds for one whole download, redirects included (defeats slow-drip servers)."""
    download_connect_timeout: float = 5.0
    download_read_timeout: float = 10.0
    download_max_redirects: int = 3
    image_candidates: int = 0
    """Image-search candidates to ask for (0: twice top_k), so rejected images can be replaced."""
    search_timeout: float = 15.0
    search_retries: int = 3
    search_retry_initial_delay: float = 0.5
    search_retry_max_delay: float = 8.0
    search_cache: bool = True
    show_images: bool = False
    thumbnail_max_side: int = 256

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> "WebOptions":
        o = dict(options or {})
        directory = o.get("image_download_dir") or ""
        return cls(
            image_download_dir=Path(str(directory)).expanduser() if directory else default_download_dir(),
            allow_hosts=_str_list(o, "allow_hosts"),
            download_ports=tuple(_int(v, "download_ports", 1) for v in o.get("download_ports", sorted(DEFAULT_PORTS))),
            download_concurrency=_int(o.get("download_concurrency", 16), "download_concurrency", 1),
            download_max_bytes=_int(o.get("download_max_bytes", DEFAULT_MAX_BYTES), "download_max_bytes", 1),
            download_max_pixels=_int(o.get("download_max_pixels", DEFAULT_MAX_PIXELS), "download_max_pixels", 1),
            download_timeout=_float(o.get("download_timeout", 20.0), "download_timeout"),
            download_connect_timeout=_float(o.get("download_connect_timeout", 5.0), "download_connect_timeout"),
            download_read_timeout=_float(o.get("download_read_timeout", 10.0), "download_read_timeout"),
            download_max_redirects=_int(o.get("download_max_redirects", 3), "download_max_redirects", 0),
            image_candidates=_int(o.get("image_candidates", 0), "image_candidates", 0),
            search_timeout=_float(o.get("search_timeout", 15.0), "search_timeout"),
            search_retries=_int(o.get("search_retries", 3), "search_retries", 0),
            search_retry_initial_delay=_float(o.get("search_retry_initial_delay", 0.5), "search_retry_initial_delay", allow_zero=True),
            search_retry_max_delay=_float(o.get("search_retry_max_delay", 8.0), "search_retry_max_delay", allow_zero=True),
            search_cache=_bool(o.get("search_cache", True), "search_cache"),
            show_images=_bool(o.get("show_images", False), "show_images"),
            thumbnail_max_side=_int(o.get("thumbnail_max_side", 256), "thumbnail_max_side", 16),
        )


def _str_list(o: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = o.get(name) or ()
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise OptionError(f"option {name!r} must be a list of 'host:port' strings, got {value!r}")
    return tuple(v.strip() for v in value)


def _int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        raise OptionError(f"option {name!r} must be an integer >= {minimum}, got {value!r}")
    number = int(value)
    if number < minimum:
        raise OptionError(f"option {name!r} must be an integer >= {minimum}, got {number}")
    return number


def _float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"option {name!r} must be a number of seconds, got {value!r}") from None
    if number < 0 or (number == 0 and not allow_zero) or number != number:
        raise OptionError(f"option {name!r} must be a positive number of seconds, got {value!r}")
    return number


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise OptionError(f"option {name!r} must be true or false, got {value!r}")
