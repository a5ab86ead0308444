"""proving.vy: the proof transaction, fault reports, termination, retirement, views."""

import pytest
from ledger_helpers import (
    TEST_PARAMS,
    TOKEN,
    Piece,
    build_proofs,
    make_deal,
    mine,
    next_period,
    period_start,
    prove,
    register,
    reverts,
    to_window,
)

from contracts.spec import challenge
from contracts.spec.commitment import leaf_count


@pytest.fixture
def setup(ledger, rng):
    """A provider with two live deals (challenged from the current period on)."""
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger, provider, stake=1_000 * TOKEN)
    pieces = {}
    deals = []
    for size, collateral in ((3 * 1024 + 100, 50 * TOKEN), (7 * 1024, 30 * TOKEN)):
        piece = Piece.random(size, rng)
        pieces[piece.root] = piece
        deals.append(make_deal(ledger, client, provider, piece, periods=8, collateral=collateral))
    period = next_period(ledger.web3, ledger.market)
    return provider, client, pieces, deals, period


def test_proof_is_accepted_once(ledger, setup):
    provider, _, pieces, _, period = setup
    tx = prove(ledger, provider, pieces, period)
    event = dict(tx.events["ProofSubmitted"])
    assert event["provider"] == provider and event["period"] == period
    assert event["epoch"] == 0
    assert event["live_leaves"] == sum(p.leaves for p in pieces.values())
    assert bytes(event["seed"]) == bytes(
        ledger.web3.eth.get_block(period_start(ledger.market, period))["hash"]
    )
    assert ledger.market.is_proven(provider, period)
    assert not ledger.market.is_proven(provider, period + 1)
    with reverts("proving: period already proven"):
        prove(ledger, provider, pieces, period)


def test_proof_in_the_last_block_of_the_window(ledger, setup):
    provider, _, pieces, _, period = setup
    to_window(ledger.web3, ledger.market, period, offset=TEST_PARAMS.period_blocks - 1)
    prove(ledger, provider, pieces, period)
    assert ledger.market.is_proven(provider, period)


def test_proof_not_in_the_seed_block(ledger, setup):
    provider, _, _, _, period = setup
    to_window(ledger.web3, ledger.market, period + 1, offset=0)
    with reverts("proving: seed block not yet sealed"):
        ledger.market.submit_proof([], {"from": provider})


def test_proof_with_default_challenge_count(ledger, rng):
    """46 challenges (the protocol default) over a few pieces of odd sizes."""
    params = [46 if i == 1 else v for i, v in enumerate(TEST_PARAMS.constructor_args())]
    market = ledger.project.StorageMarket.deploy(
        ledger.token, *params, {"from": ledger.accounts[0]}
    )
    ledger_46 = type(ledger)(**{**ledger.__dict__, "market": market})
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger_46, provider)
    pieces = {}
    for size in (1, 1024, 33 * 1024 + 5):
        piece = Piece.random(size, rng)
        pieces[piece.root] = piece
        make_deal(ledger_46, client, provider, piece)
    period = next_period(ledger.web3, market)
    proofs = build_proofs(ledger.web3, market, provider.address, pieces, period)
    assert len(proofs) == 46
    market.submit_proof(proofs, {"from": provider})
    assert market.is_proven(provider, period)


def test_proof_needs_live_leaves(ledger, rng):
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger, provider)
    next_period(ledger.web3, ledger.market)
    with reverts("proving: nothing to prove"):
        ledger.market.submit_proof([], {"from": provider})
    # A deal accepted now is challenged from the next period on.
    make_deal(ledger, client, provider, Piece.random(2048, rng))
    with reverts("proving: nothing to prove"):
        ledger.market.submit_proof([], {"from": provider})


def test_proof_needs_every_challenge(ledger, setup):
    provider, _, pieces, _, period = setup
    proofs = build_proofs(ledger.web3, ledger.market, provider.address, pieces, period)
    with reverts("proving: wrong number of proofs"):
        ledger.market.submit_proof(proofs[:-1], {"from": provider})


@pytest.mark.parametrize("damage", ["leaf", "sibling", "short_path", "swap"])
def test_invalid_proofs_are_rejected(ledger, setup, damage):
    provider, _, pieces, _, period = setup
    proofs = build_proofs(ledger.web3, ledger.market, provider.address, pieces, period)
    leaf, path = proofs[3]
    if damage == "leaf":
        proofs[3] = (leaf[:-1] + bytes([leaf[-1] ^ 0x80]), path)
    elif damage == "sibling":
        proofs[3] = (leaf, [path[0][:-1] + bytes([path[0][-1] ^ 1]), *path[1:]])
    elif damage == "short_path":
        proofs[3] = (leaf, path[:-1])
    else:
        # A valid proof of another challenge is not a proof of this one.
        other = next(p for p in proofs if p[0] != leaf)
        proofs[3] = other
    with reverts("proving: invalid proof"):
        ledger.market.submit_proof(proofs, {"from": provider})
    assert not ledger.market.is_proven(provider, period)


