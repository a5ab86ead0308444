"""
Retrieval spot checks: do providers serve what they prove?

A proof on chain shows that a provider *holds* a piece; a client needs it to *serve* the
piece too. Every round the checker picks a few live deals at random (from the indexer's
books: slots challenged in the current period), a random chunk of each, and fetches it
from the deal's provider over ``/depot/swarm/1`` like any downloader would
(``node.swarm.probe.fetch_chunk``: the layer is verified against the deal's root, the chunk
against the layer). The outcome, with its latency, is stored per provider:

    ok | refused | bad_data | timeout | unreachable | no_address

so that a provider that proves on chain but refuses to serve shows up in its reputation.
Where to dial comes from the provider's signed DHT record (its ask, ``contracts.offers``)
when the daemon has one, else from the endpoint it registered on chain (``host:port``);
the node id it registered is what the transport's handshake must prove either way.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, insert, select

from market.auditor import db
from market.auditor.indexer import Indexer
from node import errors as node_errors
from node.swarm.probe import ProbeBadData, ProbeRefused, fetch_chunk
from node.swarm.verify import chunk_count
from node.transport import Host

log = logging.getLogger("market.auditor.retrieval")

Addr = tuple[str, int]


@dataclass(frozen=True)
class RetrievalConfig:
    """How often and how hard the auditor spot-checks providers."""

    enabled: bool = True
    interval: float = 30.0
    """Seconds between two rounds."""
    deals_per_round: int = 4
    """Live deals probed per round (one random chunk each)."""
    timeout: float = 20.0
    """Seconds for one probe, dial included."""


@dataclass(frozen=True)
class RetrievalResult:
    """One probe of one provider."""

    provider: str
    deal_id: int
    chunk: int
    outcome: str
    latency_ms: float | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def parse_endpoint(endpoint: str) -> list[Addr]:
    """``host:port`` (``[v6]:port``) as registered on chain; ``[]`` if it is not one."""
    host, sep, port = endpoint.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return []
    return [(host.strip("[]"), int(port))]


@dataclass
class AddressBook:
    """Where providers can be dialled: DHT records first, registered endpoints second."""

    engine: Engine
    dht: dict[bytes, list[Addr]] = field(default_factory=dict)
    """Addresses by node id, from signed provider records (updated by the daemon)."""

    def lookup(self, provider: str) -> tuple[bytes, list[Addr]] | None:
        """The provider's registered node id and addresses to dial, if known."""
        node_id: bytes | None = None
        endpoint = ""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(db.events.c.kind, db.events.c.data)
                .where(
                    db.events.c.provider == provider,
                    db.events.c.kind.in_(["ProviderRegistered", "EndpointUpdated"]),
                )
                .order_by(db.events.c.block_number, db.events.c.log_index)
            )
            for kind, data in found:
                fields = json.loads(data)
                if kind == "ProviderRegistered":
                    node_id = bytes.fromhex(fields["node_id"][2:])
                endpoint = fields["endpoint"]
        if node_id is None:
            return None
        return node_id, self.dht.get(node_id) or parse_endpoint(endpoint)


class RetrievalChecker:
    """
    Probes random chunks of live deals and records the outcomes.

    Parameters
    ----------
    engine :
        The database (``retrievals``).
    host :
        The auditor's transport.
    indexer :
        Whose books say which deals are live.
    addresses :
        Where to dial each provider.
    """

    def __init__(
        self,
        engine: Engine,
        host: Host,
        indexer: Indexer,
        addresses: AddressBook,
        *,
        config: RetrievalConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.host = host
        self.indexer = indexer
        self.addresses = addresses
        self.config = config or RetrievalConfig()
        self.rng = rng or random.SystemRandom()

    def live_deals(self, period: int) -> list[tuple[str, int, bytes, int]]:
        """(provider, deal id, root, size) of every slot challenged in ``period``."""
        out = []
        for provider, book in sorted(self.indexer.books.items()):
            for slot in book.slots.get(book.epoch, []):
                if slot.weight(period) > 0:
                    out.append((provider, slot.deal_id, slot.piece_root, slot.piece_size))
        return out

    async def round(
        self, period: int, deals: Sequence[tuple[str, int, bytes, int]] | None = None
    ) -> list[RetrievalResult]:
        """Probe up to ``deals_per_round`` random ``deals`` (default: ``live_deals``) once."""
        if deals is None:
            deals = self.live_deals(period)
        picked = self.rng.sample(deals, min(self.config.deals_per_round, len(deals)))
        results = [await self.probe(*deal) for deal in picked]
        self._record(results, period)
        return results

    async def probe(self, provider: str, deal_id: int, root: bytes, size: int) -> RetrievalResult:
        """Fetch one random chunk of one deal from its provider."""
        chunk = self.rng.randrange(chunk_count(size))
        where = self.addresses.lookup(provider)
        if where is None or not where[1]:
            return RetrievalResult(
                provider, deal_id, chunk, "no_address", None, "no dialable address"
            )
        node_id, addrs = where
        start = time.monotonic()
        outcome, detail = "ok", ""
        try:
            await fetch_chunk(
                self.host, node_id, addrs, root, size, index=chunk, timeout=self.config.timeout
            )
        except ProbeRefused as exc:
            outcome, detail = "refused", exc.reason
        except ProbeBadData as exc:
            outcome, detail = "bad_data", str(exc)
        except node_errors.PeerTimeout as exc:
            outcome, detail = "timeout", str(exc)
        except (node_errors.RemoteError, OSError) as exc:
            outcome, detail = "unreachable", f"{type(exc).__name__}: {exc}"
        latency = (time.monotonic() - start) * 1000
        log.info(
            "retrieval provider=%s deal=%d chunk=%d outcome=%s latency_ms=%.1f %s",
            provider,
            deal_id,
            chunk,
            outcome,
            latency,
            detail,
        )
        return RetrievalResult(
            provider, deal_id, chunk, outcome, latency if outcome == "ok" else None, detail
        )

    def _record(self, results: Sequence[RetrievalResult], period: int) -> None:
        if not results:
            return
        now = time.time()
        with db.transaction(self.engine) as conn:
            conn.execute(
                insert(db.retrievals),
                [
                    {
                        "provider": r.provider,
                        "deal_id": r.deal_id,
                        "chunk": r.chunk,
                        "ok": r.ok,
                        "outcome": r.outcome,
                        "detail": r.detail[:500],
                        "latency_ms": r.latency_ms,
                        "period": period,
                        "at": now,
                    }
                    for r in results
                ],
            )
