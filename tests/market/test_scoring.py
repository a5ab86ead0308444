"""market.scoring: sub-scores, eligibility, ranking and shortfalls (no sockets, no chain)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.offers import GIB, Ask
from market.scoring import (
    ProviderView,
    Reputation,
    ScoreParams,
    candidates,
    collateral_score,
    fault_score,
    latency_score,
    market_params,
    price_score,
    proof_score,
    rank,
    reputation_score,
    score,
    shortfall,
    space_score,
)

MIB = 1 << 20


def ask(price: int = 100, collateral: int = 1000, free: int = 10 * GIB, **kw: int) -> Ask:
    fields = {
        "provider": b"\x01" * 20,
        "chain_id": 31337,
        "market": b"\x02" * 20,
        "price_per_gib_period": price,
        "collateral_per_gib": collateral,
        "min_piece_size": 1,
        "max_piece_size": 64 * GIB,
        "max_periods": 1000,
        "free_bytes": free,
        "issued_at": 1,
    }
    fields.update(kw)
    return Ask(**fields)  # type: ignore[arg-type]


def view(name: str, **kw: object) -> ProviderView:
    base = ProviderView(
        address=name,
        node_id=name.encode().ljust(32, b"\0"),
        addrs=(("127.0.0.1", 1),),
        ask=ask(),
        stake=10**24,
        free_stake=10**24,
        latency=0.01,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


PARAMS = ScoreParams(price_ref=100, collateral_ref=1000, latency_ref=0.1, min_stake=0)


def test_sub_scores_are_one_half_at_their_reference() -> None:
    assert price_score(100, 100) == pytest.approx(0.5)
    assert latency_score(0.1, 0.1) == pytest.approx(0.5)
    assert space_score(4 * MIB, MIB) == pytest.approx(0.5)
    assert fault_score(1, 0) == pytest.approx(0.5)
    assert collateral_score(1000, 1000) == pytest.approx(1.1 / 2.1)


def test_sub_scores_move_the_right_way() -> None:
    assert price_score(50, 100) > price_score(100, 100) > price_score(200, 100)
    assert price_score(0, 100) == 1.0
    assert collateral_score(4000, 1000) > collateral_score(1000, 1000) > collateral_score(0, 1000)
    assert collateral_score(0, 1000) > 0  # no collateral is bad, not disqualifying
    assert proof_score(10, 0) == 1.0 > proof_score(10, 1) > proof_score(10, 5)
    assert proof_score(0, 0) == 1.0  # a newcomer is not punished
    assert fault_score(0, 0) == 1.0 > fault_score(0, 1) > fault_score(1, 0)
    assert latency_score(None, 0.1) == 0.0
    assert latency_score(0.001, 0.1) > latency_score(0.5, 0.1)
    assert space_score(100 * MIB, MIB) > space_score(2 * MIB, MIB)


def test_reputation_score() -> None:
    assert reputation_score(Reputation()) == 1.0
    good = reputation_score(Reputation(retrieval_success=1.0, retrieval_checks=50))
    bad = reputation_score(Reputation(retrieval_success=0.5, retrieval_checks=50))
    few = reputation_score(Reputation(retrieval_success=0.0, retrieval_checks=1))
    assert good == pytest.approx(1.0)
    assert bad < few < good  # one failed check weighs less than fifty
    assert reputation_score(Reputation(alarms=1)) == 0.5


@given(st.integers(0, 10**30), st.integers(1, 10**30), st.integers(0, 10**6), st.integers(0, 10**6))
def test_every_sub_score_is_within_zero_and_one(price: int, ref: int, a: int, b: int) -> None:
    for value in (
        price_score(price, ref),
        collateral_score(price, ref),
        proof_score(a, b),
        fault_score(a % 50, b % 50),
        space_score(price, ref),
        latency_score(a / 1000, 0.1),
    ):
        assert 0.0 <= value <= 1.0


def test_the_score_is_the_product_of_the_parts() -> None:
    s = score(view("0xa"), MIB, 10, PARAMS)
    product = 1.0
    for value in s.parts.values():
        product *= value
    assert s.total == pytest.approx(product)
    assert set(s.parts) == {"price", "collateral", "proofs", "faults", "latency", "space"}
    assert s.price_per_period == -(-MIB * 100 // GIB)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"ask": None}, "no ask in the DHT"),
        ({"active": False}, "exiting"),
        ({"latency": None}, "unreachable"),
        ({"ask": ask(free=MIB - 1)}, "not enough free space"),
        ({"ask": ask(max_piece_size=MIB - 1)}, "piece size outside its range"),
        ({"ask": ask(max_periods=5)}, "deal longer than it takes"),
        ({"free_stake": 0}, "free stake below the collateral"),
    ],
)
def test_ineligible_providers_say_why(change: dict[str, object], problem: str) -> None:
    s = score(view("0xa", **change), MIB, 10, PARAMS)
    assert not s.eligible
    assert problem in s.problems


def test_price_cap() -> None:
    cheap, dear = view("0xa", ask=ask(price=50)), view("0xb", ask=ask(price=500))
    ranking = rank([cheap, dear], MIB, 10, PARAMS, max_price=100)
    assert [s.provider.address for s in candidates(ranking)] == ["0xa"]
    gap = shortfall(ranking, 2)
    assert gap.eligible == 1 and gap.priced_out == 1
    assert gap.reasons == {"above the price cap": 1}


def test_ranking_prefers_cheap_reliable_near_providers() -> None:
    views = [
        view("0xdear", ask=ask(price=400)),
        view("0xgood"),
        view("0xflaky", proofs=10, missed=5),
        view("0xfar", latency=2.0),
        view("0xgone", latency=None),
    ]
    params = market_params(views, 0.1, 0)
    ranking = rank(views, MIB, 10, params)
    order = [s.provider.address for s in ranking]
    assert order[0] == "0xgood"
    assert order[-1] == "0xgone"  # ineligible last
    assert "0xgood" not in [s.provider.address for s in candidates(ranking, exclude={"0XGOOD"})]


def test_ties_break_by_address() -> None:
    ranking = rank([view("0xb"), view("0xa")], MIB, 10, PARAMS)
    assert [s.provider.address for s in ranking] == ["0xa", "0xb"]


def test_market_params_are_medians() -> None:
    views = [
        view(f"0x{i}", ask=ask(price=p, collateral=c))
        for i, (p, c) in enumerate([(10, 1), (30, 3), (20, 2)])
    ]
    params = market_params([*views, view("0xnone", ask=None)], 0.1, 7)
    assert (params.price_ref, params.collateral_ref, params.min_stake) == (20, 2, 7)
    assert market_params([], 0.1, 0).price_ref == 0


def test_shortfall_message_names_the_reasons() -> None:
    ranking = rank([view("0xa", latency=None), view("0xb", ask=None)], MIB, 10, PARAMS)
    message = shortfall(ranking, 3).message()
    assert "3 distinct providers needed, 0 eligible of 2 found" in message
    assert "unreachable" in message and "no ask in the DHT" in message
    assert "no providers found" in shortfall([], 1).message()
