"""Render the library's progress callbacks as rich progress bars (one bar per stage)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


class StageBars:
    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int, info: dict | None = None) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(escape(stage), total=total, info="")
        text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (info or {}).items())
        self.progress.update(self.tasks[stage], completed=done, total=total, info=text)

    def simple(self, stage: str, done: int, total: int) -> None:
        self(stage, done, total, None)


class PlainBars(StageBars):
    """For pipes and CI logs (no terminal): a plain line per stage at most every `every` seconds, and at the end."""

    def __init__(self, every: float = 10.0):
        self.every = every
        self.last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int, info: dict | None = None) -> None:
        import time

        now = time.monotonic()
        important = any(k.startswith("val") for k in (info or {}))  # validation results always print
        if done < total and not important and now - self.last.get(stage, -1e9) < self.every:
            return
        self.last[stage] = now
        text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (info or {}).items())
        console.print(f"{escape(stage)}: {done}/{total} {escape(text)}", highlight=False)


@contextlib.contextmanager
def stage_bars() -> Iterator[StageBars]:
    if not console.is_terminal:
        yield PlainBars()
        return
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        yield StageBars(progress)
