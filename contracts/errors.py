"""
The error tree of ``contracts``.

``LocalError``: we misused the API, or a local file (deployment, artifact) is wrong.
``RemoteError``: the chain refused or misbehaved: a node that cannot be reached, a
transaction that reverted (with the contract's reason), one that never got mined.

A revert reason carries the module that raised it (``"proving: fault already reported"``);
``Reverted.from_reason`` maps it onto the subclass for that module, and onto a specific
subclass for the outcomes daemons act on (already reported, already proven, nothing to
settle...), so that callers can ``except`` exactly what they handle.
"""

from __future__ import annotations

from typing import ClassVar


class LedgerError(Exception):
    """Root of every error raised by ``contracts``."""


class LocalError(LedgerError):
    """We asked for something impossible: bad arguments, missing account, bad local file."""


class DeploymentError(LocalError):
    """The deployment file is missing, malformed, or does not match the chain."""


class ArtifactError(LocalError):
    """A compiled contract artifact is missing or malformed."""


class NoAccount(LocalError):
    """A write was attempted through a client that has no account to sign with."""


class RemoteError(LedgerError):
    """The chain or its RPC node refused or misbehaved."""


class RpcUnavailable(RemoteError):
    """The JSON-RPC endpoint cannot be reached or answered garbage."""


class ChainMismatch(RemoteError):
    """The node serves another chain, or no contract at the deployment's addresses."""


class TransactionFailed(RemoteError):
    """A transaction failed without a decodable reason, or was dropped by the node."""

    def __init__(self, message: str, tx_hash: str | None = None) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash


class TransactionStuck(TransactionFailed):
    """A transaction was not mined, even after resubmitting it with higher fees."""


class Reverted(RemoteError):
    """
    A call or transaction reverted. ``reason`` is the contract's revert string (empty when
    there was none, e.g. a failed ABI decode), ``module`` its prefix before the colon.
    """

    MODULE: ClassVar[str] = ""
    REASONS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, reason: str, tx_hash: str | None = None) -> None:
        super().__init__(reason or "reverted without a reason")
        self.reason = reason
        self.tx_hash = tx_hash

    @property
    def module(self) -> str:
        """The contract module that raised the revert (``"deals"``, ``"proving"``...)."""
        head, sep, _ = self.reason.partition(":")
        return head if sep else ""

    @staticmethod
    def from_reason(reason: str, tx_hash: str | None = None) -> Reverted:
        """The most specific ``Reverted`` subclass for ``reason``."""
        for cls in _SPECIFIC:
            if reason in cls.REASONS:
                return cls(reason, tx_hash)
        module = reason.partition(":")[0] if ":" in reason else ""
        return _BY_MODULE.get(module, Reverted)(reason, tx_hash)


class TokenReverted(Reverted):
    """The token refused: insufficient balance or allowance, faucet limits."""

    MODULE = "token"


class ClockReverted(Reverted):
    """The period clock refused its parameters."""

    MODULE = "clock"


class RegistryReverted(Reverted):
    """The provider registry refused (stake, registration, exit, withdrawal)."""

    MODULE = "registry"


class DealsReverted(Reverted):
    """The deals module refused (proposal, signature, nonce, settlement)."""

    MODULE = "deals"


class ProvingReverted(Reverted):
    """The proving module refused (proof window, proof, fault report)."""

    MODULE = "proving"


class MarketReverted(Reverted):
    """The market's own checks refused (withdrawal while pieces are still challenged)."""

    MODULE = "market"


class FaultAlreadyReported(ProvingReverted):
    """Someone else reported this fault first."""

    REASONS = ("proving: fault already reported",)


class PeriodAlreadyProven(ProvingReverted):
    """The period was proven (a report comes too late, or a second proof)."""

    REASONS = ("proving: period already proven", "proving: period was proven")


class InvalidProof(ProvingReverted):
    """A submitted leaf or audit path does not match the challenged piece."""

    REASONS = ("proving: invalid proof", "proving: wrong number of proofs")


class OutsideWindow(ProvingReverted):
    """A proof or report outside its window of blocks."""

    REASONS = ("proving: outside the report window", "proving: seed block not yet sealed")


class NonceUsed(DealsReverted):
    """The proposal's nonce was used or cancelled."""

    REASONS = ("deals: nonce already used",)


class ProposalExpired(DealsReverted):
    """The proposal's expiry block has passed."""

    REASONS = ("deals: proposal expired",)


class NothingToSettle(DealsReverted):
    """The deal has no closed period to settle and nothing to retire."""

    REASONS = ("deals: nothing to settle",)


_SPECIFIC: tuple[type[Reverted], ...] = (
    FaultAlreadyReported,
    PeriodAlreadyProven,
    InvalidProof,
    OutsideWindow,
    NonceUsed,
    ProposalExpired,
    NothingToSettle,
)
_BY_MODULE: dict[str, type[Reverted]] = {
    cls.MODULE: cls
    for cls in (
        TokenReverted,
        ClockReverted,
        RegistryReverted,
        DealsReverted,
        ProvingReverted,
        MarketReverted,
    )
}
