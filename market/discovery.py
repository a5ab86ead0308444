"""
Finding providers: asks from the DHT, stake and history from the chain, latency from pings.

An ask is used only if every link of its chain of trust holds: the DHT record verifies
(Ed25519 over the record; node.kademlia.records) and its signer is a node id registered
with stake (the record policy); the ask names the chain and market of our deployment; and
the address the ask names registered exactly that node id on chain. So a provider cannot
advertise prices for someone else's stake, and an ask replayed from another market is
ignored. When a provider published several asks, the newest (``issued_at``) counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contracts.chain import ProviderInfo, ProviderStatus
from contracts.offers import ASKS_KEY, Ask
from market.ledger import History, provider_history
from market.network import Addr, endpoint_addrs
from market.reputation import ReputationUnavailable, load_reputation
from market.scoring import ProviderView, Reputation, ScoreParams, market_params
from node import wire
from node.errors import NodeError
from node.kademlia.messages import ProviderRecord

if TYPE_CHECKING:
    from market.session import Session

log = logging.getLogger("market.discovery")


@dataclass(frozen=True)
class Discovery:
    """The providers known right now, with what the score needs."""

    period: int
    views: list[ProviderView]
    params: ScoreParams
    notes: tuple[str, ...] = ()
    """Things the user should know (an unreadable reputation export...)."""

    def addresses(self) -> dict[str, tuple[Addr, ...]]:
        """Provider address (lowercase) -> where its node listens."""
        return {v.address.lower(): v.addrs for v in self.views}


@dataclass(frozen=True)
class CheckedAsk:
    ask: Ask
    addrs: tuple[Addr, ...]


def check_ask(
    record: ProviderRecord,
    info: ProviderInfo | None,
    chain_id: int,
    market: str,
) -> CheckedAsk | str:
    """The ask of a verified DHT record if it can be trusted, else why not."""
    try:
        ask = wire.decode(record.payload, "deal")
    except NodeError as exc:
        return f"undecodable ask: {exc}"
    if not isinstance(ask, Ask):
        return f"record payload is a {type(ask).__name__}, not an ask"
    if info is None:
        return "ask signed by an unregistered node"
    if ask.chain_id != chain_id or "0x" + ask.market.hex() != market.lower():
        return "ask for another market"
    if "0x" + ask.provider.hex() != info.address.lower():
        return "ask names another provider than the one that registered its signer"
    addrs = tuple((a.host, a.port) for a in record.addrs)
    return CheckedAsk(ask, addrs)


async def collect_asks(session: Session) -> tuple[dict[str, CheckedAsk], dict[str, str]]:
    """Newest trusted ask per provider address (lowercase), and problems per address."""
    node, directory = session.node, session.directory
    deployment = session.ledger.deployment
    try:
        async with asyncio.timeout(session.home.config.node.lookup_timeout):
            found = await node.kad.get_providers(ASKS_KEY)
        records: Sequence[ProviderRecord] = found.records
    except (TimeoutError, NodeError) as exc:
        log.warning("dht: ask lookup failed: %s", exc)
        records = ()
    asks: dict[str, CheckedAsk] = {}
    problems: dict[str, str] = {}
    for record in records:
        info = directory.by_node_id(record.node_id)
        checked = check_ask(record, info, deployment.chain_id, deployment.market)
        if info is None:
            continue
        key = info.address.lower()
        if isinstance(checked, str):
            problems.setdefault(key, checked)
            log.info("ask of %s refused: %s", info.address, checked)
            continue
        current = asks.get(key)
        if current is None or checked.ask.issued_at > current.ask.issued_at:
            asks[key] = checked
    return asks, problems


async def discover(session: Session, *, ping: bool = True) -> Discovery:
    """Every staked provider, with its ask, history, latency and reputation."""
    config = session.home.config
    chain, ledger = session.chain, session.ledger
    await chain.run(session.directory.refresh)
    providers = [
        p
        for p in session.directory.providers()
        if p.status & (ProviderStatus.ACTIVE | ProviderStatus.EXITING) and p.stake > 0
    ]
    session.node.policy.update(session.directory.staked_node_ids())
    (period, history), (asks, problems) = await asyncio.gather(
        chain.run(
            provider_history,
            ledger,
            config.scoring.window_periods,
            config.scoring.history_periods,
        ),
        collect_asks(session),
    )
    notes: list[str] = []
    reputation: dict[str, Reputation] = {}
    if config.scoring.reputation:
        try:
            reputation = await asyncio.to_thread(
                load_reputation,
                config.scoring.reputation,
                ledger.deployment.chain_id,
                ledger.deployment.market,
            )
        except ReputationUnavailable as exc:
            notes.append(f"{exc} (scoring without reputation)")

    addrs = {}
    for p in providers:
        checked = asks.get(p.address.lower())
        addrs[p.address.lower()] = (checked.addrs if checked else ()) or endpoint_addrs(p.endpoint)
    latencies: dict[str, float | None] = {}
    if ping:
        keys = [p.address.lower() for p in providers]
        results = await asyncio.gather(
            *(
                session.node.ping(p.node_id, addrs[k]) if addrs[k] else _none()
                for p, k in zip(providers, keys, strict=True)
            )
        )
        latencies = dict(zip(keys, results, strict=True))

    views = []
    for p in providers:
        key = p.address.lower()
        checked = asks.get(key)
        h = history.get(key, History())
        views.append(
            ProviderView(
                address=p.address,
                node_id=p.node_id,
                addrs=addrs[key],
                ask=checked.ask if checked else None,
                ask_problem=problems.get(key),
                registered=True,
                active=bool(p.status & ProviderStatus.ACTIVE),
                stake=p.stake,
                free_stake=p.free_stake,
                proofs=h.proofs,
                missed=h.missed,
                terminations=h.terminations,
                losses=h.losses,
                latency=latencies.get(key),
                reputation=reputation.get(key),
            )
        )
    params = market_params(
        views, config.scoring.latency_reference_ms / 1000, ledger.params.min_stake
    )
    return Discovery(period, views, params, tuple(notes))


async def _none() -> None:
    return None
