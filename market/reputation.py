"""
Reading the auditor's reputation export (optional input of the provider score).

The auditor (``market.auditor``) publishes one JSON document (schema
``depot.auditor.reputation/1``, docs/auditor.md) as a file (``auditor report``) and over
HTTP (``GET /api/reputation``); the client reads it from ``scoring.reputation`` in
config.toml (a path or an http(s) URL). Only the fields the score uses are read, and only
when they have the expected type, so that the auditor can add fields freely; an unreadable
export, or one for another chain or market, is reported and ignored (the score then goes
without the reputation sub-score), never fatal. What is read::

    {"schema": "depot.auditor.reputation/1", "chain_id": 31337, "market": "0x...",
     "providers": {"0xAddr": {"retrieval": {"success_rate": 0.97, "checks": 40},
                              "proofs": {"success_rate": 0.99, "alarms": 0}, ...}, ...}}

``providers`` may also be a list of objects with an ``address`` key; the flat keys
``retrieval_success``, ``retrieval_checks``, ``proof_success`` and ``alarms`` are read too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Final

import httpx

from market.scoring import Reputation

log = logging.getLogger("market.reputation")

FETCH_TIMEOUT: Final = 10.0


class ReputationUnavailable(Exception):
    """The export could not be read or parsed (callers log it and go on without)."""


def load_reputation(
    source: str, chain_id: int | None = None, market: str | None = None
) -> dict[str, Reputation]:
    """
    Provider address (lowercase) -> reputation, from a file path or an http(s) URL; an
    export naming another ``chain_id`` or ``market`` is refused.
    """
    try:
        if source.startswith(("http://", "https://")):
            response = httpx.get(source, timeout=FETCH_TIMEOUT)
            response.raise_for_status()
            doc = response.json()
        else:
            doc = json.loads(Path(source).expanduser().read_text())
    except (OSError, ValueError, httpx.HTTPError) as exc:
        raise ReputationUnavailable(f"reputation export {source}: {exc}") from None
    return parse_reputation(doc, chain_id, market)


def parse_reputation(
    doc: Any, chain_id: int | None = None, market: str | None = None
) -> dict[str, Reputation]:
    """The per-provider reputations of an export document (module docstring)."""
    if not isinstance(doc, dict):
        raise ReputationUnavailable("the reputation export is not a JSON object")
    if chain_id is not None and doc.get("chain_id", chain_id) != chain_id:
        raise ReputationUnavailable(f"the reputation export is for chain {doc['chain_id']}")
    theirs = doc.get("market")
    if market is not None and isinstance(theirs, str) and theirs.lower() != market.lower():
        raise ReputationUnavailable(f"the reputation export is for market {theirs}")
    providers = doc.get("providers")
    items: list[tuple[str, Any]]
    if isinstance(providers, dict):
        items = list(providers.items())
    elif isinstance(providers, list):
        items = [(p.get("address", ""), p) for p in providers if isinstance(p, dict)]
    else:
        raise ReputationUnavailable("the reputation export has no providers")
    out: dict[str, Reputation] = {}
    for address, entry in items:
        if isinstance(address, str) and address.startswith("0x") and isinstance(entry, dict):
            out[address.lower()] = _entry(entry)
    return out


def _entry(entry: dict[str, Any]) -> Reputation:
    retrieval = entry.get("retrieval") if isinstance(entry.get("retrieval"), dict) else {}
    proofs = entry.get("proofs") if isinstance(entry.get("proofs"), dict) else {}
    assert isinstance(retrieval, dict) and isinstance(proofs, dict)
    return Reputation(
        retrieval_success=_rate(retrieval.get("success_rate", entry.get("retrieval_success"))),
        retrieval_checks=_count(retrieval.get("checks", entry.get("retrieval_checks"))),
        proof_success=_rate(proofs.get("success_rate", entry.get("proof_success"))),
        alarms=_count(proofs.get("alarms", entry.get("alarms"))),
    )


def _rate(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0
