"""deals.vy: EIP-712 proposals, acceptance, nonces, losses, settlement entry points."""

import dataclasses

import pytest
from ledger_helpers import (
    MAX_UINT,
    TOKEN,
    Piece,
    make_deal,
    next_period,
    proposal,
    register,
    reverts,
    signed,
)

from contracts.spec import deal as deal_spec
from contracts.spec.commitment import leaf_count

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture
def parties(ledger):
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger, provider, stake=1_000 * TOKEN)
    ledger.token.approve(ledger.market, MAX_UINT, {"from": client})
    return provider, client


def test_domain_and_digest_match_the_spec(ledger, parties, rng):
    provider, client = parties
    market = ledger.market
    assert bytes(market.domain_separator()) == deal_spec.domain_separator(
        ledger.chain_id, market.address
    )
    p = proposal(ledger, client, provider, Piece.random(1500, rng), rng=rng)
    assert bytes(market.proposal_digest(p.as_tuple())) == deal_spec.signing_digest(
        p, ledger.chain_id, market.address
    )


def test_accept_deal(ledger, parties, rng):
    provider, client = parties
    market, token = ledger.market, ledger.token
    piece = Piece.random(5 * 1024 + 7, rng)
    p = proposal(ledger, client, provider, piece, price=3 * TOKEN, periods=4, collateral=40 * TOKEN)
    client_before = token.balanceOf(client)
    tx = market.accept_deal(p.as_tuple(), signed(ledger, client, p), {"from": provider})
    deal_id = tx.return_value
    assert deal_id == 1 and market.deal_count() == 1
    start = market.current_period() + 1
    event = dict(tx.events["DealAccepted"])
    assert event == {
        "deal_id": 1,
        "client": client,
        "provider": provider,
        "piece_root": "0x" + piece.root.hex(),
        "piece_size": piece.size,
        "price_per_period": 3 * TOKEN,
        "collateral": 40 * TOKEN,
        "start": start,
        "end": start + 4,
        "epoch": 0,
        "slot": 0,
        "nonce": p.nonce,
    }
    assert token.balanceOf(client) == client_before - 12 * TOKEN
    assert market.providers(provider)[2] == 40 * TOKEN  # locked
    assert market.providers(provider)[3] == 1  # open deals
    assert market.nonce_used(client, p.nonce)
    d = market.deal(deal_id)
    assert (d[0], d[1], d[2], d[3], d[5], d[6], d[11]) == (
        client,
        provider,
        3 * TOKEN,
        40 * TOKEN,
        start,
        start + 4,
        False,
    )
    slot = market.slot(provider, 0, 0)
    assert bytes(slot[0]) == piece.root and slot[1] == piece.size and slot[2] == 1
    state = market.proving_state(provider)
    assert state[4] == leaf_count(piece.size)  # pending leaves
    assert state[2] == 0  # not challenged before the next period
    assert market.deal_stop(deal_id) == start + 4


def test_second_deal_gets_the_next_slot(ledger, parties, rng):
    provider, client = parties
    a = make_deal(ledger, client, provider, Piece.random(1024, rng))
    b = make_deal(ledger, client, provider, Piece.random(3000, rng))
    assert ledger.market.deal(a)[8] == 0 and ledger.market.deal(b)[8] == 1
    assert ledger.market.slot_count(provider, 0) == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"piece_size": 0}, "deals: empty piece"),
        ({"piece_size": (1 << 20) + 1}, "deals: piece too large"),
        ({"periods": 0}, "deals: zero periods"),
        ({"expiry_block": 1}, "deals: proposal expired"),
    ],
)
def test_accept_rejects_bad_terms(ledger, parties, rng, change, reason):
    provider, client = parties
    p = dataclasses.replace(proposal(ledger, client, provider, Piece.random(1024, rng)), **change)
    with reverts(reason):
        ledger.market.accept_deal(p.as_tuple(), signed(ledger, client, p), {"from": provider})


def test_accept_only_by_the_named_provider(ledger, parties, rng):
    provider, client = parties
    p = proposal(ledger, client, provider, Piece.random(1024, rng))
    with reverts("deals: caller is not the provider"):
        ledger.market.accept_deal(p.as_tuple(), signed(ledger, client, p), {"from": client})


def test_accept_needs_a_registered_active_provider(ledger, rng):
    stranger, client = ledger.accounts[3], ledger.accounts[2]
    ledger.token.approve(ledger.market, MAX_UINT, {"from": client})
    p = proposal(ledger, client, stranger, Piece.random(1024, rng))
    with reverts("registry: provider not active"):
        ledger.market.accept_deal(p.as_tuple(), signed(ledger, client, p), {"from": stranger})


def test_nonce_is_single_use(ledger, parties, rng):
    provider, client = parties
    p = proposal(ledger, client, provider, Piece.random(1024, rng))
    sig = signed(ledger, client, p)
    ledger.market.accept_deal(p.as_tuple(), sig, {"from": provider})
    with reverts("deals: nonce already used"):
        ledger.market.accept_deal(p.as_tuple(), sig, {"from": provider})


