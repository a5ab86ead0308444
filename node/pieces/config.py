"""Configuration of the piece pipeline: one documented, frozen dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from node.pieces.errors import InvalidArgument

MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class PiecesConfig:
    """
    Tuning of ``prepare_file``, ``piece_root_and_layer`` and the ``Reassembler``.

    None of these change a single output byte; they trade memory and start-up time for
    speed.
    """

    workers: int = 0
    """Worker processes for large jobs; 0 means one per CPU this process may run on, 1
    keeps everything in the calling process."""
    parallel_threshold: int = 32 * MIB
    """Jobs with less input than this run in the calling process: below it, starting
    worker processes costs more than it saves."""
    task_size: int = 64 * MIB
    """Input bytes per task handed to a worker (smaller tasks balance better, larger ones
    cost fewer round trips). Each worker holds only one stripe or read buffer at a time."""
    read_size: int = 4 * MIB
    """Bytes read from disk per system call when hashing a piece."""
    reassembly_memory: int = 64 * MIB
    """Chunks of incomplete stripes the ``Reassembler`` keeps in memory; beyond this it
    spools them to a temporary file beside the output."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise InvalidArgument(f"workers must be >= 0, not {self.workers}")
        for name in ("parallel_threshold", "task_size", "read_size", "reassembly_memory"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be positive")

    def worker_count(self) -> int:
        """The number of worker processes to use for a large job."""
        if self.workers:
            return self.workers
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


DEFAULT_CONFIG: Final = PiecesConfig()
