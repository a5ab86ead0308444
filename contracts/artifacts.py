"""
The compiled contracts, as committed in ``contracts/artifacts/<Name>.json``.

``scripts/build_contracts.py`` writes them from ``contracts/src``; nothing in Depot compiles
Vyper at run time. A test checks that the committed artifacts match a fresh compile.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from contracts.errors import ArtifactError

ARTIFACTS_DIR: Final = Path(__file__).resolve().parent / "artifacts"
TOKEN: Final = "Token"
MARKET: Final = "StorageMarket"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract."""

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str
    """Creation code, ``0x``-prefixed hex (constructor arguments are appended to it)."""
    deployed_bytecode: str
    """Runtime code as it sits on chain after deployment."""
    vyper_version: str
    evm_version: str

    @property
    def deployed_size(self) -> int:
        """Runtime code size in bytes (EIP-170 caps it at 24,576)."""
        return (len(self.deployed_bytecode) - 2) // 2

    def abi_list(self) -> list[dict[str, Any]]:
        """The ABI as the list web3.py takes."""
        return list(self.abi)


@functools.cache
def load_artifact(name: str) -> Artifact:
    """
    Load ``contracts/artifacts/<name>.json``.

    Raises
    ------
    ArtifactError
        The file is missing or lacks a field.
    """
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text())
        return Artifact(
            name=data["contractName"],
            abi=tuple(data["abi"]),
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            vyper_version=data["compiler"]["vyper"],
            evm_version=data["compiler"]["evmVersion"],
        )
    except FileNotFoundError as exc:
        raise ArtifactError(f"no artifact {path}; run scripts/build_contracts.py") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"malformed artifact {path}: {exc}") from exc
