"""
What a deployed ledger is: its chain, addresses, first block and parameters.

``devnet up`` / ``devnet deploy`` (and ``scripts/deploy.py``) write a ``deployment.json``;
every component (prover, market, auditor) reads it to find the contracts. The file is
written atomically (temporary file, fsync, rename) so that a reader never sees half of it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from contracts.errors import DeploymentError
from contracts.spec.challenge import DEFAULT_CHALLENGES
from contracts.spec.commitment import LEAF_SIZE, MAX_PROOF_DEPTH
from contracts.spec.schedule import Schedule

FORMAT_VERSION: Final = 1
TOKEN_UNIT: Final = 10**18
"""One whole token in base units (the token has 18 decimals)."""

MAX_CHALLENGES: Final = 64
"""The contract's bound on challenges per period (``types.MAX_CHALLENGES``)."""
MAX_CONSECUTIVE_MISSES: Final = 64
"""The contract's bound on ``max_consecutive_misses``."""
MAX_PERIOD_BLOCKS: Final = 256
"""BLOCKHASH reaches back 256 blocks: the seed must stay readable for a whole period."""
BPS: Final = 10_000


@dataclass(frozen=True)
class MarketParams:
    """
    The StorageMarket's constructor parameters (immutable once deployed). The defaults are
    the protocol's (docs/protocol-ledger.md, "Parameters").
    """

    period_blocks: int = 40
    """Blocks per proving period, in [2, 256]."""
    challenges: int = DEFAULT_CHALLENGES
    """Leaves challenged per provider per period: 46 catches the loss of 1% of the data
    within 10 periods with probability >= 0.99 (contracts.spec.challenge)."""
    min_stake: int = 1_000 * TOKEN_UNIT
    """Stake a provider keeps free of deal locks: its fault bond."""
    unbonding_periods: int = 2
    """Periods between an exit request and the withdrawal."""
    max_consecutive_misses: int = 3
    """Missed periods in a row that terminate a provider's data set."""
    miss_slash_bps: int = 1_000
    """Share of a deal's collateral slashed per missed period (10%)."""
    bounty_bps: int = 5_000
    """Share of each missed period's slash paid to the reporter (50%)."""
    max_piece_size: int = 64 * 2**30
    """Largest piece a deal may commit to, in bytes (64 GiB)."""

    def __post_init__(self) -> None:
        checks = (
            (2 <= self.period_blocks <= MAX_PERIOD_BLOCKS, "period_blocks must be in [2, 256]"),
            (1 <= self.challenges <= MAX_CHALLENGES, "challenges must be in [1, 64]"),
            (self.min_stake >= 0, "min_stake must be >= 0"),
            (self.unbonding_periods >= 0, "unbonding_periods must be >= 0"),
            (
                1 <= self.max_consecutive_misses <= MAX_CONSECUTIVE_MISSES,
                "max_consecutive_misses must be in [1, 64]",
            ),
            (0 <= self.miss_slash_bps <= BPS, "miss_slash_bps must be in [0, 10000]"),
            (0 <= self.bounty_bps <= BPS, "bounty_bps must be in [0, 10000]"),
            (
                0 < self.max_piece_size <= LEAF_SIZE << MAX_PROOF_DEPTH,
                "max_piece_size must be in (0, 2**50]",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise DeploymentError(message)

    def constructor_args(self) -> tuple[int, ...]:
        """The StorageMarket constructor's arguments after the token address, in order."""
        return (
            self.period_blocks,
            self.challenges,
            self.min_stake,
            self.unbonding_periods,
            self.max_consecutive_misses,
            self.miss_slash_bps,
            self.bounty_bps,
            self.max_piece_size,
        )


@dataclass(frozen=True)
class Deployment:
    """A deployed ledger: where it is and how it was configured."""

    chain_id: int
    rpc_url: str
    """The JSON-RPC URL the deployment was made through (a default for clients)."""
    token: str
    """Checksummed address of the Token."""
    market: str
    """Checksummed address of the StorageMarket."""
    deploy_block: int
    """Block of the market's deployment: period 0 starts there (the schedule's genesis)."""
    params: MarketParams

    @property
    def schedule(self) -> Schedule:
        """The period clock (contracts.spec.schedule)."""
        return Schedule(genesis=self.deploy_block, length=self.params.period_blocks)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``deployment.json``."""
        return {
            "version": FORMAT_VERSION,
            "chain_id": self.chain_id,
            "rpc_url": self.rpc_url,
            "token": self.token,
            "market": self.market,
            "deploy_block": self.deploy_block,
            "params": dataclasses.asdict(self.params),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        """
        Parse a ``deployment.json`` object.

        Raises
        ------
        DeploymentError
            A field is missing or has the wrong type, or the format version is unknown.
        """
        try:
            if data["version"] != FORMAT_VERSION:
                raise DeploymentError(f"unknown deployment format version {data['version']}")
            fields = {f.name for f in dataclasses.fields(MarketParams)}
            unknown = set(data["params"]) - fields
            if unknown:
                raise DeploymentError(f"unknown market parameters: {sorted(unknown)}")
            params = MarketParams(**{k: int(v) for k, v in data["params"].items()})
            deployment = cls(
                chain_id=int(data["chain_id"]),
                rpc_url=str(data["rpc_url"]),
                token=str(data["token"]),
                market=str(data["market"]),
                deploy_block=int(data["deploy_block"]),
                params=params,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DeploymentError):
                raise
            raise DeploymentError(f"malformed deployment: {exc!r}") from exc
        return deployment

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the deployment to ``path`` atomically (temporary file, fsync, rename)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Deployment:
        """
        Read a deployment file.

        Raises
        ------
        DeploymentError
            The file is missing, not JSON, or malformed.
        """
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise DeploymentError(f"no deployment file at {path}") from exc
        except (OSError, ValueError) as exc:
            raise DeploymentError(f"unreadable deployment file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise DeploymentError(f"deployment file {path} is not a JSON object")
        return cls.from_json(data)
