"""
Progress reporting for long commands: a rich progress display on a terminal, log lines
otherwise (``--json``, pipes, tests), behind one small interface.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import Protocol

log = logging.getLogger("market.progress")


class Progress(Protocol):
    def add(self, key: str, description: str, total: int) -> None:
        """A new line of work of ``total`` bytes."""
        ...

    def update(self, key: str, completed: int, description: str | None = None) -> None:
        """``completed`` bytes of ``key`` done (absolute), optionally a new description."""
        ...

    def note(self, text: str) -> None:
        """A one-off message (a provider refused, a retry...)."""
        ...

    def __enter__(self) -> Progress: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class LogProgress:
    """Progress as log lines: one per new task, description change and note."""

    def __init__(self) -> None:
        self._desc: dict[str, str] = {}

    def add(self, key: str, description: str, total: int) -> None:
        self._desc[key] = description
        log.info("%s (%d bytes)", description, total)

    def update(self, key: str, completed: int, description: str | None = None) -> None:
        if description is not None and description != self._desc.get(key):
            self._desc[key] = description
            log.info("%s", description)

    def note(self, text: str) -> None:
        log.info("%s", text)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class RichProgress:
    """A live rich display on stderr: one bar per share, speed and time left."""

    def __init__(self) -> None:
        from rich.console import Console  # noqa: PLC0415 (only on a terminal)
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichBars  # noqa: PLC0415

        self._console = Console(stderr=True)
        self._bars = RichBars(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._tasks: dict[str, object] = {}

    def add(self, key: str, description: str, total: int) -> None:
        self._tasks[key] = self._bars.add_task(description, total=max(total, 1))

    def update(self, key: str, completed: int, description: str | None = None) -> None:
        task = self._tasks.get(key)
        if task is None:
            return
        if description is None:
            self._bars.update(task, completed=completed)  # type: ignore[arg-type]
        else:
            self._bars.update(task, completed=completed, description=description)  # type: ignore[arg-type]

    def note(self, text: str) -> None:
        self._console.print(text)

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()


def make_progress(enabled: bool) -> Progress:
    """A rich display if ``enabled`` and stderr is a terminal, else log lines."""
    if enabled and sys.stderr.isatty():
        return RichProgress()
    return LogProgress()
