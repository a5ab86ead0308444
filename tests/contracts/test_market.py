"""StorageMarket.vy: constructor checks and the clock views (the rest: one file per module)."""

import pytest
from ledger_helpers import TEST_PARAMS, reverts

ZERO = "0x" + "00" * 20


@pytest.mark.parametrize(
    ("index", "value", "reason"),
    [
        (0, 1, "clock: period too short"),
        (0, 257, "clock: period longer than 256 blocks"),
        (1, 0, "proving: challenges out of range"),
        (1, 65, "proving: challenges out of range"),
        (4, 0, "proving: max misses out of range"),
        (4, 65, "proving: max misses out of range"),
        (5, 10_001, "proving: slash above 100%"),
        (6, 10_001, "proving: bounty above 100%"),
        (7, 0, "deals: zero max piece size"),
        (7, 2**50 + 1, "deals: max piece size beyond proof depth"),
    ],
)
def test_constructor_rejects_bad_parameters(ledger, index, value, reason):
    args = list(TEST_PARAMS.constructor_args())
    args[index] = value
    with reverts(reason):
        ledger.project.StorageMarket.deploy(ledger.token, *args, {"from": ledger.accounts[0]})


def test_constructor_needs_a_token(ledger):
    with reverts("registry: token is the zero address"):
        ledger.project.StorageMarket.deploy(
            ZERO, *TEST_PARAMS.constructor_args(), {"from": ledger.accounts[0]}
        )


def test_parameters_read_back(ledger):
    m = ledger.market
    assert m.token() == ledger.token
    got = (
        m.period_blocks(),
        m.challenges(),
        m.min_stake(),
        m.unbonding_periods(),
        m.max_consecutive_misses(),
        m.miss_slash_bps(),
        m.bounty_bps(),
        m.max_piece_size(),
    )
    assert got == TEST_PARAMS.constructor_args()


def test_clock(ledger):
    m = ledger.market
    genesis = m.genesis()
    assert m.period_start(0) == genesis
    assert m.period_start(3) == genesis + 3 * TEST_PARAMS.period_blocks
    head = ledger.web3.eth.block_number
    assert m.current_period() == (head - genesis) // TEST_PARAMS.period_blocks


def test_deal_stop_of_an_unknown_deal(ledger):
    with reverts("deals: unknown deal"):
        ledger.market.deal_stop(1)
