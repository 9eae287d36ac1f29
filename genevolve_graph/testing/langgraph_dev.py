"""Start ``langgraph dev`` on a free loopback port (tests, ``benchmarks/server_scale.py``),
and stop it by its pid.

The server silently moves to another port when the requested one is taken, so the port is
read from its log (the ``API: http://127.0.0.1:PORT`` banner, or the "using port N instead"
warning), never assumed. ``server_folder`` writes a config naming this checkout's graphs
into a folder of the caller's, so the dev server's state (``.langgraph_api``) stays there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BANNER = re.compile(r"API:\s*http://127\.0\.0\.1:(\d+)")
MOVED = re.compile(r"using port (\d+) instead")


@dataclass
class DevServer:
    process: subprocess.Popen
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return ANSI.sub("", self.log_path.read_text(encoding="utf-8", errors="replace"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bound_port(log: str) -> int | None:
    """The port the server says it serves on (after it may have moved)."""
    clean = ANSI.sub("", log)
    match = BANNER.search(clean) or MOVED.search(clean)
    return int(match.group(1)) if match else None


CHECKOUT = Path(__file__).resolve().parents[2]
"""The folder holding ``langgraph.json`` and ``langgraph.studio.json`` (this checkout)."""


def server_folder(folder: Path, config: str = "langgraph.json", checkout: Path = CHECKOUT) -> Path:
    """``folder`` (created) with a ``langgraph.json`` that names this checkout's graphs (and,
    from ``langgraph.studio.json``, its SQLite checkpointer) by absolute paths."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = json.loads((checkout / config).read_text())
    spec["dependencies"] = [str(checkout)]
    spec["graphs"] = {name: str(checkout / path.removeprefix("./")) for name, path in spec["graphs"].items()}
    if "checkpointer" in spec:  # langgraph.json (the deployment config) leaves it to the server
        spec["checkpointer"]["path"] = str(checkout / spec["checkpointer"]["path"].removeprefix("./"))
    (folder / "langgraph.json").write_text(json.dumps(spec))
    return folder


POLICY_VARIABLES = ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL")
"""This shell's policy settings, which a dev server or client started here must not inherit."""


def dev_env(scratch: Path, policy_url: str, **extra: str) -> dict[str, str]:
    """The environment of a dev server (and of the clients beside it) that runs this
    checkout against the policy at ``policy_url``: offline, no analytics, its caches and its
    trace database (``GENEVOLVE_TRACE_DB``, what ``langgraph.studio.json`` names) inside
    ``scratch``, and only ``policy_url`` allowed as a caller's ``base_url``."""
    env = {key: value for key, value in os.environ.items() if key not in POLICY_VARIABLES}
    env.update(HF_HUB_OFFLINE="1", LANGSMITH_TRACING="false", LANGGRAPH_CLI_NO_ANALYTICS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(CHECKOUT), XDG_CACHE_HOME=str(scratch / "cache"), GENEVOLVE_TRACE_DB=str(scratch / "server-trace.sqlite"),
               GENEVOLVE_ALLOWED_BASE_URLS=policy_url, **extra)
    return env


@contextlib.contextmanager
def langgraph_dev(root: Path, log_path: Path, env: dict[str, str], *, port: int | None = None, timeout: float = 60.0,
                  config: str = "langgraph.json", jobs: int | None = None) -> Iterator[DevServer]:
    """``langgraph dev --no-browser --no-reload --config CONFIG`` in ``root`` until the block ends.

    ``jobs``: background runs the server executes at once (``--n-jobs-per-worker``; the dev
    server's own default is 1, so runs queued by a batch wait for each other)."""
    command = [sys.executable, "-m", "langgraph_cli", "dev", "--no-browser", "--no-reload",
               "--host", "127.0.0.1", "--port", str(port or free_port()), "--config", config]
    if jobs is not None:
        command += ["--n-jobs-per-worker", str(jobs)]
    log = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        server: DevServer | None = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"langgraph dev exited with {process.returncode}:\n{ANSI.sub('', log_path.read_text())[-4000:]}")
            found = bound_port(log_path.read_text(encoding="utf-8", errors="replace"))
            if found:
                try:
                    if httpx.get(f"http://127.0.0.1:{found}/ok", timeout=2).status_code == 200:
                        server = DevServer(process, log_path, found)
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if server is None:
            raise RuntimeError(f"langgraph dev did not come up in {timeout:.0f}s:\n{ANSI.sub('', log_path.read_text())[-4000:]}")
        yield server
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the server's process group (its own session), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)
