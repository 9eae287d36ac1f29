"""Threat-model row "render-service client": anyone who reaches the port gets one queue slot,
for a bounded time.

Two raw connections admitted with ``--max-queue 1`` (the running slot and the waiting one)
send their bodies one byte at a time. Before the body deadline they kept every real
request at 503 for as long as they trickled; now each gets a 408 after ``body_timeout``,
its slot is released, and a real request renders. The service runs for real (uvicorn on
127.0.0.1, the tiny pipeline).
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from genevolve_graph.generators.service_app import ServiceSettings, create_app
from genevolve_graph.testing.server_thread import ServerThread
from tests.generators.test_service import body


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    import torch

    from genevolve_graph.generators.diffusers_backend import DiffusersConfig, get_engine
    from genevolve_graph.testing.tiny_qwen_edit import build_tiny_edit_pipeline, save_tiny_pipeline, tiny_loader_options

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from threads on a shared machine
    edit_dir = save_tiny_pipeline(build_tiny_edit_pipeline(), tmp_path_factory.mktemp("tiny-qwen") / "edit")
    yield get_engine(DiffusersConfig.from_options({**tiny_loader_options(), "pipeline": str(edit_dir)}))
    torch.set_num_threads(threads)


class Trickler(threading.Thread):
    """A client that declares a 100 kB body and sends one byte every 0.2 s, until the server
    answers or the test ends; ``reply`` is what the server sent back."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100000\r\n\r\n{")
        self.stop = threading.Event()
        self.reply = b""

    def run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return
                self.reply += chunk
                if b"\r\n\r\n" in self.reply:
                    return
            except TimeoutError:
                pass
            try:
                self.sock.sendall(b" ")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.sock.close()


def test_trickled_bodies_lose_their_slots_at_the_body_deadline(engine):
    app = create_app(ServiceSettings(max_queue=1, body_timeout=1.0), engine=engine)
    with ServerThread(app) as url:
        tricklers = [Trickler(url) for _ in range(2)]
        for t in tricklers:
            t.start()
        try:
            deadline = time.monotonic() + 5
            while httpx.get(f"{url}/health").json()["admitted"] < 2:
                assert time.monotonic() < deadline, "the trickling requests were never admitted"
                time.sleep(0.02)
            busy = httpx.post(f"{url}/generate", json=body(), timeout=30)
            assert busy.status_code == 503  # both slots held by the tricklers

            for t in tricklers:
                t.join(6)
            assert all(t.reply.startswith(b"HTTP/1.1 408") for t in tricklers), [t.reply[:80] for t in tricklers]
            assert all(b"did not arrive within 1 s" in t.reply for t in tricklers)
            assert httpx.get(f"{url}/health").json()["admitted"] == 0

            real = httpx.post(f"{url}/generate", json=body(), timeout=120)
            assert real.status_code == 200 and real.json()["success"] is True
        finally:
            for t in tricklers:
                t.close()


def test_serve_renderer_refuses_a_non_positive_body_timeout():
    import typer
    from typer.testing import CliRunner

    from genevolve_graph.cli.serve_renderer import register

    app = typer.Typer()
    register(app)
    app.command("unused")(lambda: None)  # two commands: the group keeps its subcommand names
    result = CliRunner().invoke(app, ["serve-renderer", "--pipeline", "x", "--body-timeout", "0"])
    assert result.exit_code == 2
    assert "--body-timeout must be positive, not 0.0" in result.output
