"""
Worker processes for the CPU-bound parts of the pipeline (hashing, coding, encryption).

SHA-256 over a 1 KiB leaf does not release the GIL (CPython only drops it for inputs of
2 KiB and more), so the Merkle work, which dominates, needs processes, not threads. Jobs
are cut into independent tasks over aligned chunk ranges: a worker opens the files by
path itself, so only small job descriptions and results cross the process boundary.

Workers are started with ``forkserver``: forking a process that runs other threads (an
asyncio loop, a web server) is unsafe. Starting them costs a few tenths of a second (each
worker also re-imports the program's ``__main__`` module, as multiprocessing does for every
start method but ``fork``), so they are started once per process, on the first large job,
and kept (``shared_pool``); a caller may pass its own pool instead.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import TypeVar

from node.pieces.config import PiecesConfig

T = TypeVar("T")
R = TypeVar("R")


_shared: dict[int, ProcessPoolExecutor] = {}
_shared_lock = threading.Lock()


def start_pool(config: PiecesConfig) -> ProcessPoolExecutor:
    """A new pool of ``config.worker_count()`` worker processes (the caller shuts it down)."""
    return ProcessPoolExecutor(
        max_workers=config.worker_count(), mp_context=multiprocessing.get_context("forkserver")
    )


def shared_pool(config: PiecesConfig) -> ProcessPoolExecutor:
    """This process's pool of ``config.worker_count()`` workers, started on first use and
    replaced if a worker died (``concurrent.futures`` shuts it down at exit)."""
    with _shared_lock:
        pool = _shared.get(config.worker_count())
        if pool is None or getattr(pool, "_broken", False):
            pool = _shared[config.worker_count()] = start_pool(config)
        return pool


def shutdown_shared_pools() -> None:
    """Stop the shared pools (they restart on the next large job)."""
    with _shared_lock:
        pools = list(_shared.values())
        _shared.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def pool_for(pool: Executor | None, config: PiecesConfig, work_bytes: int) -> Executor | None:
    """
    The executor for a job of ``work_bytes``: ``None`` (run in this process) for small
    jobs or a one-worker config, else ``pool`` if given, else the shared pool.
    """
    if work_bytes < config.parallel_threshold or config.worker_count() < 2:
        return None
    return pool if pool is not None else shared_pool(config)


def run_tasks(pool: Executor | None, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
    """``[fn(t) for t in tasks]``, on ``pool`` when given; the first failure cancels the
    tasks not yet started and is raised once the running ones have finished."""
    if pool is None:
        return [fn(t) for t in tasks]
    futures: list[Future[R]] = [pool.submit(fn, t) for t in tasks]
    try:
        return [f.result() for f in futures]
    finally:
        for f in futures:
            f.cancel()
        for f in futures:
            if not f.cancelled():
                f.exception()  # wait: no worker may still write to our files


def split_range(start: int, end: int, parts_of: int) -> list[tuple[int, int]]:
    """Cut ``[start, end)`` into consecutive ranges of at most ``parts_of`` items."""
    return [(a, min(a + parts_of, end)) for a in range(start, end, parts_of)]
