"""
Ranking providers: eligibility for one piece, and a score that is a product of sub-scores.

Sans-I/O: every input (the provider's ask, registry record, recent proof history, measured
round trip, the auditor's reputation) is gathered elsewhere (``market.discovery``) and
passed in; this module only computes. Like Sia's host score (renter/hostdb, "hostweight"),
the score is a *product* of sub-scores in (0, 1]: a provider must be good on every axis,
and one very bad axis sinks it whatever the others say. docs/market.md has the table.

====================  ===========================================================  =======
sub-score             formula                                                      = 0.5 at
====================  ===========================================================  =======
price                 1 / (1 + (p / p_med)^2), p = ask price per GiB per period    median
collateral            (c + 0.1 c_med) / (c + 1.1 c_med), c = collateral per GiB    ~median
proofs                ((proven + 1) / (proven + missed + 1))^3 over the window      26% missed
faults                0.5^terminations * 0.75^declared_losses over the history       1 termination
latency               1 / (1 + rtt / rtt_ref)                                      rtt_ref
space                 x / (x + 4), x = free bytes / piece size                      x = 4
reputation            auditor retrieval success, smoothed, squared; x0.5 on alarm    ~71%
====================  ===========================================================  =======

Medians are over the candidates being ranked, so the price and collateral sub-scores are
relative to the market at the time of asking (a provider at the median price scores 0.5 on
price whatever the token's value). The ``+ 1`` in the proof ratio is a Laplace-style prior:
a new provider with no history starts at 1, one missed period out of ten costs 25%.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from contracts.offers import Ask, price_for

PRICE_EXPONENT: Final = 2.0
COLLATERAL_FLOOR: Final = 0.1
"""A provider offering no collateral keeps this much of the median's weight (not zero)."""
PROOF_EXPONENT: Final = 3.0
"""Missed proofs are punished steeply: data that is not proven may not be there."""
TERMINATION_FACTOR: Final = 0.5
LOSS_FACTOR: Final = 0.75
SPACE_HALF: Final = 4.0
"""Free space of this many pieces gives half the space sub-score."""
ALARM_FACTOR: Final = 0.5
REPUTATION_PRIOR: Final = 2
"""Retrieval checks counted as successes before the first real one (a Beta prior), so
that one failed spot check does not sink a provider."""


@dataclass(frozen=True)
class Reputation:
    """What the auditor's export says about one provider (market.reputation)."""

    retrieval_success: float | None = None
    """Share of retrieval spot checks answered with verified data, in [0, 1]."""
    retrieval_checks: int = 0
    proof_success: float | None = None
    alarms: int = 0
    """Disagreements between the auditor's proof verdicts and the chain's."""


@dataclass(frozen=True)
class ProviderView:
    """Everything known about one provider, gathered from the DHT, the chain and pings."""

    address: str
    node_id: bytes
    addrs: tuple[tuple[str, int], ...]
    ask: Ask | None
    """Its current ask, if one was found in the DHT and checked."""
    ask_problem: str | None = None
    """Why a found ask was not usable (wrong market, signer not the registered node...)."""
    registered: bool = True
    active: bool = True
    """Registered and not exiting."""
    stake: int = 0
    free_stake: int = 0
    proofs: int = 0
    """Periods proven within the scoring window."""
    missed: int = 0
    """Periods reported as missed within the scoring window."""
    terminations: int = 0
    losses: int = 0
    latency: float | None = None
    """Measured round trip in seconds; ``None`` if it did not answer."""
    reputation: Reputation | None = None


@dataclass(frozen=True)
class ScoreParams:
    """The market-relative references and settings of one ranking."""

    price_ref: int
    collateral_ref: int
    latency_ref: float
    """Seconds."""
    min_stake: int
    """The ledger's minimum free stake a provider must keep beside its deals' collateral."""


@dataclass(frozen=True)
class Score:
    """A provider's rank for one piece: eligibility and every sub-score."""

    provider: ProviderView
    eligible: bool
    problems: tuple[str, ...]
    """Why it cannot take this piece (empty when eligible)."""
    price_per_period: int
    collateral: int
    parts: dict[str, float] = field(default_factory=dict)
    total: float = 0.0


def market_params(views: Iterable[ProviderView], latency_ref: float, min_stake: int) -> ScoreParams:
    """Medians of the asks among ``views`` (0 when there is no ask)."""
    asks = [v.ask for v in views if v.ask is not None]
    price = int(statistics.median(a.price_per_gib_period for a in asks)) if asks else 0
    coll = int(statistics.median(a.collateral_per_gib for a in asks)) if asks else 0
    return ScoreParams(price, coll, latency_ref, min_stake)


def eligibility(
    view: ProviderView,
    piece_size: int,
    periods: int,
    params: ScoreParams,
    max_price: int | None,
) -> list[str]:
    """
    Why ``view`` cannot take a piece of ``piece_size`` for ``periods`` (empty: it can).
    The reasons are short fixed phrases, so that a shortfall can count them.
    """
    problems: list[str] = []
    ask = view.ask
    if not view.registered:
        problems.append("not registered")
    elif not view.active:
        problems.append("exiting")
    if ask is None:
        problems.append(view.ask_problem or "no ask in the DHT")
        return problems
    if not ask.min_piece_size <= piece_size <= ask.max_piece_size:
        problems.append("piece size outside its range")
    if periods > ask.max_periods:
        problems.append("deal longer than it takes")
    if ask.free_bytes < piece_size:
        problems.append("not enough free space")
    collateral = price_for(piece_size, ask.collateral_per_gib)
    if view.free_stake < collateral + params.min_stake:
        problems.append("free stake below the collateral")
    if max_price is not None and ask.price_per_gib_period > max_price:
        problems.append("above the price cap")
    if view.latency is None:
        problems.append("unreachable")
    return problems


