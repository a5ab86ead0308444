"""registry.vy (and the market's withdraw): registration, stake, exit, withdrawal."""

import pytest
from ledger_helpers import (
    MAX_UINT,
    TEST_PARAMS,
    TOKEN,
    Piece,
    make_deal,
    next_period,
    register,
    reverts,
)

ACTIVE, EXITING, WITHDRAWN = 1, 2, 4


def provider_record(ledger, account):
    node_id, stake, locked, open_deals, status, exit_period = ledger.market.providers(account)
    return {
        "node_id": bytes(node_id),
        "stake": stake,
        "locked": locked,
        "open_deals": open_deals,
        "status": status,
        "exit_period": exit_period,
    }


def test_register_pulls_stake_and_records(ledger):
    p = ledger.accounts[1]
    before = ledger.token.balanceOf(p)
    tx = register(ledger, p, stake=300 * TOKEN, node_id=b"\x42" * 32)
    rec = provider_record(ledger, p)
    assert rec == {
        "node_id": b"\x42" * 32,
        "stake": 300 * TOKEN,
        "locked": 0,
        "open_deals": 0,
        "status": ACTIVE,
        "exit_period": 0,
    }
    assert ledger.token.balanceOf(p) == before - 300 * TOKEN
    assert ledger.token.balanceOf(ledger.market) == 300 * TOKEN
    assert ledger.market.node_owner(b"\x42" * 32) == p
    assert ledger.market.endpoints(p).startswith("127.0.0.1:")
    event = tx.events["ProviderRegistered"]
    assert event["provider"] == p and event["stake"] == 300 * TOKEN
    assert ledger.market.free_stake(p) == 300 * TOKEN


@pytest.mark.parametrize(
    ("node_id", "endpoint", "stake", "reason"),
    [
        (b"\x00" * 32, "h:1", 100 * TOKEN, "registry: empty node id"),
        (b"\x01" * 32, "", 100 * TOKEN, "registry: empty endpoint"),
        (b"\x01" * 32, "h:1", 100 * TOKEN - 1, "registry: stake below minimum"),
    ],
)
def test_register_rejects_bad_input(ledger, node_id, endpoint, stake, reason):
    p = ledger.accounts[1]
    ledger.token.approve(ledger.market, MAX_UINT, {"from": p})
    with reverts(reason):
        ledger.market.register(node_id, endpoint, stake, {"from": p})


def test_register_once_per_address_and_node_id(ledger):
    a, b = ledger.accounts[1], ledger.accounts[2]
    register(ledger, a, node_id=b"\x07" * 32)
    with reverts("registry: already registered"):
        register(ledger, a, node_id=b"\x08" * 32)
    with reverts("registry: node id taken"):
        register(ledger, b, node_id=b"\x07" * 32)


def test_register_needs_allowance(ledger):
    p = ledger.accounts[1]
    with reverts("token: insufficient allowance"):
        ledger.market.register(b"\x01" * 32, "h:1", 100 * TOKEN, {"from": p})


def test_top_up(ledger):
    p = ledger.accounts[1]
    register(ledger, p, stake=100 * TOKEN)
    tx = ledger.market.top_up(50 * TOKEN, {"from": p})
    assert dict(tx.events["StakeAdded"]) == {
        "provider": p,
        "amount": 50 * TOKEN,
        "stake": 150 * TOKEN,
    }
    assert provider_record(ledger, p)["stake"] == 150 * TOKEN
    with reverts("registry: zero amount"):
        ledger.market.top_up(0, {"from": p})
    with reverts("registry: not a provider"):
        ledger.market.top_up(1, {"from": ledger.accounts[2]})


def test_update_endpoint(ledger):
    p = ledger.accounts[1]
    register(ledger, p)
    tx = ledger.market.update_endpoint("10.0.0.1:9000", {"from": p})
    assert tx.events["EndpointUpdated"]["endpoint"] == "10.0.0.1:9000"
    assert ledger.market.endpoints(p) == "10.0.0.1:9000"
    with reverts("registry: empty endpoint"):
        ledger.market.update_endpoint("", {"from": p})
    with reverts("registry: not a provider"):
        ledger.market.update_endpoint("x:1", {"from": ledger.accounts[2]})


