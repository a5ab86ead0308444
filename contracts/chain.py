"""
The ledger seen from Python: typed reads, writes and events of a deployed StorageMarket.

This is the one module outside the contract sources that knows the contracts' ABIs and
addresses (from ``contracts.artifacts`` and ``contracts.deployment``). It speaks plain
JSON-RPC through web3.py and signs with eth-account, so it works against anvil, a public
testnet or an L2 alike. Daemons use it like this::

    client = LedgerClient("http://127.0.0.1:8545", Deployment.load(path), account)
    client.approve(stake)
    client.register(node_id, "203.0.113.7:4001", stake)
    for challenge in client.challenges(client.address):
        ...                                        # read the leaf and its audit path
    client.submit_proof(proofs)
    for event in client.events(from_block, to_block):
        ...                                        # DealAccepted, ProofSubmitted, ...

Reads that must agree with each other (the challenge walk) are made at one block.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import BlockIdentifier, FilterParams, LogReceipt, TxReceipt

from contracts.artifacts import MARKET, TOKEN, load_artifact
from contracts.deployment import Deployment, MarketParams
from contracts.errors import ChainMismatch, LocalError, NoAccount, RpcUnavailable
from contracts.events import EVENT_TYPES, DealAccepted, LedgerEvent
from contracts.spec import challenge as challenge_spec
from contracts.spec import commitment
from contracts.spec.deal import DealProposal, typed_data
from contracts.spec.schedule import Schedule
from contracts.txs import TxConfig, TxSender, rpc_guard

MAX_UINT256: Final = 2**256 - 1
BATCH_SIZE: Final = 200
"""Calls per JSON-RPC batch when reading many slots."""
LOG_CHUNK_BLOCKS: Final = 5_000
"""Blocks per eth_getLogs request (public endpoints cap the range)."""
MAX_SETTLE_BATCH: Final = 64
"""Deal ids per ``settle_many`` transaction (the contract's bound)."""

LeafProof = tuple[bytes, Sequence[bytes]]
"""One challenge's answer: the 1 KiB leaf and its audit path, nearest sibling first."""

E = TypeVar("E", bound=LedgerEvent)


class ProviderStatus(enum.IntEnum):
    """``types.ProviderStatus`` (a Vyper flag: one bit per state)."""

    NONE = 0
    ACTIVE = 1
    EXITING = 2
    WITHDRAWN = 4


@dataclass(frozen=True)
class ProviderInfo:
    """A provider's registry record."""

    address: str
    node_id: bytes
    stake: int
    locked: int
    """Unspent collateral of the provider's open deals."""
    open_deals: int
    status: ProviderStatus
    exit_period: int
    endpoint: str

    @property
    def free_stake(self) -> int:
        """Stake not locked by deals (0 when faults have eaten into the locked part)."""
        return max(self.stake - self.locked, 0)


@dataclass(frozen=True)
class DealInfo:
    """An accepted deal, with its piece and where it stops."""

    deal_id: int
    client: str
    provider: str
    piece_root: bytes
    piece_size: int
    price_per_period: int
    collateral: int
    slashed: int
    start: int
    end: int
    stop: int
    """First period the deal no longer covers: ``end``, or earlier after termination/loss."""
    epoch: int
    slot: int
    settled_through: int
    """Periods below this are paid out (0: none yet, read as ``start``)."""
    loss_end: int
    closed: bool


@dataclass(frozen=True)
class ProvingState:
    """A provider's proving bookkeeping as of the current period (``proving.ProvingState``)."""

    epoch: int
    rolled_period: int
    live_leaves: int
    """Leaves challenged this period: the range of the challenge indices."""
    live_bounty: int
    pending_leaves: int
    pending_bounty: int
    retiring_leaves: int
    retiring_bounty: int
    retiring_count: int
    prev_leaves: int
    prev_bounty: int
    active_since: int


@dataclass(frozen=True)
class SlotInfo:
    """One piece in a provider's challenge set."""

    epoch: int
    index: int
    piece_root: bytes
    piece_size: int
    deal_id: int
    retired_from: int
    """First period the slot is no longer challenged; 0 while it is."""

    @property
    def leaves(self) -> int:
        return commitment.leaf_count(self.piece_size)

    def leaves_in(self, period: int) -> int:
        """The slot's weight in ``period``'s challenge walk (0 once retired)."""
        return 0 if self.retired_from and self.retired_from <= period else self.leaves


@dataclass(frozen=True)
class Challenge:
    """Challenge ``i`` of a period, located in the provider's pieces."""

    i: int
    index: int
    """Global leaf index over the provider's live leaves."""
    slot: int
    leaf: int
    """Leaf index inside the slot's piece: answer with that leaf and its audit path."""
    deal_id: int
    piece_root: bytes
    piece_size: int


@dataclass(frozen=True)
class Receipt:
    """A mined, successful transaction and the market events it emitted."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[LedgerEvent, ...]

    def first(self, kind: type[E]) -> E:
        """The first event of type ``kind``; ``LocalError`` if there is none."""
        for event in self.events:
            if isinstance(event, kind):
                return event
        raise LocalError(f"transaction {self.tx_hash} emitted no {kind.__name__}")


def connect(rpc_url: str, timeout: float = 30.0) -> Web3:
    """A web3 instance for ``rpc_url`` (HTTP JSON-RPC)."""
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


def new_nonce() -> int:
    """A fresh random 256-bit proposal nonce (clients propose in parallel, so never a counter)."""
    return secrets.randbits(256)


class LedgerClient:
    """
    Typed access to a deployed ledger.

    Parameters
    ----------
    rpc :
        A JSON-RPC URL or a ready ``Web3``.
    deployment :
        Where the contracts are (``Deployment.load("deployment.json")``).
    account :
        The key that signs writes; reads need none.
    tx_config :
        Fees, gas margin and resubmission policy.
    """

    def __init__(
        self,
        rpc: str | Web3,
        deployment: Deployment,
        account: LocalAccount | None = None,
        *,
        tx_config: TxConfig | None = None,
    ) -> None:
        config = tx_config or TxConfig()
        self.web3 = connect(rpc, config.rpc_timeout) if isinstance(rpc, str) else rpc
        self.deployment = deployment
        self.account = account
        chain_id = rpc_guard(lambda: int(self.web3.eth.chain_id))
        if chain_id != deployment.chain_id:
            raise ChainMismatch(
                f"node serves chain {chain_id}, deployment is on chain {deployment.chain_id}"
            )
        self.market: Contract = self.web3.eth.contract(
            address=Web3.to_checksum_address(deployment.market),
            abi=load_artifact(MARKET).abi_list(),
        )
        self.token: Contract = self.web3.eth.contract(
            address=Web3.to_checksum_address(deployment.token), abi=load_artifact(TOKEN).abi_list()
        )
        self._sender = TxSender(self.web3, account, config) if account is not None else None
        self._events = {
            HexBytes(self.web3.keccak(text=_signature(item))): str(item["name"])
            for item in load_artifact(MARKET).abi
            if item.get("type") == "event"
        }

    # ------------------------------------------------------------------ clock

    @property
    def address(self) -> str:
        """The signing account's address."""
        if self.account is None:
            raise NoAccount("this client has no account")
        return Web3.to_checksum_address(self.account.address)

    @property
    def schedule(self) -> Schedule:
        """The period clock (contracts.spec.schedule)."""
        return self.deployment.schedule

    @property
    def params(self) -> MarketParams:
        """The market's parameters as recorded in the deployment."""
        return self.deployment.params

    def current_block(self) -> int:
        """The latest block number."""
        return rpc_guard(lambda: int(self.web3.eth.block_number))

    def current_period(self, block: int | None = None) -> int:
        """The period of ``block`` (default: the latest block)."""
        return self.schedule.period_of(self.current_block() if block is None else block)

    def chain_params(self) -> MarketParams:
        """The parameters read from the contract (to check a deployment file against)."""
        f = self.market.functions
        return MarketParams(
            period_blocks=self._call(f.period_blocks()),
            challenges=self._call(f.challenges()),
            min_stake=self._call(f.min_stake()),
            unbonding_periods=self._call(f.unbonding_periods()),
            max_consecutive_misses=self._call(f.max_consecutive_misses()),
            miss_slash_bps=self._call(f.miss_slash_bps()),
            bounty_bps=self._call(f.bounty_bps()),
            max_piece_size=self._call(f.max_piece_size()),
        )

    # ------------------------------------------------------------------ reads

    def balance_of(self, owner: str) -> int:
        """Token balance of ``owner``."""
        return int(self._call(self.token.functions.balanceOf(owner)))

    def allowance(self, owner: str, spender: str | None = None) -> int:
        """What ``spender`` (default: the market) may pull from ``owner``."""
        return int(
            self._call(self.token.functions.allowance(owner, spender or self.market.address))
        )

    def provider(self, address: str, block: BlockIdentifier = "latest") -> ProviderInfo:
        """The registry record of ``address`` (status NONE if it never registered)."""
        f = self.market.functions
        node_id, stake, locked, open_deals, status, exit_period = self._call(
            f.providers(address), block
        )
        return ProviderInfo(
            address=Web3.to_checksum_address(address),
            node_id=bytes(node_id),
            stake=stake,
            locked=locked,
            open_deals=open_deals,
            status=ProviderStatus(status),
            exit_period=exit_period,
            endpoint=self._call(f.endpoints(address), block),
        )

    def deal_count(self) -> int:
        """Deals ever accepted (ids run from 1 to this)."""
        return int(self._call(self.market.functions.deal_count()))

    def deal(self, deal_id: int, block: BlockIdentifier = "latest") -> DealInfo:
        """A deal by id; ``Reverted`` ("deals: unknown deal") if there is none."""
        f = self.market.functions
        d = self._call(f.deal(deal_id), block)
        stop = self._call(f.deal_stop(deal_id), block)
        slot = self._call(f.slot(d[1], d[7], d[8]), block)
        return DealInfo(
            deal_id=deal_id,
            client=d[0],
            provider=d[1],
            piece_root=bytes(slot[0]),
            piece_size=slot[1],
            price_per_period=d[2],
            collateral=d[3],
            slashed=d[4],
            start=d[5],
            end=d[6],
            stop=stop,
            epoch=d[7],
            slot=d[8],
            settled_through=d[9],
            loss_end=d[10],
            closed=d[11],
        )

    def nonce_used(self, client: str, nonce: int) -> bool:
        """Whether ``client``'s proposal nonce was accepted or cancelled."""
        return bool(self._call(self.market.functions.nonce_used(client, nonce)))

    def proving_state(self, provider: str, block: BlockIdentifier = "latest") -> ProvingState:
        """The provider's proving bookkeeping as of the period of ``block``."""
        return ProvingState(*self._call(self.market.functions.proving_state(provider), block))

    def slots(
        self, provider: str, epoch: int | None = None, block: BlockIdentifier = "latest"
    ) -> list[SlotInfo]:
        """Every slot of the provider's data set in ``epoch`` (default: the current one)."""
        f = self.market.functions
        if epoch is None:
            epoch = self.proving_state(provider, block).epoch
        count = int(self._call(f.slot_count(provider, epoch), block))
        out: list[SlotInfo] = []
        for first in range(0, count, BATCH_SIZE):
            indices = range(first, min(first + BATCH_SIZE, count))
            raw = self._batch([f.slot(provider, epoch, i) for i in indices], block)
            out += [
                SlotInfo(epoch, i, bytes(s[0]), s[1], s[2], s[3])
                for i, s in zip(indices, raw, strict=True)
            ]
        return out

    def seed(self, period: int) -> bytes:
        """The challenge seed of ``period``: the hash of its first block (must be mined)."""
        block = rpc_guard(lambda: self.web3.eth.get_block(self.schedule.seed_block(period)))
        return bytes(block["hash"])

    def challenges(self, provider: str) -> list[Challenge]:
        """
        The challenges of ``provider`` for a proof sent now, located in its pieces: what the
        proof must answer, in order. The proof lands in the next block, so the period is that
        block's; every read is made at the latest block.

        Raises
        ------
        LocalError
            The next block is its period's seed block (wait one block), or the provider has
            nothing to prove.
        """
        head = self.current_block()
        period = self.schedule.period_of(head + 1)
        if head + 1 == self.schedule.seed_block(period):
            raise LocalError(f"the seed of period {period} is not sealed yet (block {head})")
        state = self.proving_state(provider, head)
        if state.live_leaves == 0:
            raise LocalError(f"{provider} has nothing to prove in period {period}")
        slots = self.slots(provider, state.epoch, head)
        weights = [s.leaves_in(period) for s in slots]
        seed = self.seed(period)
        out = []
        for i in range(self.params.challenges):
            index = challenge_spec.challenge_index(seed, provider, period, i, state.live_leaves)
            slot, leaf = challenge_spec.locate(index, weights)
            s = slots[slot]
            out.append(Challenge(i, index, slot, leaf, s.deal_id, s.piece_root, s.piece_size))
        return out

    def is_proven(self, provider: str, period: int) -> bool:
        """Whether ``provider`` proved ``period``."""
        return bool(self._call(self.market.functions.is_proven(provider, period)))

    def is_reported(self, provider: str, period: int) -> bool:
        """Whether a fault of ``provider`` in ``period`` was reported."""
        return bool(self._call(self.market.functions.is_reported(provider, period)))

    def fault_bounty(self, provider: str, period: int) -> int:
        """What reporting ``provider``'s ``period`` would pay now (0: not reportable)."""
        return int(self._call(self.market.functions.fault_bounty(provider, period)))

    # ------------------------------------------------------------------ writes

    def faucet(self, amount: int) -> Receipt:
        """Mint ``amount`` tokens to the account (devnet tokens only)."""
        return self._send(self.token, "faucet", amount)

    def approve(self, amount: int = MAX_UINT256, spender: str | None = None) -> Receipt:
        """Let ``spender`` (default: the market) pull up to ``amount`` of the account's tokens."""
        return self._send(self.token, "approve", spender or self.market.address, amount)

    def register(self, node_id: bytes, endpoint: str, stake: int) -> Receipt:
        """Register as a provider (the market pulls ``stake``: approve it first)."""
        return self._send(self.market, "register", node_id, endpoint, stake)

    def top_up(self, amount: int) -> Receipt:
        """Add ``amount`` to the account's stake (approve it first)."""
        return self._send(self.market, "top_up", amount)

    def update_endpoint(self, endpoint: str) -> Receipt:
        """Change where the provider's node can be reached."""
        return self._send(self.market, "update_endpoint", endpoint)

    def request_exit(self) -> Receipt:
        """Stop taking deals; withdraw after the unbonding periods."""
        return self._send(self.market, "request_exit")

    def withdraw(self) -> Receipt:
        """Withdraw the whole stake after exit (every deal settled, no piece challenged)."""
        return self._send(self.market, "withdraw")

    def sign_proposal(self, proposal: DealProposal) -> bytes:
        """The client's EIP-712 signature (r || s || v) of ``proposal`` for this market."""
        if self.address != Web3.to_checksum_address(proposal.client):
            raise LocalError(f"proposal's client {proposal.client} is not {self.address}")
        assert self.account is not None  # checked by self.address
        message = encode_typed_data(
            full_message=typed_data(proposal, self.deployment.chain_id, self.market.address)
        )
        return bytes(self.account.sign_message(message).signature)

    def accept_deal(self, proposal: DealProposal, signature: bytes) -> int:
        """Accept a client's signed proposal (as its provider); returns the new deal id."""
        receipt = self._send(self.market, "accept_deal", proposal.as_tuple(), signature)
        return receipt.first(DealAccepted).deal_id

    def cancel_nonce(self, nonce: int) -> Receipt:
        """Revoke one of the account's unaccepted proposals."""
        return self._send(self.market, "cancel_nonce", nonce)

    def submit_proof(self, proofs: Sequence[LeafProof]) -> Receipt:
        """Prove the current period: one (leaf, audit path) per challenge, in order."""
        encoded = [(bytes(leaf), [bytes(p) for p in path]) for leaf, path in proofs]
        return self._send(self.market, "submit_proof", encoded)

    def report_fault(self, provider: str, period: int) -> Receipt:
        """Report that ``provider`` missed ``period`` (during ``period + 1``) for its bounty."""
        return self._send(self.market, "report_fault", provider, period)

    def settle(self, deal_id: int) -> Receipt:
        """Pay out a deal's closed periods; ``NothingToSettle`` if there are none."""
        return self._send(self.market, "settle", deal_id)

    def settle_many(self, deal_ids: Iterable[int]) -> list[Receipt]:
        """Settle many deals, 64 per transaction; deals with nothing to settle are skipped."""
        ids = list(deal_ids)
        return [
            self._send(self.market, "settle_many", ids[i : i + MAX_SETTLE_BATCH])
            for i in range(0, len(ids), MAX_SETTLE_BATCH)
        ]

    def declare_loss(self, deal_id: int) -> Receipt:
        """Declare a deal's piece lost: the deal ends next period, its collateral is forfeit."""
        return self._send(self.market, "declare_loss", deal_id)

    def roll(self, provider: str) -> Receipt:
        """Bring ``provider``'s bookkeeping to the current period."""
        return self._send(self.market, "roll", provider)

    # ------------------------------------------------------------------ events

    def events(
        self,
        from_block: int,
        to_block: int | None = None,
        kinds: Iterable[type[LedgerEvent]] | None = None,
    ) -> list[LedgerEvent]:
        """
        The market's events in blocks ``[from_block, to_block]`` (default: to the latest),
        oldest first, optionally only of the given types.
        """
        last = self.current_block() if to_block is None else to_block
        wanted = {k.__name__ for k in kinds} if kinds is not None else None
        topics: list[Any] | None = None
        if wanted is not None:
            topics = [[t for t, name in self._events.items() if name in wanted]]
        out: list[LedgerEvent] = []
        for start in range(from_block, last + 1, LOG_CHUNK_BLOCKS):
            params: dict[str, Any] = {
                "address": self.market.address,
                "fromBlock": start,
                "toBlock": min(start + LOG_CHUNK_BLOCKS - 1, last),
            }
            if topics is not None:
                params["topics"] = topics
            logs = rpc_guard(lambda p=params: self.web3.eth.get_logs(cast(FilterParams, p)))  # type: ignore[misc]
            out += [e for e in (self._decode(log) for log in logs) if e is not None]
        return out

    # ------------------------------------------------------------------ internal

    def _call(self, fn: Any, block: BlockIdentifier = "latest") -> Any:
        return rpc_guard(lambda: fn.call(block_identifier=block))

    def _batch(self, calls: list[Any], block: BlockIdentifier) -> list[Any]:
        """Many contract calls in one JSON-RPC batch, at one block."""
        if not calls:
            return []
        try:
            with self.web3.batch_requests() as batch:
                for fn in calls:
                    batch.add(fn.call(block_identifier=block))
                return list(batch.execute())
        except (NotImplementedError, ValueError, RpcUnavailable):
            # Endpoints without batch support: one call at a time.
            return [self._call(fn, block) for fn in calls]

    def _send(self, contract: Contract, fn_name: str, *args: Any) -> Receipt:
        if self._sender is None:
            raise NoAccount(f"{fn_name} needs an account to sign with")
        data = contract.encode_abi(fn_name, args=list(args))
        return self._receipt(self._sender.send(contract.address, data))

    def _receipt(self, receipt: TxReceipt) -> Receipt:
        events = tuple(e for e in (self._decode(log) for log in receipt["logs"]) if e is not None)
        return Receipt(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=events,
        )

    def _decode(self, log: LogReceipt) -> LedgerEvent | None:
        """A market log as its event dataclass (None for other contracts' logs)."""
        if Web3.to_checksum_address(log["address"]) != self.market.address or not log["topics"]:
            return None
        name = self._events.get(HexBytes(log["topics"][0]))
        if name is None:
            return None
        decoded = self.market.events[name]().process_log(log)
        fields = {
            k: bytes(v) if isinstance(v, bytes | bytearray) else v
            for k, v in decoded["args"].items()
        }
        return EVENT_TYPES[name](
            block_number=int(log["blockNumber"]),
            tx_hash="0x" + bytes(log["transactionHash"]).hex(),
            log_index=int(log["logIndex"]),
            **fields,
        )


def _signature(event_abi: dict[str, Any]) -> str:
    """``Name(type1,type2,...)``: what topic 0 is the keccak of."""
    return f"{event_abi['name']}({','.join(i['type'] for i in event_abi['inputs'])})"
