"""rich output of the clients: progress on long calls and status tables.

Shown only on a terminal or in Jupyter, and never with ``visualize=False``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

STATUS_STYLES = {
    "complete": "bold green",
    "running": "bold orange3",
    "waiting": "bold white",
    "error": "bold red",
    "invalid": "bold magenta1",
    "deleted": "bold purple",
}
STATUS_ORDER = list(STATUS_STYLES)


def console() -> Console:
    return Console()


def enabled(visualize: bool) -> bool:
    """Whether to draw: asked for, and output is a terminal or a notebook."""
    if not visualize:
        return False
    c = console()
    return bool(c.is_terminal or c.is_jupyter)


class Advance:
    """What :func:`progress` yields: ``advance(n=1)`` and ``advance.set_total(n)``; thread-safe."""

    def __init__(self, bar: Progress | None = None, task: Any = None) -> None:
        self._bar = bar
        self._task = task
        self._lock = threading.Lock()

    def __call__(self, n: int = 1) -> None:
        if self._bar is not None and n:
            with self._lock:
                self._bar.advance(self._task, n)

    def set_total(self, total: int | None) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(self._task, total=total)


@contextlib.contextmanager
def progress(description: str, total: int | None, visualize: bool) -> Iterator[Advance]:
    """A progress bar (done / total); a no-op when not :func:`enabled`."""
    if not enabled(visualize):
        yield Advance()
        return
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console(), transient=False) as bar:
        yield Advance(bar, bar.add_task(description, total=total))


@contextlib.contextmanager
def spinner(description: str, visualize: bool) -> Iterator[None]:
    """A spinner with elapsed time while one long call runs."""
    if not enabled(visualize):
        yield
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=console(),
        transient=True,
    ) as bar:
        bar.add_task(description, total=None)
        yield


def status_table(title: str, counts: dict[str, int]) -> Table:
    """A table of task counts by status, coloured by status, with a total row."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("status", justify="left", no_wrap=True)
    table.add_column("count", justify="right")
    ordered = [s for s in STATUS_ORDER if s in counts] + sorted(s for s in counts if s not in STATUS_STYLES)
    for status in ordered:
        style = STATUS_STYLES.get(status, "")
        table.add_row(f"[{style}]{status}[/]" if style else status, str(counts[status]))
    table.add_section()
    table.add_row("total", str(sum(counts.values())))
    return table


def print_status(title: str, counts: dict[str, int]) -> None:
    """Print :func:`status_table` (status methods call this with ``visualize=True``)."""
    console().print(status_table(title, counts))