def sub_scores(view: ProviderView, piece_size: int, params: ScoreParams) -> dict[str, float]:
    """Every sub-score of ``view`` (module docstring); needs an ask."""
    ask = view.ask
    assert ask is not None
    parts = {
        "price": price_score(ask.price_per_gib_period, params.price_ref),
        "collateral": collateral_score(ask.collateral_per_gib, params.collateral_ref),
        "proofs": proof_score(view.proofs, view.missed),
        "faults": fault_score(view.terminations, view.losses),
        "latency": latency_score(view.latency, params.latency_ref),
        "space": space_score(ask.free_bytes, piece_size),
    }
    if view.reputation is not None:
        parts["reputation"] = reputation_score(view.reputation)
    return parts


def price_score(price: int, ref: int) -> float:
    if ref <= 0:
        return 1.0 if price <= 0 else 0.5
    ratio: float = price / ref
    return 1.0 / (1.0 + math.pow(ratio, PRICE_EXPONENT))


def collateral_score(collateral: int, ref: int) -> float:
    if ref <= 0:
        return 1.0
    return (collateral + COLLATERAL_FLOOR * ref) / (collateral + (1 + COLLATERAL_FLOOR) * ref)


def proof_score(proven: int, missed: int) -> float:
    return float(((proven + 1) / (proven + missed + 1)) ** PROOF_EXPONENT)


def fault_score(terminations: int, losses: int) -> float:
    return float(TERMINATION_FACTOR**terminations * LOSS_FACTOR**losses)


def latency_score(latency: float | None, ref: float) -> float:
    if latency is None:
        return 0.0
    return 1.0 / (1.0 + latency / ref)


def space_score(free_bytes: int, piece_size: int) -> float:
    x = free_bytes / max(piece_size, 1)
    return x / (x + SPACE_HALF)


def reputation_score(rep: Reputation) -> float:
    score = 1.0
    if rep.retrieval_success is not None:
        n = max(rep.retrieval_checks, 0)
        smoothed = (rep.retrieval_success * n + REPUTATION_PRIOR) / (n + REPUTATION_PRIOR)
        score = smoothed**2
    if rep.alarms > 0:
        score *= ALARM_FACTOR
    return score


def score(
    view: ProviderView,
    piece_size: int,
    periods: int,
    params: ScoreParams,
    max_price: int | None = None,
) -> Score:
    """Eligibility and score of one provider for one piece."""
    problems = eligibility(view, piece_size, periods, params, max_price)
    if view.ask is None:
        return Score(view, False, tuple(problems), 0, 0)
    parts = sub_scores(view, piece_size, params)
    total = 1.0
    for value in parts.values():
        total *= value
    return Score(
        view,
        not problems,
        tuple(problems),
        price_for(piece_size, view.ask.price_per_gib_period),
        price_for(piece_size, view.ask.collateral_per_gib),
        parts,
        total,
    )


def rank(
    views: Sequence[ProviderView],
    piece_size: int,
    periods: int,
    params: ScoreParams,
    max_price: int | None = None,
) -> list[Score]:
    """Every provider scored, eligible ones first, best first (ties: by address)."""
    scored = [score(v, piece_size, periods, params, max_price) for v in views]
    return sorted(scored, key=lambda s: (not s.eligible, -s.total, s.provider.address))


def candidates(ranking: Sequence[Score], exclude: Iterable[str] = ()) -> list[Score]:
    """The eligible providers in rank order, without those in ``exclude`` (addresses)."""
    skip = {a.lower() for a in exclude}
    return [s for s in ranking if s.eligible and s.provider.address.lower() not in skip]


@dataclass(frozen=True)
class Shortfall:
    """Why fewer than the needed providers are eligible (for a clear error)."""

    needed: int
    eligible: int
    discovered: int
    priced_out: int
    """Providers that would be eligible but for the price cap."""
    reasons: dict[str, int]
    """Problem -> number of providers with it."""

    def message(self) -> str:
        if self.discovered == 0:
            return "no providers found (none in the DHT and none reachable from the chain)"
        detail = ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items()))
        return (
            f"{self.needed} distinct providers needed, {self.eligible} eligible of "
            f"{self.discovered} found" + (f" ({detail})" if detail else "")
        )


def shortfall(ranking: Sequence[Score], needed: int, exclude: Iterable[str] = ()) -> Shortfall:
    """Count what keeps providers out, for the error when ``candidates`` is too short."""
    skip = {a.lower() for a in exclude}
    reasons: dict[str, int] = {}
    priced_out = 0
    eligible = 0
    for s in ranking:
        if s.provider.address.lower() in skip:
            reasons["already hold a share"] = reasons.get("already hold a share", 0) + 1
            continue
        if s.eligible:
            eligible += 1
            continue
        if s.problems == ("above the price cap",):
            priced_out += 1
        for p in s.problems:
            reasons[p] = reasons.get(p, 0) + 1
    return Shortfall(needed, eligible, len(ranking), priced_out, reasons)
