"""
Helpers of the contract tests: pieces and their proofs, clock control, proposal signing.

Everything here computes from ``contracts.spec`` (the reference), never from the contract
under test, so that the tests check the contract against the spec.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from brownie.test.managers.runner import RevertContextManager
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from contracts.deployment import MarketParams
from contracts.spec import accounting, challenge, commitment, deal

TOKEN = 10**18

TEST_PARAMS = MarketParams(
    period_blocks=16,
    challenges=8,
    min_stake=100 * TOKEN,
    unbonding_periods=2,
    max_consecutive_misses=3,
    miss_slash_bps=1_000,
    bounty_bps=5_000,
    max_piece_size=1 << 20,
)
"""Small periods and few challenges keep the tests fast; test_proving also runs 46."""

reverts = RevertContextManager
"""``with reverts("module: reason"):`` (brownie.reverts, which only its pytest plugin installs)."""


@dataclass
class Piece:
    """A piece with its Merkle tree, to answer challenges."""

    data: bytes
    root: bytes = b""
    leaf_hashes: list[commitment.Hash32] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.leaf_hashes = [commitment.hash_leaf(x) for x in commitment.leaves_of(self.data)]
        self.root = commitment.root_of_nodes(self.leaf_hashes)

    @classmethod
    def random(cls, size: int, rng: random.Random) -> Piece:
        return cls(rng.randbytes(size))

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def leaves(self) -> int:
        return len(self.leaf_hashes)

    def answer(self, index: int) -> tuple[bytes, list[bytes]]:
        """(leaf padded to 1 KiB, audit path) of leaf ``index``."""
        leaf = commitment.pad_leaf(commitment.leaves_of(self.data)[index])
        return leaf, list(commitment.inclusion_proof(self.leaf_hashes, index))


def mine(web3: Any, blocks: int) -> None:
    """Mine ``blocks`` empty blocks at once."""
    if blocks > 0:
        web3.provider.make_request("anvil_mine", [hex(blocks)])


def period_start(market: Any, period: int) -> int:
    return int(market.genesis()) + period * int(market.period_blocks())


def to_window(web3: Any, market: Any, period: int, offset: int = 1) -> None:
    """
    Mine so that the next transaction lands ``offset`` blocks after ``period``'s seed block
    (offset 1: the first block of the proving window; 0: the seed block itself).
    """
    target = period_start(market, period) + offset - 1
    head = web3.eth.block_number
    assert head <= target, f"already past block {target} (head {head})"
    mine(web3, target - head)


def next_period(web3: Any, market: Any, offset: int = 1) -> int:
    """Advance to ``offset`` blocks into the next period's window; returns that period."""
    period = int(market.current_period()) + 1
    to_window(web3, market, period, offset)
    return period


def live_slot_leaves(market: Any, provider: str, epoch: int, period: int) -> list[int]:
    """Leaves per slot as challenged in ``period`` (retired slots count zero)."""
    out = []
    for i in range(int(market.slot_count(provider, epoch))):
        slot = market.slot(provider, epoch, i)
        retired_from = int(slot[3])
        size = int(slot[1])
        out.append(0 if retired_from and retired_from <= period else commitment.leaf_count(size))
    return out


def build_proofs(
    web3: Any,
    market: Any,
    provider: str,
    pieces: dict[bytes, Piece],
    period: int,
    corrupt: Sequence[int] = (),
) -> list[tuple[bytes, list[bytes]]]:
    """
    The proof the provider must send in ``period`` (the next block must be in its window),
    computed from the spec: seed -> challenge indices -> locate -> leaf and audit path.
    ``corrupt`` lists challenges whose leaf is flipped.
    """
    state = market.proving_state(provider)
    epoch, live = int(state[0]), int(state[2])
    seed = bytes(web3.eth.get_block(period_start(market, period))["hash"])
    slot_leaves = live_slot_leaves(market, provider, epoch, period)
    roots = [bytes(market.slot(provider, epoch, i)[0]) for i in range(len(slot_leaves))]
    proofs = []
    for i in range(int(market.challenges())):
        index = challenge.challenge_index(seed, provider, period, i, live)
        slot, leaf_index = challenge.locate(index, slot_leaves)
        leaf, path = pieces[roots[slot]].answer(leaf_index)
        if i in corrupt:
            leaf = bytes([leaf[0] ^ 1]) + leaf[1:]
        proofs.append((leaf, path))
    return proofs


def sign_proposal(
    account: LocalAccount, proposal: deal.DealProposal, chain_id: int, market: str
) -> bytes:
    """The client's EIP-712 signature r || s || v, as eth-account makes it."""
    message = encode_typed_data(full_message=deal.typed_data(proposal, chain_id, market))
    return bytes(account.sign_message(message).signature)


MAX_UINT = 2**256 - 1


def register(
    ledger: Any, provider: Any, stake: int = 1_000 * TOKEN, node_id: bytes | None = None
) -> Any:
    """Approve the market and register ``provider`` with ``stake``."""
    ledger.token.approve(ledger.market, MAX_UINT, {"from": provider})
    node = node_id if node_id is not None else bytes(12) + bytes.fromhex(provider.address[2:])
    return ledger.market.register(
        node, f"127.0.0.1:{4000 + int(provider.address[-2:], 16)}", stake, {"from": provider}
    )