def test_short_leaf_is_rejected(ledger, setup):
    provider, _, pieces, _, period = setup
    proofs = build_proofs(ledger.web3, ledger.market, provider.address, pieces, period)
    leaf, path = proofs[0]
    # The unpadded tail of a leaf is not the leaf: every leaf is exactly 1 KiB.
    proofs[0] = (leaf[:-1], path)
    with reverts("proving: invalid proof"):
        ledger.market.submit_proof(proofs, {"from": provider})


def test_report_fault_pays_the_bounty(ledger, setup):
    provider, _, _, _, period = setup
    reporter = ledger.accounts[5]
    market, token = ledger.market, ledger.token
    with reverts("proving: outside the report window"):
        market.report_fault(provider, period, {"from": reporter})
    assert market.fault_bounty(provider, period) == 0
    next_period(ledger.web3, market)
    # Per missed period: 10% of each deal's collateral, half of that to the reporter.
    expected = (50 + 30) * TOKEN // 10 // 2
    assert market.fault_bounty(provider, period) == expected
    stake_before = market.providers(provider)[1]
    reporter_before = token.balanceOf(reporter)
    tx = market.report_fault(provider, period, {"from": reporter})
    assert dict(tx.events["FaultReported"]) == {
        "provider": provider,
        "period": period,
        "reporter": reporter,
        "bounty": expected,
    }
    assert "ProviderTerminated" not in tx.events
    assert token.balanceOf(reporter) == reporter_before + expected
    assert market.providers(provider)[1] == stake_before - expected
    assert market.is_reported(provider, period)
    assert market.fault_bounty(provider, period) == 0
    with reverts("proving: fault already reported"):
        market.report_fault(provider, period, {"from": ledger.accounts[6]})


def test_report_window_is_one_period(ledger, setup):
    provider, _, _, _, period = setup
    next_period(ledger.web3, ledger.market)
    next_period(ledger.web3, ledger.market)
    assert ledger.market.fault_bounty(provider, period) == 0
    with reverts("proving: outside the report window"):
        ledger.market.report_fault(provider, period, {"from": ledger.accounts[5]})


def test_proven_period_cannot_be_reported(ledger, setup):
    provider, _, pieces, _, period = setup
    prove(ledger, provider, pieces, period)
    next_period(ledger.web3, ledger.market)
    assert ledger.market.fault_bounty(provider, period) == 0
    with reverts("proving: period was proven"):
        ledger.market.report_fault(provider, period, {"from": ledger.accounts[5]})


def test_unchallenged_period_cannot_be_reported(ledger, rng):
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger, provider)
    make_deal(ledger, client, provider, Piece.random(2048, rng))
    period = ledger.market.current_period()
    next_period(ledger.web3, ledger.market)
    with reverts("proving: nothing was challenged"):
        ledger.market.report_fault(provider, period, {"from": ledger.accounts[5]})


def test_bounty_is_capped_by_the_stake(ledger, rng):
    """Collateral locks the stake but faults eat into it: payouts stop at zero."""
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger, provider, stake=100 * TOKEN)
    # A 100%-slash, 100%-bounty market makes one report take the whole collateral.
    args = list(TEST_PARAMS.constructor_args())
    args[5], args[6] = 10_000, 10_000
    market = ledger.project.StorageMarket.deploy(ledger.token, *args, {"from": ledger.accounts[0]})
    ledger2 = type(ledger)(**{**ledger.__dict__, "market": market})
    register(ledger2, provider, stake=150 * TOKEN)
    make_deal(ledger2, client, provider, Piece.random(1024, rng), collateral=50 * TOKEN)
    make_deal(ledger2, client, provider, Piece.random(1024, rng), collateral=0)
    period = next_period(ledger.web3, market)
    next_period(ledger.web3, market)
    assert market.fault_bounty(provider, period) == 50 * TOKEN
    market.report_fault(provider, period, {"from": ledger.accounts[5]})
    assert market.providers(provider)[1] == 100 * TOKEN


def test_consecutive_misses_terminate(ledger, setup):
    provider, _, _, deals, first = setup
    market = ledger.market
    for _ in range(TEST_PARAMS.max_consecutive_misses):
        next_period(ledger.web3, market)
    missed = market.current_period() - 1
    assert missed == first + TEST_PARAMS.max_consecutive_misses - 1
    # Reporting only the last of the three misses is enough.
    tx = market.report_fault(provider, missed, {"from": ledger.accounts[5]})
    assert dict(tx.events["ProviderTerminated"]) == {
        "provider": provider,
        "epoch": 0,
        "end_period": missed + 1,
    }
    assert market.epoch_end(provider, 0) == missed + 1
    state = market.proving_state(provider)
    assert state[0] == 1 and state[2] == 0 and state[4] == 0
    for deal_id in deals:
        assert market.deal_stop(deal_id) == missed + 1
    with reverts("proving: nothing to prove"):
        market.submit_proof([], {"from": provider})


def test_a_proof_breaks_the_streak(ledger, setup):
    provider, _, pieces, _, first = setup
    market = ledger.market
    next_period(ledger.web3, market)  # first missed
    prove(ledger, provider, pieces)  # first + 1 proven
    next_period(ledger.web3, market)  # first + 2 missed
    next_period(ledger.web3, market)
    tx = market.report_fault(provider, first + 2, {"from": ledger.accounts[5]})
    assert "ProviderTerminated" not in tx.events