def test_cancel_nonce(ledger, parties, rng):
    provider, client = parties
    p = proposal(ledger, client, provider, Piece.random(1024, rng))
    tx = ledger.market.cancel_nonce(p.nonce, {"from": client})
    assert dict(tx.events["NonceCancelled"]) == {"client": client, "nonce": p.nonce}
    with reverts("deals: nonce already used"):
        ledger.market.accept_deal(p.as_tuple(), signed(ledger, client, p), {"from": provider})
    with reverts("deals: nonce already used"):
        ledger.market.cancel_nonce(p.nonce, {"from": client})


def test_signature_must_be_the_clients(ledger, parties, rng):
    provider, client = parties
    other = ledger.accounts[4]
    p = proposal(ledger, client, provider, Piece.random(1024, rng))
    with reverts("deals: signature is not the client's"):
        ledger.market.accept_deal(p.as_tuple(), signed(ledger, other, p), {"from": provider})
    # A signature over other terms does not transfer to these.
    sig = signed(ledger, client, p)
    cheaper = dataclasses.replace(p, price_per_period=p.price_per_period - 1)
    with reverts("deals: signature is not the client's"):
        ledger.market.accept_deal(cheaper.as_tuple(), sig, {"from": provider})


def test_malleable_and_malformed_signatures(ledger, parties, rng):
    provider, client = parties
    p = proposal(ledger, client, provider, Piece.random(1024, rng))
    sig = signed(ledger, client, p)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    with reverts("deals: signature s too high (EIP-2)"):
        ledger.market.accept_deal(p.as_tuple(), high_s, {"from": provider})
    with reverts("deals: signature v must be 27 or 28"):
        ledger.market.accept_deal(p.as_tuple(), sig[:64] + bytes([v - 27]), {"from": provider})
    with reverts("deals: signature must be 65 bytes"):
        ledger.market.accept_deal(p.as_tuple(), sig[:64], {"from": provider})
    with reverts("deals: invalid signature"):
        ledger.market.accept_deal(p.as_tuple(), bytes(32) + sig[32:], {"from": provider})


def test_collateral_must_leave_the_minimum_stake_free(ledger, parties, rng):
    provider, client = parties  # stake 1000, min stake 100
    make_deal(ledger, client, provider, Piece.random(1024, rng), collateral=600 * TOKEN)
    with reverts("registry: stake too low for collateral"):
        make_deal(ledger, client, provider, Piece.random(1024, rng), collateral=300 * TOKEN + 1)
    make_deal(ledger, client, provider, Piece.random(1024, rng), collateral=300 * TOKEN)
    assert ledger.market.free_stake(provider) == 100 * TOKEN


def test_client_must_allow_the_escrow(ledger, parties, rng):
    provider, client = parties
    ledger.token.approve(ledger.market, 10 * TOKEN - 1, {"from": client})
    p = proposal(ledger, client, provider, Piece.random(1024, rng), price=TOKEN, periods=10)
    with reverts("token: insufficient allowance"):
        ledger.market.accept_deal(p.as_tuple(), signed(ledger, client, p), {"from": provider})


def test_declare_loss(ledger, parties, rng):
    provider, client = parties
    deal_id = make_deal(ledger, client, provider, Piece.random(2048, rng), periods=6)
    next_period(ledger.web3, ledger.market)
    with reverts("deals: caller is not the provider"):
        ledger.market.declare_loss(deal_id, {"from": client})
    tx = ledger.market.declare_loss(deal_id, {"from": provider})
    current = ledger.market.current_period()
    assert dict(tx.events["LossDeclared"]) == {
        "deal_id": deal_id,
        "provider": provider,
        "end_period": current + 1,
    }
    assert tx.events["SlotRetired"]["from_period"] == current + 1
    assert ledger.market.deal_stop(deal_id) == current + 1
    assert ledger.market.slot(provider, 0, 0)[3] == current + 1
    with reverts("deals: loss already declared"):
        ledger.market.declare_loss(deal_id, {"from": provider})
    with reverts("deals: unknown deal"):
        ledger.market.declare_loss(99, {"from": provider})


def test_declare_loss_too_late(ledger, parties, rng):
    provider, client = parties
    deal_id = make_deal(ledger, client, provider, Piece.random(2048, rng), periods=1)
    next_period(ledger.web3, ledger.market)
    # This is the deal's only period: a loss would end it no earlier than it ends anyway.
    with reverts("deals: deal ends before a loss would take effect"):
        ledger.market.declare_loss(deal_id, {"from": provider})


def test_settle_entry_points(ledger, parties, rng):
    provider, client = parties
    deal_id = make_deal(ledger, client, provider, Piece.random(2048, rng), periods=3)
    with reverts("deals: unknown deal"):
        ledger.market.settle(77, {"from": client})
    with reverts("deals: nothing to settle"):
        ledger.market.settle(deal_id, {"from": client})
    tx = ledger.market.settle_many([deal_id], {"from": client})
    assert tx.return_value == 0
    with reverts("deals: unknown deal"):
        ledger.market.settle_many([deal_id, 77], {"from": client})