def proposal(
    ledger: Any,
    client: Any,
    provider: Any,
    piece: Piece,
    *,
    price: int = 10 * TOKEN,
    periods: int = 5,
    collateral: int = 50 * TOKEN,
    nonce: int | None = None,
    expiry: int | None = None,
    rng: random.Random | None = None,
) -> deal.DealProposal:
    """A proposal from ``client`` to ``provider`` for ``piece``."""
    return deal.DealProposal(
        client=client.address,
        provider=provider.address,
        piece_root=piece.root,
        piece_size=piece.size,
        price_per_period=price,
        periods=periods,
        collateral=collateral,
        nonce=nonce if nonce is not None else (rng or random.Random()).getrandbits(256),
        expiry_block=expiry if expiry is not None else ledger.web3.eth.block_number + 1_000,
    )


def signed(ledger: Any, client: Any, p: deal.DealProposal) -> bytes:
    return sign_proposal(ledger.key_of(client), p, ledger.chain_id, ledger.market.address)


def make_deal(ledger: Any, client: Any, provider: Any, piece: Piece, **kwargs: Any) -> int:
    """Sign (as ``client``) and accept (as ``provider``) a deal; returns its id."""
    ledger.token.approve(ledger.market, MAX_UINT, {"from": client})
    p = proposal(ledger, client, provider, piece, **kwargs)
    tx = ledger.market.accept_deal(p.as_tuple(), signed(ledger, client, p), {"from": provider})
    return int(tx.return_value)


def prove(ledger: Any, provider: Any, pieces: dict[bytes, Piece], period: int | None = None) -> Any:
    """Submit the provider's proof for the current period (the next block must be in the window)."""
    if period is None:
        period = int(ledger.market.current_period())
    proofs = build_proofs(ledger.web3, ledger.market, provider.address, pieces, period)
    return ledger.market.submit_proof(proofs, {"from": provider})


def deal_book(market: Any, deal_id: int) -> tuple[accounting.DealBook, int, Any]:
    """(the spec's view of a deal, its stop, its provider) from the contract's record."""
    d = market.deal(deal_id)
    book = accounting.DealBook(
        price_per_period=int(d[2]),
        collateral=int(d[3]),
        start=int(d[5]),
        end=int(d[6]),
        slashed=int(d[4]),
        settled_through=int(d[9]),
        closed=bool(d[11]),
    )
    return book, int(market.deal_stop(deal_id)), d[1]


def periods_where(market: Any, provider: str, first: int, stop: int, reported: bool) -> set[int]:
    """Proven (or reported) periods of ``provider`` in [first, stop), from the bitmap words."""
    read = market.reported_words if reported else market.proven_words
    out = set()
    for w in range(first // 256, (stop + 255) // 256):
        word = int(read(provider, w))
        out |= {w * 256 + b for b in range(256) if word >> b & 1}
    return {p for p in out if first <= p < stop}


def settle_and_check(ledger: Any, deal_id: int, sender: Any) -> accounting.Settlement | None:
    """
    Settle a deal and check every transfer against contracts.spec.accounting. The contract's
    current period at the transaction's block is the one the spec is evaluated at.
    """
    market, token = ledger.market, ledger.token
    book, stop, provider = deal_book(market, deal_id)
    client = market.deal(deal_id)[0]
    current = int(market.current_period())
    head = ledger.web3.eth.block_number
    if period_start(market, current + 1) == head + 1:
        current += 1  # the transaction lands in the next period
    first = max(book.settled_through, book.start)
    span = range(first, max(first, min(stop, current)))
    expected = accounting.settle_deal(
        book,
        stop=stop,
        current=current,
        proven=periods_where(market, provider, span.start, span.stop, False),
        reported=periods_where(market, provider, span.start, span.stop, True),
        miss_slash_bps=int(market.miss_slash_bps()),
        bounty_bps=int(market.bounty_bps()),
    )
    stake, locked = int(market.providers(provider)[1]), int(market.providers(provider)[2])
    balances = {a: int(token.balanceOf(a)) for a in {provider, client}}
    if expected is None:
        try:
            tx = market.settle(deal_id, {"from": sender})
        except Exception as exc:  # brownie raises VirtualMachineError on a revert
            assert "deals: nothing to settle" in str(exc)
            return None
        assert "DealSettled" not in tx.events
        return None
    tx = market.settle(deal_id, {"from": sender})
    event = tx.events["DealSettled"]
    taken, _ = accounting.take_from_stake(stake, expected.compensation_due)
    assert (event["from_period"], event["to_period"]) == (expected.from_period, expected.to_period)
    assert (event["proven"], event["missed"], event["reported"]) == (
        expected.proven,
        expected.missed,
        expected.reported,
    )
    assert event["provider_paid"] == expected.provider_paid
    assert event["client_refund"] == expected.client_refund
    assert event["client_compensation"] == taken
    assert event["slashed"] == expected.slashed
    assert event["final"] == expected.final
    assert int(market.providers(provider)[1]) == stake - taken
    assert int(market.providers(provider)[2]) == locked - expected.released
    delta = {a: int(token.balanceOf(a)) - balances[a] for a in balances}
    if provider == client:
        assert delta[provider] == expected.provider_paid + expected.client_refund + taken
    else:
        assert delta[provider] == expected.provider_paid
        assert delta[client] == expected.client_refund + taken
    return expected
