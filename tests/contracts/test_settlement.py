"""Settlement on chain against contracts/spec/accounting.py, transfer by transfer."""

from ledger_helpers import (
    TEST_PARAMS,
    TOKEN,
    Piece,
    make_deal,
    mine,
    next_period,
    prove,
    register,
    reverts,
    settle_and_check,
)


def test_a_deal_from_acceptance_to_close(ledger, rng):
    """Proven, missed-and-reported and missed-unreported periods, settled as it goes."""
    provider, client, reporter = ledger.accounts[1], ledger.accounts[2], ledger.accounts[5]
    register(ledger, provider)
    piece = Piece.random(6 * 1024 + 9, rng)
    pieces = {piece.root: piece}
    deal_id = make_deal(ledger, client, provider, piece, periods=6, price=7 * TOKEN)
    plan = ["prove", "miss-report", "prove", "miss", "prove", "prove"]
    for i, what in enumerate(plan):
        period = next_period(ledger.web3, ledger.market)
        if i and plan[i - 1] == "miss-report":
            ledger.market.report_fault(provider, period - 1, {"from": reporter})
        if what == "prove":
            prove(ledger, provider, pieces, period)
        settle_and_check(ledger, deal_id, client)
    results = []
    for _ in range(3):
        next_period(ledger.web3, ledger.market)
        results.append(settle_and_check(ledger, deal_id, client))
    assert any(r and r.final for r in results)
    assert ledger.market.deal(deal_id)[11] is True  # closed
    assert ledger.market.providers(provider)[2] == 0  # nothing locked
    with reverts("deals: nothing to settle"):
        ledger.market.settle(deal_id, {"from": client})


def test_termination_forfeits_the_collateral(ledger, rng):
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger, provider)
    piece = Piece.random(2048, rng)
    deal_id = make_deal(ledger, client, provider, piece, periods=10, collateral=60 * TOKEN)
    for _ in range(TEST_PARAMS.max_consecutive_misses + 1):
        next_period(ledger.web3, ledger.market)
    tx = ledger.market.report_fault(
        provider, ledger.market.current_period() - 1, {"from": ledger.accounts[5]}
    )
    assert "ProviderTerminated" in tx.events
    next_period(ledger.web3, ledger.market)
    step = settle_and_check(ledger, deal_id, ledger.accounts[6])
    assert step.final and step.slashed == 60 * TOKEN


def test_declared_loss(ledger, rng):
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger, provider)
    piece = Piece.random(2048, rng)
    pieces = {piece.root: piece}
    deal_id = make_deal(ledger, client, provider, piece, periods=10, collateral=40 * TOKEN)
    period = next_period(ledger.web3, ledger.market)
    prove(ledger, provider, pieces, period)
    ledger.market.declare_loss(deal_id, {"from": provider})
    prove_period = next_period(ledger.web3, ledger.market)
    assert ledger.market.proving_state(provider)[2] == 0
    assert prove_period == period + 1
    next_period(ledger.web3, ledger.market)
    step = settle_and_check(ledger, deal_id, client)
    assert step.final and step.proven == 1 and step.client_refund == 9 * 10 * TOKEN


def test_payouts_stop_at_an_empty_stake(ledger, rng):
    """A 100% slash market: the stake runs out before the client is made whole."""
    args = list(TEST_PARAMS.constructor_args())
    args[5] = 10_000  # miss_slash_bps
    market = ledger.project.StorageMarket.deploy(ledger.token, *args, {"from": ledger.accounts[0]})
    ledger2 = type(ledger)(**{**ledger.__dict__, "market": market})
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger2, provider, stake=300 * TOKEN)
    piece = Piece.random(1024, rng)
    deal_id = make_deal(ledger2, client, provider, piece, periods=3, collateral=200 * TOKEN)
    period = next_period(ledger.web3, market)
    next_period(ledger.web3, market)
    market.report_fault(provider, period, {"from": ledger.accounts[5]})  # bounty 100
    # Stake 200 left, collateral 200 slashed: 100 to the reporter (paid), 100 to the client.
    for _ in range(5):
        next_period(ledger.web3, market)
        settle_and_check(ledger2, deal_id, client)
    assert market.deal(deal_id)[11] is True
    assert market.providers(provider)[2] == 0


def test_long_unsettled_deals_settle_in_steps(ledger, rng):
    """1,100 periods: more than one settlement step (4 bitmap words of 256 periods)."""
    args = list(TEST_PARAMS.constructor_args())
    args[0] = 2  # period_blocks
    market = ledger.project.StorageMarket.deploy(ledger.token, *args, {"from": ledger.accounts[0]})
    ledger2 = type(ledger)(**{**ledger.__dict__, "market": market})
    provider, client = ledger.accounts[1], ledger.accounts[2]
    register(ledger2, provider)
    piece = Piece.random(1024, rng)
    deal_id = make_deal(ledger2, client, provider, piece, periods=1_100, price=1, collateral=0)
    period = next_period(ledger.web3, market)
    prove(ledger2, provider, {piece.root: piece}, period)
    mine(ledger.web3, 2 * 1_110)
    first = settle_and_check(ledger2, deal_id, client)
    assert not first.final and first.to_period == 1024
    second = settle_and_check(ledger2, deal_id, client)
    assert second.final and second.to_period == 1_100 + first.from_period
