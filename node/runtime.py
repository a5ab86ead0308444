"""
Running the node's event loop: uvloop when it is installed (it is a dependency; measured
in scripts/bench_transport.py), the standard asyncio loop otherwise or when
``DEPOT_UVLOOP=0``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_enabled() -> bool:
    """Whether ``run`` will use uvloop."""
    if os.environ.get("DEPOT_UVLOOP", "1") == "0":
        return False
    try:
        import uvloop  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """``asyncio.run(main)`` on uvloop when available (see ``uvloop_enabled``)."""
    if use_uvloop if use_uvloop is not None else uvloop_enabled():
        import uvloop  # noqa: PLC0415

        return uvloop.run(main)
    return asyncio.run(main)
