# pragma version ~=0.4.3
"""
@title Depot storage market
@license MIT
@notice Providers stake and register (registry.vy), accept clients' EIP-712 deal proposals
        (deals.vy), prove all their deals in one transaction per period (proving.vy), get
        paid per proven period and slashed per missed one; anyone can report a missed proof
        for a bounty. docs/protocol-ledger.md describes the protocol in full.
@dev This contract only wires the modules together; each module owns one concern.
"""
from ethereum.ercs import IERC20

import clock
import registry
import sumtree
import proving
import deals
from interfaces import IStorageMarket

implements: IStorageMarket

initializes: clock
initializes: registry[clock := clock]
initializes: sumtree
initializes: proving[clock := clock, registry := registry, sumtree := sumtree]
initializes: deals[clock := clock, registry := registry, proving := proving]

exports: (
    clock.__interface__,
    registry.__interface__,
    proving.__interface__,
    deals.__interface__,
)


@deploy
def __init__(
    token: IERC20,
    period_blocks: uint256,
    challenges: uint256,
    min_stake: uint256,
    unbonding_periods: uint256,
    max_consecutive_misses: uint256,
    miss_slash_bps: uint256,
    bounty_bps: uint256,
    max_piece_size: uint256,
):
    """
    @notice Deploy a market; period 0 starts at the deployment block.
    @param token ERC-20 of stakes, escrows and payments.
    @param period_blocks Blocks per proving period, in [2, 256].
    @param challenges Leaves challenged per provider per period (46 by default).
    @param min_stake Stake a provider keeps free of deal locks (its fault bond).
    @param unbonding_periods Periods between an exit request and the withdrawal.
    @param max_consecutive_misses Missed periods in a row that terminate a data set.
    @param miss_slash_bps Share of a deal's collateral slashed per missed period.
    @param bounty_bps Share of each missed period's slash paid to the reporter.
    @param max_piece_size Largest piece a deal may commit to, in bytes.
    """
    clock.__init__(period_blocks)
    registry.__init__(token, min_stake, unbonding_periods)
    proving.__init__(challenges, max_consecutive_misses, miss_slash_bps, bounty_bps)
    deals.__init__(max_piece_size)


@external
@nonreentrant
def withdraw() -> uint256:
    """
    @notice Withdraw the caller's whole stake after its exit: `unbonding_periods` after the
            request, with every deal settled and no piece left in its challenge set.
    @return The amount paid out.
    """
    registry._require_withdrawable(msg.sender)
    proving._roll(msg.sender)
    s: proving.types.ProvingState = proving.states[msg.sender]
    assert s.live_leaves == 0 and s.pending_leaves == 0, "market: pieces still challenged"
    return registry._withdraw(msg.sender)
