"""Fixtures of the spec tests: the shared JSON vectors of tests/vectors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Callable[[str], Any]:
    """``vectors("commitment")`` -> the parsed tests/vectors/commitment.json."""

    def load(name: str) -> Any:
        return json.loads((VECTORS / f"{name}.json").read_text())

    return load
