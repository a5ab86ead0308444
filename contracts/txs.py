"""
Sending transactions: nonces, gas, EIP-1559 fees, resubmission, and errors that say why.

One ``TxSender`` per account. It keeps the account's next nonce locally (so that a daemon can
send several transactions without waiting for each to be mined), estimates gas with a
margin, prices fees from the latest base fee (EIP-1559: ``max_fee = 2 * base_fee + tip``),
and when a transaction sits unmined for ``resubmit_after`` seconds it sends the same nonce
again with both fees raised by ``fee_bump`` (nodes accept a replacement only if both rise by
at least 10%). A revert, whether caught by the gas estimate or by a mined transaction with
status 0, becomes a ``Reverted`` subclass carrying the contract's reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import TxParams, TxReceipt

from contracts.errors import (
    Reverted,
    RpcUnavailable,
    TransactionFailed,
    TransactionStuck,
)

log = logging.getLogger(__name__)

ERROR_SELECTOR = bytes.fromhex("08c379a0")
"""Selector of Solidity/Vyper's ``Error(string)`` revert payload."""
GWEI = 10**9

T = TypeVar("T")


@dataclass(frozen=True)
class TxConfig:
    """How transactions are priced, sent and awaited."""

    gas_margin: float = 1.25
    """Gas limit = estimate x margin: the state may change between estimate and inclusion
    (a roll of the provider's period, a sum-tree path one node longer)."""
    priority_fee: int | None = None
    """Tip per gas in wei; ``None`` asks the node (``eth_maxPriorityFeePerGas``)."""
    base_fee_multiplier: int = 2
    """``max_fee = base_fee * multiplier + tip``: room for the base fee to rise ~12.5% per
    block for several blocks before the transaction stops being includable."""
    fee_bump: float = 1.125
    """Factor on both fees when resubmitting a stuck transaction (nodes require >= 1.1)."""
    resubmit_after: float = 30.0
    """Seconds without a receipt before resubmitting with higher fees."""
    max_resubmits: int = 4
    """Resubmissions before giving up with ``TransactionStuck``."""
    poll_interval: float = 0.05
    """Seconds between receipt polls."""
    rpc_timeout: float = 30.0
    """Seconds before an RPC request is considered lost."""


def revert_reason(exc: ContractLogicError) -> str:
    """The revert string of a ``ContractLogicError`` ("" when the revert had none)."""
    data = exc.data
    if isinstance(data, str) and data.startswith("0x"):
        raw = bytes.fromhex(data[2:])
        if raw[:4] == ERROR_SELECTOR and len(raw) >= 68:
            length = int.from_bytes(raw[36:68], "big")
            return raw[68 : 68 + length].decode("utf-8", "replace")
    message = exc.message or ""
    return message.removeprefix("execution reverted").removeprefix(":").strip()


def rpc_guard(fn: Callable[[], T]) -> T:
    """Run an RPC call, mapping transport failures and reverts onto ``LedgerError``s."""
    try:
        return fn()
    except ContractLogicError as exc:
        raise Reverted.from_reason(revert_reason(exc)) from exc
    except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as exc:
        raise RpcUnavailable(f"RPC endpoint unreachable: {exc}") from exc


