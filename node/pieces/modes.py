"""
Redundancy modes: how many shares a file becomes and how many rebuild it.

Replication is ``k = 1, n = r``, each copy encrypted under its own key; erasure coding is
``k``-of-``n`` over one ciphertext. Defaults and their comparison with Sia and Storj are in
docs/pieces.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from node.pieces.erasure import check_code
from node.pieces.errors import InvalidArgument

DEFAULT_COPIES: Final = 3
DEFAULT_EC_K: Final = 10
DEFAULT_EC_N: Final = 30


@dataclass(frozen=True)
class Copies:
    """``r`` full copies, each its own ciphertext (distinct bytes, distinct roots)."""

    r: int = DEFAULT_COPIES
    name: ClassVar[str] = "copies"

    def __post_init__(self) -> None:
        check_code(1, self.r)

    @property
    def k(self) -> int:
        """Shares needed to rebuild the file."""
        return 1

    @property
    def n(self) -> int:
        """Shares made."""
        return self.r

    @property
    def streams(self) -> int:
        """Ciphertext streams (one key each)."""
        return self.r


@dataclass(frozen=True)
class ErasureCode:
    """``k``-of-``n`` Reed-Solomon shares of one ciphertext."""

    k: int = DEFAULT_EC_K
    n: int = DEFAULT_EC_N
    name: ClassVar[str] = "ec"

    def __post_init__(self) -> None:
        check_code(self.k, self.n)

    @property
    def streams(self) -> int:
        """Ciphertext streams (one key each)."""
        return 1


Mode = Copies | ErasureCode


def mode_from(name: str, k: int, n: int) -> Mode:
    """The mode named in a manifest."""
    if name == Copies.name:
        if k != 1:
            raise InvalidArgument(f"replication has k = 1, not {k}")
        return Copies(n)
    if name == ErasureCode.name:
        return ErasureCode(k, n)
    raise InvalidArgument(f"unknown redundancy mode {name!r}")
