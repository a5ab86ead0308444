"""Worker pools: small jobs stay in-process, failures surface, ranges tile."""

import pytest

from node.pieces.config import PiecesConfig
from node.pieces.errors import UnreadableInput
from node.pieces.workers import pool_for, run_tasks, shared_pool, split_range

from .helpers import PARALLEL


def fail_on_three(x: int) -> int:
    if x == 3:
        raise UnreadableInput("three")
    return x * 2


def test_split_range():
    assert split_range(0, 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert split_range(5, 5, 4) == []


def test_small_jobs_run_inline():
    assert pool_for(None, PiecesConfig(), 1) is None
    assert pool_for(None, PiecesConfig(workers=1, parallel_threshold=1), 10**9) is None
    assert pool_for(None, PARALLEL, 10**9) is shared_pool(PARALLEL)


@pytest.mark.parametrize("use_pool", [False, True])
def test_run_tasks(use_pool):
    pool = shared_pool(PARALLEL) if use_pool else None
    assert run_tasks(pool, fail_on_three, [1, 2, 4]) == [2, 4, 8]
    with pytest.raises(UnreadableInput, match="three"):
        run_tasks(pool, fail_on_three, [1, 3, 4])