class TxSender:
    """
    Signs and sends one account's transactions. Thread-safe: nonces are handed out under a
    lock, and each ``send`` waits for its own receipt.
    """

    def __init__(self, web3: Web3, account: LocalAccount, config: TxConfig | None = None) -> None:
        self.web3 = web3
        self.account = account
        self.address = Web3.to_checksum_address(account.address)
        self.config = config or TxConfig()
        self._lock = threading.Lock()
        self._next_nonce: int | None = None
        self._chain_id: int | None = None

    # ------------------------------------------------------------------ public

    def send(self, to: str | None, data: bytes | str, *, value: int = 0) -> TxReceipt:
        """
        Send a transaction and wait for its receipt.

        Parameters
        ----------
        to :
            Recipient (``None`` deploys ``data`` as a contract).
        data :
            Calldata (or creation code).
        value :
            Wei to send along.

        Raises
        ------
        Reverted
            The gas estimate or the mined transaction reverted; ``reason`` says why.
        TransactionStuck
            Not mined after ``max_resubmits`` fee bumps.
        RpcUnavailable
            The node could not be reached.
        """
        tx: dict[str, Any] = {"from": self.address, "data": data, "value": value}
        if to is not None:
            tx["to"] = to
        # "pending": the transaction lands in the next block, and the contract's clock
        # (proof windows, report windows) must be read as of that block.
        estimate = rpc_guard(
            lambda: self.web3.eth.estimate_gas(cast(TxParams, tx), block_identifier="pending")
        )
        tx["gas"] = int(estimate * self.config.gas_margin)
        tip, max_fee = self._fees()
        hashes: list[bytes] = []
        with self._lock:
            for retry in (True, False):
                nonce = self._take_nonce()
                tx.update(nonce=nonce, chainId=self._chain(), type=2)
                try:
                    hashes.append(self._broadcast(tx, tip, max_fee))
                    break
                except BaseException as exc:
                    self._next_nonce = None  # resync from the node next time
                    # Another sender used this account: retry once with a fresh nonce.
                    if not (retry and "nonce too low" in str(exc)):
                        raise
        for attempt in range(self.config.max_resubmits + 1):
            receipt = self._wait(hashes, self.config.resubmit_after)
            if receipt is not None:
                return self._check(receipt, tx)
            if attempt == self.config.max_resubmits:
                break
            tip = int(tip * self.config.fee_bump) + 1
            base_tip, base_max = self._fees()
            max_fee = max(int(max_fee * self.config.fee_bump) + 1, base_max + tip - base_tip)
            log.info("tx nonce %d stuck; resubmitting with tip %d, max fee %d", nonce, tip, max_fee)
            try:
                hashes.append(self._broadcast(tx, tip, max_fee))
            except TransactionFailed as exc:
                # The original may have been mined meanwhile ("nonce too low").
                receipt = self._wait(hashes, 0)
                if receipt is not None:
                    return self._check(receipt, tx)
                raise exc
        raise TransactionStuck(
            f"nonce {nonce} not mined after {self.config.max_resubmits} resubmissions",
            tx_hash="0x" + hashes[-1].hex(),
        )

    def resync(self) -> None:
        """Forget the local nonce; the next send reads it from the node."""
        with self._lock:
            self._next_nonce = None

    # ------------------------------------------------------------------ internal

    def _chain(self) -> int:
        if self._chain_id is None:
            self._chain_id = rpc_guard(lambda: int(self.web3.eth.chain_id))
        return self._chain_id

    def _take_nonce(self) -> int:
        if self._next_nonce is None:
            self._next_nonce = rpc_guard(
                lambda: int(self.web3.eth.get_transaction_count(self.address, "pending"))
            )
        nonce = self._next_nonce
        self._next_nonce += 1
        return nonce

    def _fees(self) -> tuple[int, int]:
        """(tip, max fee per gas) for a transaction sent now."""
        latest = rpc_guard(lambda: self.web3.eth.get_block("latest"))
        base_fee = int(latest.get("baseFeePerGas", 0))
        tip = self.config.priority_fee
        if tip is None:
            try:
                tip = int(self.web3.eth.max_priority_fee)
            except (Web3RPCError, ValueError):
                tip = GWEI
        return tip, base_fee * self.config.base_fee_multiplier + tip

    def _broadcast(self, tx: dict[str, Any], tip: int, max_fee: int) -> bytes:
        signed = self.account.sign_transaction(
            {**tx, "maxPriorityFeePerGas": tip, "maxFeePerGas": max_fee}
        )
        try:
            return bytes(
                rpc_guard(lambda: self.web3.eth.send_raw_transaction(signed.raw_transaction))
            )
        except Web3RPCError as exc:
            message = str(exc)
            if "already known" in message:
                return bytes(signed.hash)
            raise TransactionFailed(f"node refused the transaction: {message}") from exc

    def _wait(self, hashes: list[bytes], timeout: float) -> TxReceipt | None:
        """The receipt of whichever of ``hashes`` was mined, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for h in hashes:
                try:
                    return rpc_guard(lambda h=h: self.web3.eth.get_transaction_receipt(h))  # type: ignore[misc]
                except TransactionNotFound:
                    continue
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.config.poll_interval)

    def _check(self, receipt: TxReceipt, tx: dict[str, Any]) -> TxReceipt:
        """Return a successful receipt; turn a failed one into ``Reverted`` with its reason."""
        if receipt["status"] == 1:
            return receipt
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        block = int(receipt["blockNumber"])
        # Replay to learn the reason: the exact state the transaction saw (its block's state
        # up to its position) is not addressable, so try the state after its block, where
        # whatever beat it is applied, then the state before.
        for at in (block, block - 1):
            try:
                self.web3.eth.call(cast(TxParams, call), block_identifier=at)
            except ContractLogicError as exc:
                raise Reverted.from_reason(revert_reason(exc), tx_hash) from exc
            except (Web3RPCError, ValueError):
                break
        if int(receipt["gasUsed"]) >= int(tx["gas"]):
            raise TransactionFailed("transaction ran out of gas", tx_hash)
        raise Reverted("", tx_hash)
