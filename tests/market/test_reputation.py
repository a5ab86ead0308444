"""market.reputation: the auditor's export, read defensively."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from market.reputation import ReputationUnavailable, load_reputation, parse_reputation
from market.scoring import Reputation


def test_nested_and_flat_shapes() -> None:
    doc = {
        "version": 1,
        "providers": {
            "0xAbC": {
                "proofs": {"success_rate": 1.0, "alarms": 2},
                "retrieval": {"success_rate": 0.9, "checks": 10},
            },
            "0xdef": {"retrieval_success": 0.5, "retrieval_checks": 4, "alarms": 1},
            "not-an-address": {"retrieval_success": 1.0},
        },
    }
    got = parse_reputation(doc)
    assert got == {
        "0xabc": Reputation(0.9, 10, 1.0, 2),
        "0xdef": Reputation(0.5, 4, None, 1),
    }


def test_a_list_of_providers_and_junk_values() -> None:
    doc = {"providers": [{"address": "0x1", "retrieval_success": 7, "alarms": -1}, "junk"]}
    assert parse_reputation(doc) == {"0x1": Reputation()}


def test_an_export_for_another_market_is_refused() -> None:
    doc = {"chain_id": 1, "market": "0xAA", "providers": {}}
    assert parse_reputation(doc, 1, "0xaa") == {}
    with pytest.raises(ReputationUnavailable, match="chain 1"):
        parse_reputation(doc, 2, "0xaa")
    with pytest.raises(ReputationUnavailable, match="market 0xAA"):
        parse_reputation(doc, 1, "0xbb")


@pytest.mark.parametrize("doc", [[], {"providers": 3}, "x"])
def test_unusable_documents(doc: object) -> None:
    with pytest.raises(ReputationUnavailable):
        parse_reputation(doc)


def test_files(tmp_path: Path) -> None:
    path = tmp_path / "rep.json"
    path.write_text(json.dumps({"providers": {"0x1": {"alarms": 1}}}))
    assert load_reputation(str(path))["0x1"].alarms == 1
    with pytest.raises(ReputationUnavailable):
        load_reputation(str(tmp_path / "missing.json"))
    path.write_text("{")
    with pytest.raises(ReputationUnavailable):
        load_reputation(str(path))
