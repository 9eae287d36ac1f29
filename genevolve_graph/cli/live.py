"""Live progress of one run on the terminal, from the graph's custom stream events.

``genevolve-graph run`` used to be silent until the end. The nodes already emit progress
events (``policy_started``/``policy_done``, ``tool_started``, ``image_ready``, ``tool_done``,
``render_started``/``render_done``, ``guide_retrieved``; see docs/studio.md); this module
turns them into one line per step on stderr, with a spinner for the step under way, so the
program's stdout (the trajectory and the summary lines) stays exactly as parseable as before.
It stays quiet when stderr is not a terminal (logs, pipes, CI) or with ``--quiet``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status


def wants_progress(quiet: bool, stream: Any = None) -> bool:
    """Progress only on an interactive terminal and without ``--quiet``."""
    stream = stream if stream is not None else sys.stderr
    return not quiet and bool(getattr(stream, "isatty", lambda: False)())


def _arguments(tool: str, args: dict[str, Any]) -> str:
    if tool == "search":
        return ", ".join(repr(q) for q in args.get("queries", []))
    if tool == "image_search":
        return repr(args.get("query", ""))
    if tool == "query_knowledge":
        return str(args.get("skill_name", ""))
    return json.dumps(args, ensure_ascii=False)


class RunProgress:
    """Prints a line per event (``handle``) and keeps a spinner on the step under way."""

    def __init__(self, console: Console | None = None, *, spinner: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.status: Status | None = self.console.status("starting", spinner="dots") if spinner else None
        self.start = time.perf_counter()
        self.round = 0
        self.tools = 0
        self.images = 0

    def __enter__(self) -> "RunProgress":
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.status is not None:
            self.status.stop()

    def _line(self, text: str) -> None:
        self.console.print(f"[dim]{time.perf_counter() - self.start:6.1f}s[/dim]  {text}", highlight=False)

    def _doing(self, text: str) -> None:
        if self.status is not None:
            self.status.update(text)

    def handle(self, event: dict[str, Any]) -> None:
        """One custom stream event (unknown events are ignored)."""
        kind = event.get("event")
        if kind == "guide_retrieved":
            if event.get("guide_id"):
                self._line(f"guide [bold]{escape(str(event['guide_id']))}[/bold] (similarity {event.get('score', 0):.3f}) added to the system prompt")
            else:
                self._line("no guide passed the gate; the plain system prompt is used")
        elif kind == "policy_started":
            self.round = int(event.get("round", self.round + 1))
            self._doing(f"round {self.round}: the policy is thinking")
        elif kind == "policy_done":
            what = {"tool_call": f"calls {event.get('tool')}", "answer": "answers", "invalid": "gave an unusable reply"}.get(str(event.get("kind")), str(event.get("kind")))
            self._line(f"round {event.get('round')}: the policy {what}")
        elif kind == "tool_started":
            tool = str(event.get("tool"))
            self._line(f"  → {tool}({escape(_arguments(tool, event.get('arguments') or {}))})")
            self._doing(f"round {self.round}: running {tool}")
        elif kind == "image_ready":
            self._line(f"    image {event.get('img_id')}: {escape(str(event.get('title', '')))}")
        elif kind == "tool_done":
            self.tools += 1
            found = int(event.get("images") or 0)
            self.images += found
            detail = f"{found} image{'s' if found != 1 else ''} found" if event.get("tool") == "image_search" else f"{event.get('chars', 0)} characters"
            self._line(f"  ← {event.get('tool')}: {detail}")
        elif kind == "render_started":
            self._line(f"rendering with {escape(str(event.get('renderer')))}")
            self._doing(f"rendering with {event.get('renderer')}")
        elif kind == "render_done":
            if event.get("success"):
                self._line(f"rendered {escape(str(event.get('path')))}")
            else:
                self._line(f"[red]render failed[/red]: {escape(str(event.get('error')))}")

    def summary(self) -> str:
        return f"{self.round} rounds, {self.tools} tool calls, {self.images} images found"


__all__ = ["RunProgress", "wants_progress"]
