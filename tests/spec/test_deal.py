"""contracts/spec/deal.py: EIP-712 hashing against the vectors and against eth-account."""

import dataclasses

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.spec import deal as d


def h(x: str) -> bytes:
    return bytes.fromhex(x.removeprefix("0x"))


def proposal_from(fields: dict) -> d.DealProposal:
    return d.DealProposal(**{**fields, "piece_root": h(fields["piece_root"])})


def test_type_hashes(vectors):
    data = vectors("deal")
    assert h(data["domain_typehash"]) == d.EIP712_DOMAIN_TYPEHASH
    assert h(data["proposal_typehash"]) == d.DEAL_PROPOSAL_TYPEHASH


def test_vectors(vectors):
    for case in vectors("deal")["cases"]:
        p = proposal_from(case["proposal"])
        assert d.domain_separator(case["chain_id"], case["market"]) == h(case["domain_separator"])
        assert d.struct_hash(p) == h(case["struct_hash"])
        digest = d.signing_digest(p, case["chain_id"], case["market"])
        assert digest == h(case["digest"])
        signer = Account._recover_hash(digest, signature=h(case["signature"]))
        assert signer == case["signer"]


addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
proposals = st.builds(
    d.DealProposal,
    client=addresses,
    provider=addresses,
    piece_root=st.binary(min_size=32, max_size=32),
    piece_size=st.integers(0, 2**64 - 1),
    price_per_period=st.integers(0, 2**256 - 1),
    periods=st.integers(0, 2**32 - 1),
    collateral=st.integers(0, 2**256 - 1),
    nonce=st.integers(0, 2**256 - 1),
    expiry_block=st.integers(0, 2**64 - 1),
)


@settings(max_examples=50, deadline=None)
@given(p=proposals, chain_id=st.integers(1, 2**64), market=addresses)
def test_digest_is_eth_accounts(p, chain_id, market):
    """Our hashing equals eth-account's generic EIP-712 encoder on the same typed data."""
    message = encode_typed_data(full_message=d.typed_data(p, chain_id, market))
    assert _hash_eip191_message(message) == d.signing_digest(p, chain_id, market)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client": "0x1234"}, "20-byte"),
        ({"provider": "0x" + "zz" * 20}, "hex address"),
        ({"piece_root": b"\x00" * 31}, "32 bytes"),
        ({"piece_size": 2**64}, "uint64"),
        ({"periods": 2**32}, "uint32"),
        ({"price_per_period": -1}, "uint256"),
        ({"expiry_block": 2**64}, "uint64"),
    ],
)
def test_fields_are_checked(change, message):
    base = d.DealProposal("0x" + "11" * 20, "0x" + "22" * 20, b"\x01" * 32, 1, 1, 1, 1, 1, 1)
    with pytest.raises(d.DealError, match=message):
        dataclasses.replace(base, **change)


def test_escrow_and_tuple():
    p = d.DealProposal("0x" + "11" * 20, "0x" + "22" * 20, b"\x01" * 32, 5, 7, 3, 9, 11, 13)
    assert p.escrow() == 21
    assert p.as_tuple() == ("0x" + "11" * 20, "0x" + "22" * 20, b"\x01" * 32, 5, 7, 3, 9, 11, 13)
