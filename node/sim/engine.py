"""A minimal discrete-event scheduler: a heap of (time, sequence, callback, argument)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from node.errors import LocalError


class EventQueue:
    """Runs callbacks in simulated-time order; ties run in scheduling order."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.processed = 0

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` at simulated time ``when`` (not in the past)."""
        if when < self.now:
            raise LocalError(f"cannot schedule at {when} before now {self.now}")
        heapq.heappush(self._heap, (when, next(self._seq), callback, args))

    def after(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay, callback, *args)

    def run_until(self, end: float) -> None:
        """Process every event due at or before ``end``; then ``now == end``."""
        heap = self._heap
        pop = heapq.heappop
        n = 0
        while heap and heap[0][0] <= end:
            when, _, callback, args = pop(heap)
            self.now = when
            callback(*args)
            n += 1
        self.processed += n
        self.now = end