def test_exit_and_withdraw_after_unbonding(ledger):
    p = ledger.accounts[1]
    register(ledger, p, stake=200 * TOKEN)
    with reverts("registry: exit not requested"):
        ledger.market.withdraw({"from": p})
    tx = ledger.market.request_exit({"from": p})
    exit_period = tx.events["ExitRequested"]["period"]
    assert provider_record(ledger, p)["status"] == EXITING
    with reverts("registry: not an active provider"):
        ledger.market.request_exit({"from": p})
    with reverts("registry: still unbonding"):
        ledger.market.withdraw({"from": p})
    while ledger.market.current_period() < exit_period + TEST_PARAMS.unbonding_periods:
        next_period(ledger.web3, ledger.market)
    before = ledger.token.balanceOf(p)
    tx = ledger.market.withdraw({"from": p})
    assert tx.return_value == 200 * TOKEN
    assert dict(tx.events["StakeWithdrawn"]) == {"provider": p, "amount": 200 * TOKEN}
    assert ledger.token.balanceOf(p) == before + 200 * TOKEN
    rec = provider_record(ledger, p)
    assert rec["status"] == WITHDRAWN and rec["stake"] == 0
    with reverts("registry: exit not requested"):
        ledger.market.withdraw({"from": p})
    with reverts("registry: already registered"):
        register(ledger, p, node_id=b"\x09" * 32)
    with reverts("registry: not a provider"):
        ledger.market.top_up(1, {"from": p})


def test_exiting_provider_takes_no_deals(ledger, rng):
    p, c = ledger.accounts[1], ledger.accounts[2]
    register(ledger, p)
    ledger.market.request_exit({"from": p})
    with reverts("registry: provider not active"):
        make_deal(ledger, c, p, Piece.random(2000, rng))


def test_locked_stake_cannot_leave(ledger, rng):
    """Withdrawal waits for every deal to be settled and its piece to leave the set."""
    p, c = ledger.accounts[1], ledger.accounts[2]
    register(ledger, p, stake=500 * TOKEN)
    piece = Piece.random(3000, rng)
    deal_id = make_deal(ledger, c, p, piece, periods=1, collateral=200 * TOKEN)
    assert provider_record(ledger, p)["locked"] == 200 * TOKEN
    assert ledger.market.free_stake(p) == 300 * TOKEN
    ledger.market.request_exit({"from": p})
    for _ in range(TEST_PARAMS.unbonding_periods):
        next_period(ledger.web3, ledger.market)
    with reverts("registry: deals still open"):
        ledger.market.withdraw({"from": p})
    # The deal runs one period (unproven here) and closes two periods after it.
    deal = ledger.market.deal(deal_id)
    while ledger.market.current_period() < deal[6] + 1:
        next_period(ledger.web3, ledger.market)
    ledger.market.settle(deal_id, {"from": c})
    assert provider_record(ledger, p)["open_deals"] == 0
    assert provider_record(ledger, p)["locked"] == 0
    next_period(ledger.web3, ledger.market)
    tx = ledger.market.withdraw({"from": p})
    # The one period went unproven: 10% of the collateral went to the client.
    assert tx.return_value == 480 * TOKEN
    assert ledger.token.balanceOf(ledger.market) == 0


def test_withdraw_waits_for_retirement(ledger, rng):
    p, c = ledger.accounts[1], ledger.accounts[2]
    register(ledger, p)
    piece = Piece.random(3000, rng)
    deal_id = make_deal(ledger, c, p, piece, periods=1, collateral=10 * TOKEN)
    ledger.market.request_exit({"from": p})
    end = ledger.market.deal(deal_id)[6]
    while ledger.market.current_period() < end + 1:
        next_period(ledger.web3, ledger.market)
    # Unsettled: the piece is still challenged and the deal open.
    with reverts("registry: deals still open"):
        ledger.market.withdraw({"from": p})
    ledger.market.settle(deal_id, {"from": p})
    # Settled now, but its slot leaves the challenge set only at the next period.
    with reverts("market: pieces still challenged"):
        ledger.market.withdraw({"from": p})
    next_period(ledger.web3, ledger.market)
    ledger.market.withdraw({"from": p})


def test_roll_needs_a_provider(ledger):
    with reverts("registry: not a provider"):
        ledger.market.roll(ledger.accounts[3], {"from": ledger.accounts[3]})
    register(ledger, ledger.accounts[3])
    next_period(ledger.web3, ledger.market)
    tx = ledger.market.roll(ledger.accounts[3], {"from": ledger.accounts[4]})
    assert tx.events["PeriodRolled"]["period"] == ledger.market.current_period()
