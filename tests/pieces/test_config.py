"""The pipeline configuration refuses nonsense at construction."""

import pytest

from node.pieces.config import PiecesConfig
from node.pieces.errors import InvalidArgument


def test_config_validation():
    with pytest.raises(InvalidArgument):
        PiecesConfig(workers=-1)
    with pytest.raises(InvalidArgument):
        PiecesConfig(task_size=0)
    assert PiecesConfig(workers=3).worker_count() == 3
    assert PiecesConfig().worker_count() >= 1
