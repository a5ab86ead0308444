"""
Payments and penalties: the reference specification of the ledger's arithmetic.

Deals are settled lazily and per deal (``contracts/src/deals.vy``), from the provider's
bitmaps of proven and reported periods (``contracts/src/proving.vy``). This module is the
readable statement of that arithmetic; the contract tests replay random histories through
both and compare every transfer.

Money of a deal:

- The escrow, ``price_per_period * periods``, is pulled from the client at acceptance. Each
  settled period pays its price to the provider if the period was proven and refunds it to
  the client if not. At the final settlement the price of the periods after the deal's stop
  (termination or loss) returns to the client.
- The collateral is a lock on the provider's stake. Each missed period slashes
  ``slash_per_miss = collateral * miss_slash_bps // BPS`` of it, capped at what remains.
  Of each *reported* missed period, ``bounty_per_miss = slash_per_miss * bounty_bps // BPS``
  went to the reporter at report time (paid out of the stake by ``report_fault``); the rest
  of the slash goes to the client at settlement. On termination or loss the remaining
  collateral is forfeit to the client; at a normal end it is released.
- Every payment out of the stake is capped at the stake: the stake is one pool, and a
  provider whose stake is exhausted pays no more.

A period is settled only once its report window has closed (two periods after it began),
so that a late report can never make a period's bounty and full compensation both due.
``settled_through`` only moves forward: no period is ever paid twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

BPS: Final = 10_000
"""Basis points in one: shares are given in units of 1/10,000."""

PERIODS_PER_WORD: Final = 256
"""Periods per bitmap word of proven/reported periods."""

MAX_SETTLE_WORDS: Final = 4
"""One settlement step covers periods within at most this many bitmap words after the first
unsettled period's word (1,024 periods): a deal left unsettled longer settles in steps."""


class AccountingError(ValueError):
    """Parameters outside their domain (a share above 100%, a negative amount)."""


def slash_per_miss(collateral: int, miss_slash_bps: int) -> int:
    """Collateral slashed per missed period of a deal."""
    if not 0 <= miss_slash_bps <= BPS:
        raise AccountingError(f"miss slash {miss_slash_bps} bps outside [0, {BPS}]")
    return collateral * miss_slash_bps // BPS


def bounty_per_miss(collateral: int, miss_slash_bps: int, bounty_bps: int) -> int:
    """The part of a deal's per-miss slash that goes to whoever reports the miss."""
    if not 0 <= bounty_bps <= BPS:
        raise AccountingError(f"bounty {bounty_bps} bps outside [0, {BPS}]")
    return slash_per_miss(collateral, miss_slash_bps) * bounty_bps // BPS


def fault_bounty(live_bounties: Collection[int], stake: int) -> int:
    """
    What ``report_fault`` pays for one missed period.

    Parameters
    ----------
    live_bounties :
        ``bounty_per_miss`` of every deal live in the missed period.
    stake :
        The provider's stake when the report lands.
    """
    return min(sum(live_bounties), stake)


def deal_stop(end: int, epoch_end: int = 0, loss_end: int = 0) -> int:
    """
    First period a deal no longer covers: its end, or earlier when its provider's data set
    was terminated (``epoch_end``) or the provider declared the piece lost (``loss_end``);
    0 means "did not happen".
    """
    stop = end
    if epoch_end:
        stop = min(stop, epoch_end)
    if loss_end:
        stop = min(stop, loss_end)
    return stop


def closed_before(current: int) -> int:
    """Periods below this one have had both their proof and report windows close."""
    return max(current - 1, 0)


def count_in(periods: Collection[int], first: int, stop: int) -> int:
    """How many of ``periods`` lie in ``[first, stop)``."""
    return sum(1 for p in periods if first <= p < stop)


@dataclass(frozen=True)
class DealBook:
    """The settlement-relevant part of a deal's on-chain record."""

    price_per_period: int
    collateral: int
    start: int
    end: int
    slashed: int = 0
    """Collateral taken so far (slashes and forfeit)."""
    settled_through: int = 0
    """Periods below this are settled; 0 reads as ``start``."""
    closed: bool = False


@dataclass(frozen=True)
class Settlement:
    """One settlement step of one deal: what moves where."""

    from_period: int
    to_period: int
    """The step covered periods ``[from_period, to_period)``."""
    proven: int
    missed: int
    reported: int
    provider_paid: int
    """Escrow paid to the provider: ``proven * price``."""
    client_refund: int
    """Escrow returned to the client: missed periods, plus the unused tail when final."""
    compensation_due: int
    """Owed to the client out of the stake (slash less the reporters' share; forfeit)."""
    slashed: int
    """Collateral consumed by this step (the reporters' and the client's shares)."""
    released: int
    """Lock released from the provider's stake by this step."""
    final: bool
    """The deal is closed after this step."""


def settle_deal(
    book: DealBook,
    *,
    stop: int,
    current: int,
    proven: Collection[int],
    reported: Collection[int],
    miss_slash_bps: int,
    bounty_bps: int,
) -> Settlement | None:
    """
    The next settlement step of a deal, or ``None`` when there is nothing to settle.

    Parameters
    ----------
    book :
        The deal's record.
    stop :
        ``deal_stop`` of the deal.
    current :
        The current period.
    proven, reported :
        The provider's proven and reported periods.
    miss_slash_bps, bounty_bps :
        The market's penalty parameters.
    """
    if book.closed:
        return None
    first = max(book.settled_through, book.start)
    closed = closed_before(current)
    word_limit = (first // PERIODS_PER_WORD + MAX_SETTLE_WORDS) * PERIODS_PER_WORD
    last = min(stop, closed, word_limit)
    final = stop <= closed and max(first, last) >= stop
    if last <= first and not final:
        return None

    n_proven = n_reported = n_missed = slashed = compensation = 0
    if last > first:
        n_proven = count_in(proven, first, last)
        n_reported = count_in(reported, first, last)
        n_missed = last - first - n_proven
        slashed = min(
            n_missed * slash_per_miss(book.collateral, miss_slash_bps),
            book.collateral - book.slashed,
        )
        bounties = min(
            n_reported * bounty_per_miss(book.collateral, miss_slash_bps, bounty_bps), slashed
        )
        compensation = slashed - bounties
    refund = n_missed * book.price_per_period
    released = slashed
    if final:
        refund += (book.end - max(first, last)) * book.price_per_period
        remaining = book.collateral - book.slashed - slashed
        if stop < book.end:
            slashed += remaining
            compensation += remaining
        released += remaining
    return Settlement(
        from_period=first,
        to_period=max(first, last),
        proven=n_proven,
        missed=n_missed,
        reported=n_reported,
        provider_paid=n_proven * book.price_per_period,
        client_refund=refund,
        compensation_due=compensation,
        slashed=slashed,
        released=released,
        final=final,
    )


def apply_settlement(book: DealBook, step: Settlement) -> DealBook:
    """The deal's record after ``step``."""
    return dataclasses.replace(
        book,
        slashed=book.slashed + step.slashed,
        settled_through=max(book.settled_through, step.to_period)
        if step.to_period > step.from_period
        else book.settled_through,
        closed=step.final,
    )


def take_from_stake(stake: int, amount: int) -> tuple[int, int]:
    """
    Take ``amount`` out of a stake, capped at the stake.

    Returns
    -------
    (taken, stake_after) : tuple[int, int]
    """
    if amount < 0 or stake < 0:
        raise AccountingError("negative amount or stake")
    taken = min(amount, stake)
    return taken, stake - taken
