"""Deal admission (sans-I/O): every check, positive and negative, and the signature rules."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from contracts.offers import ProposeDeal, price_for
from contracts.spec.deal import DealProposal, typed_data
from node import wire
from prover.admission import (
    SECP256K1_HALF_N,
    ChainView,
    Terms,
    check_chain,
    check_terms,
    recover_signer,
)
from prover.errors import ProposalRefused

TOKEN = 10**18
SECP256K1_N = 2 * SECP256K1_HALF_N + 1
CLIENT: LocalAccount = Account.from_key(b"\x11" * 32)
OTHER: LocalAccount = Account.from_key(b"\x22" * 32)
PROVIDER: LocalAccount = Account.from_key(b"\x33" * 32)
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SIZE = 3 << 20

TERMS = Terms(
    provider=PROVIDER.address,
    chain_id=31337,
    market=MARKET,
    price_per_gib_period=TOKEN,
    collateral_per_gib=10 * TOKEN,
    min_piece_size=1024,
    max_piece_size=64 << 20,
    max_periods=100,
    min_expiry_blocks=10,
)
HEAD = 1_000


def proposal(**changes: object) -> DealProposal:
    base = DealProposal(
        client=CLIENT.address,
        provider=PROVIDER.address,
        piece_root=b"\x07" * 32,
        piece_size=SIZE,
        price_per_period=price_for(SIZE, TOKEN),
        periods=10,
        collateral=price_for(SIZE, 10 * TOKEN),
        nonce=2**255 + 12345,
        expiry_block=HEAD + 50,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def sign(p: DealProposal, account: LocalAccount = CLIENT) -> bytes:
    message = encode_typed_data(full_message=typed_data(p, TERMS.chain_id, MARKET))
    return bytes(account.sign_message(message).signature)


def message(p: DealProposal | None = None, signature: bytes | None = None) -> ProposeDeal:
    p = p or proposal()
    return ProposeDeal.of(p, signature if signature is not None else sign(p))


def terms_ok(msg: ProposeDeal, **kw: object) -> DealProposal:
    args: dict[str, object] = {"free_bytes": 1 << 30, "duplicate": False, "head": HEAD}
    args.update(kw)
    return check_terms(msg, TERMS, **args)  # type: ignore[arg-type]


def view(**changes: object) -> ChainView:
    base = ChainView(
        head=HEAD,
        client_balance=10**6 * TOKEN,
        client_allowance=10**6 * TOKEN,
        nonce_used=False,
        provider_active=True,
        free_stake=1_000 * TOKEN,
        min_stake=100 * TOKEN,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def refused(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(ProposalRefused) as info:
        fn(*args, **kw)  # type: ignore[operator]
    return info.value.reason


def test_a_good_proposal_is_admitted_with_checksummed_addresses() -> None:
    lower = proposal(client=CLIENT.address.lower(), provider=PROVIDER.address.lower())
    admitted = terms_ok(message(lower))
    assert admitted.client == CLIENT.address and admitted.provider == PROVIDER.address
    check_chain(admitted, view(), TERMS)


def test_the_proposal_travels_with_its_256_bit_fields_intact() -> None:
    msg = message(proposal(nonce=2**256 - 1, collateral=10**40, price_per_period=10**30))
    assert wire.decode(wire.encode(msg)) == msg


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"provider": OTHER.address}, "not " + PROVIDER.address),
        ({"piece_size": 1000}, "piece size 1000 outside"),
        ({"piece_size": (64 << 20) + 1}, "outside"),
        ({"periods": 0}, "0 periods outside"),
        ({"periods": 101}, "101 periods outside"),
        ({"price_per_period": price_for(SIZE, TOKEN) - 1}, "underpriced"),
        ({"collateral": price_for(SIZE, 10 * TOKEN) + 1}, "collateral"),
        ({"expiry_block": HEAD + 9}, "expires at block"),
    ],
)
def test_terms_outside_the_ask_are_refused(changes: dict[str, object], expected: str) -> None:
    p = proposal(**changes)
    assert expected in refused(terms_ok, message(p))


def test_more_than_the_price_and_less_collateral_are_fine() -> None:
    p = proposal(price_per_period=price_for(SIZE, TOKEN) * 2, collateral=0)
    assert terms_ok(message(p)) == p


def test_a_signature_by_someone_else_is_refused() -> None:
    p = proposal()
    assert "not the client" in refused(terms_ok, message(p, sign(p, OTHER)))


def test_a_signature_over_other_terms_is_refused() -> None:
    signed = proposal()
    sent = replace(signed, price_per_period=signed.price_per_period * 2)
    assert "not the client" in refused(terms_ok, message(sent, sign(signed)))


def test_malleable_and_malformed_signatures_are_refused() -> None:
    p = proposal()
    good = sign(p)
    r, s, v = good[:32], int.from_bytes(good[32:64], "big"), good[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    assert "EIP-2" in refused(recover_signer, p, twin, TERMS.chain_id, MARKET)
    assert "v must be" in refused(recover_signer, p, good[:64] + b"\x01", TERMS.chain_id, MARKET)
    assert "65 bytes" in refused(recover_signer, p, good[:64], TERMS.chain_id, MARKET)
    zero = bytes(32) + bytes(32) + b"\x1b"
    assert "signature" in refused(recover_signer, p, zero, TERMS.chain_id, MARKET)
    assert recover_signer(p, good, TERMS.chain_id, MARKET) == CLIENT.address


def test_a_signature_for_another_market_or_chain_does_not_recover_the_client() -> None:
    p = proposal()
    elsewhere = encode_typed_data(full_message=typed_data(p, 1, MARKET))
    sig = bytes(CLIENT.sign_message(elsewhere).signature)
    assert recover_signer(p, sig, TERMS.chain_id, MARKET) != CLIENT.address


def test_out_of_range_fields_are_malformed() -> None:
    msg = replace(message(), piece_size=2**64)
    assert "malformed" in refused(terms_ok, msg)


def test_space_and_duplicates_are_checked_after_the_signature() -> None:
    msg = message()
    assert "no space" in refused(terms_ok, msg, free_bytes=SIZE - 1)
    assert terms_ok(msg, free_bytes=SIZE).piece_size == SIZE
    assert "already stored" in refused(terms_ok, msg, duplicate=True)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"nonce_used": True}, "already used"),
        ({"client_balance": price_for(SIZE, TOKEN) * 10 - 1}, "balance"),
        ({"client_allowance": 0}, "allowance"),
        ({"provider_active": False}, "not taking deals"),
        ({"free_stake": 100 * TOKEN + price_for(SIZE, 10 * TOKEN) - 1}, "stake too low"),
        ({"head": HEAD + 45}, "expires"),
    ],
)
def test_chain_facts_that_forbid_the_deal_are_refused(
    changes: dict[str, object], expected: str
) -> None:
    p = terms_ok(message())
    assert expected in refused(check_chain, p, view(**changes), TERMS)


def test_exactly_enough_escrow_and_stake_pass() -> None:
    p = terms_ok(message())
    check_chain(
        p,
        view(
            client_balance=p.escrow(),
            client_allowance=p.escrow(),
            free_stake=100 * TOKEN + p.collateral,
        ),
        TERMS,
    )
