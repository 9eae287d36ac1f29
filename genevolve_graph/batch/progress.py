"""Progress of a batch stage: a live bar on a terminal, periodic lines otherwise.

The bar shows rows done (of the whole stage, counting earlier sessions), rows failed, the
rate and the ETA of this session. When stderr is not a terminal (CI logs, ``nohup``,
tests) a plain line is printed every 5% of the rows or 30 seconds instead, so logs stay
readable and the information is the same.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


class RateColumn(ProgressColumn):
    """Rows per second (or per minute when slow), over the recent past."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("-- rows/s", style="progress.data.speed")
        if speed < 1:
            return Text(f"{speed * 60:.1f} rows/min", style="progress.data.speed")
        return Text(f"{speed:.1f} rows/s", style="progress.data.speed")


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class StageProgress:
    """``with StageProgress(...) as bar: bar.advance(failed=...)``."""

    def __init__(self, label: str, *, total: int, done: int = 0, failed: int = 0, console: Console | None = None, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.done = done
        self.failed = failed
        self.session_done = 0
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.started = time.monotonic()
        self._last_line = 0.0
        self._last_line_done = done
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> "StageProgress":
        self.started = time.monotonic()
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[red]failed {task.fields[failed]}"),
                RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, completed=self.done, failed=self.failed)
        elif self.enabled:
            self.console.print(f"{self.label}: {self.done}/{self.total} rows already done, {self.total - self.done} to run", highlight=False, soft_wrap=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.session_done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def advance(self, *, failed: bool) -> None:
        self.done += 1
        self.session_done += 1
        self.failed += int(failed)
        if self._progress is not None:
            self._progress.update(self._task, advance=1, failed=self.failed)
            return
        if not self.enabled:
            return
        now = time.monotonic()
        step = max(1, self.total // 20)
        if self.done == self.total or self.done - self._last_line_done >= step or now - self._last_line >= 30:
            self._last_line, self._last_line_done = now, self.done
            eta = self.eta()
            self.console.print(
                f"{self.label}: {self.done}/{self.total} done, {self.failed} failed, {self.rate():.2f} rows/s, "
                f"ETA {format_duration(eta) if eta is not None else '--'}",
                highlight=False,
                soft_wrap=True,
            )

    def note(self, message: str) -> None:
        """A message that does not tear the live bar."""
        self.console.print(message, highlight=False, markup=False, soft_wrap=True)