def test_streak_is_read_from_the_bitmap(ledger, setup):
    """A proof of the next period landing before the report does not cancel termination."""
    provider, _, pieces, _, _ = setup
    market = ledger.market
    for _ in range(TEST_PARAMS.max_consecutive_misses):
        next_period(ledger.web3, market)
    prove(ledger, provider, pieces)
    tx = market.report_fault(provider, market.current_period() - 1, {"from": ledger.accounts[5]})
    assert "ProviderTerminated" in tx.events


def test_streak_counts_only_challenged_periods(ledger, setup):
    provider, _, _, _, first = setup
    market = ledger.market
    # Two misses since the data set went live: below the limit of three.
    next_period(ledger.web3, market)
    next_period(ledger.web3, market)
    tx = market.report_fault(provider, first + 1, {"from": ledger.accounts[5]})
    assert "ProviderTerminated" not in tx.events


def test_terminated_provider_starts_a_new_epoch(ledger, setup, rng):
    provider, client, _, _, _ = setup
    market = ledger.market
    for _ in range(TEST_PARAMS.max_consecutive_misses):
        next_period(ledger.web3, market)
    market.report_fault(provider, market.current_period() - 1, {"from": ledger.accounts[5]})
    piece = Piece.random(4096, rng)
    deal_id = make_deal(ledger, client, provider, piece)
    d = market.deal(deal_id)
    assert d[7] == 1 and d[8] == 0  # epoch 1, slot 0
    period = next_period(ledger.web3, market)
    prove(ledger, provider, {piece.root: piece}, period)
    assert market.proving_state(provider)[2] == piece.leaves


def test_settling_in_the_last_period_retires_the_slot(ledger, rng):
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger, provider)
    short, long = Piece.random(2048, rng), Piece.random(5 * 1024, rng)
    pieces = {short.root: short, long.root: long}
    short_id = make_deal(ledger, client, provider, short, periods=1)
    make_deal(ledger, client, provider, long, periods=5)
    period = next_period(ledger.web3, ledger.market)  # the short deal's only period
    assert ledger.market.proving_state(provider)[2] == short.leaves + long.leaves
    tx = ledger.market.settle(short_id, {"from": provider})
    assert tx.events["SlotRetired"]["from_period"] == period + 1
    assert "DealSettled" not in tx.events
    prove(ledger, provider, pieces, period)
    period = next_period(ledger.web3, ledger.market)
    tx = prove(ledger, provider, pieces, period)
    assert tx.events["ProofSubmitted"]["live_leaves"] == long.leaves
    assert tx.events["PeriodRolled"]["retired_slots"] == 1
    assert ledger.market.locate(provider, 0) == (1, 0)


def test_retirements_per_period_are_bounded(ledger, rng):
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger, provider, stake=10_000 * TOKEN)
    piece = Piece.random(1024, rng)
    ids = [make_deal(ledger, client, provider, piece, periods=1, collateral=0) for _ in range(33)]
    next_period(ledger.web3, ledger.market)
    tx = ledger.market.settle_many(ids[:32], {"from": client})
    assert tx.return_value == 32
    # The 33rd slot cannot be queued this period: nothing to settle yet for it.
    with reverts("deals: nothing to settle"):
        ledger.market.settle(ids[32], {"from": client})
    next_period(ledger.web3, ledger.market)
    tx = ledger.market.settle(ids[32], {"from": client})
    assert tx.events["SlotRetired"]["deal_id"] == ids[32]
    assert ledger.market.proving_state(provider)[2] == 1


def test_seed_view(ledger, setup):
    _, _, _, _, period = setup
    market = ledger.market
    # Views run at the head block, which is the seed block itself right after next_period.
    with reverts("proving: seed block not yet sealed"):
        market.seed(period)
    mine(ledger.web3, 1)
    assert bytes(market.seed(period)) == bytes(
        ledger.web3.eth.get_block(period_start(market, period))["hash"]
    )
    with reverts("proving: seed block not yet sealed"):
        market.seed(period + 1)
    next_period(ledger.web3, market)
    ledger.web3.provider.make_request("anvil_mine", [hex(300)])
    with reverts("proving: seed block too old"):
        market.seed(period)


def test_locate_and_challenge_views_follow_the_spec(ledger, setup):
    provider, _, _, _, period = setup
    market = ledger.market
    sizes = [leaf_count(market.slot(provider, 0, i)[1]) for i in range(2)]
    for index in range(sum(sizes)):
        assert tuple(market.locate(provider, index)) == challenge.locate(index, sizes)
    with reverts("sumtree: index beyond the last slot"):
        market.locate(provider, sum(sizes))
    mine(ledger.web3, 1)
    seed = bytes(market.seed(period))
    for i in range(5):
        assert market.challenge_index(seed, provider, period, i, 1000) == challenge.challenge_index(
            seed, provider.address, period, i, 1000
        )
    with reverts("proving: empty leaf range"):
        market.challenge_index(seed, provider, period, 0, 0)
