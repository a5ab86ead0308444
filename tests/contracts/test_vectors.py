"""The shared JSON vectors (tests/vectors) checked on chain, module by module."""

import json
from pathlib import Path

import pytest
from ledger_helpers import reverts

from contracts.spec.commitment import hash_leaf, leaves_of, pad_leaf

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def load(name):
    return json.loads((VECTORS / f"{name}.json").read_text())


def h(x):
    return bytes.fromhex(x.removeprefix("0x"))


@pytest.fixture(scope="module")
def commitment():
    return load("commitment")


@pytest.fixture(scope="module")
def challenge():
    return load("challenge")


def test_leaf_hashes(ledger, commitment):
    for case in commitment["roots"][:3]:
        for leaf in leaves_of(h(case["piece"])):
            assert bytes(ledger.harness.hash_leaf(pad_leaf(leaf))) == hash_leaf(leaf)


def test_proofs_verify_on_chain_as_in_the_spec(ledger, commitment):
    for case in commitment["proofs"] + commitment["max_depth"]:
        args = (
            h(case["root"]),
            case["piece_size"],
            case["index"],
            h(case["leaf"]),
            [h(p) for p in case["path"]],
        )
        assert ledger.harness.verify_leaf(*args) is case["valid"], case["name"]
        # The market exposes the same function to auditors.
        assert ledger.market.verify_leaf(*args) is case["valid"], case["name"]


def test_roots_from_the_deepest_proofs(ledger, commitment):
    for case in commitment["max_depth"]:
        root, ok = ledger.harness.root_from_proof(
            hash_leaf(h(case["leaf"])),
            case["index"],
            case["piece_size"] // 1024,
            [h(p) for p in case["path"]],
        )
        assert ok and bytes(root) == h(case["root"]), case["name"]


def test_challenge_indices(ledger, challenge):
    for case in challenge["indices"]:
        got = ledger.harness.challenge_index(
            h(case["seed"]), case["provider"], case["period"], case["i"], case["leaf_range"]
        )
        assert got == case["index"]
    seq = challenge["sequence"]
    got = [
        ledger.market.challenge_index(
            h(seq["seed"]), seq["provider"], seq["period"], i, seq["leaf_range"]
        )
        for i in range(len(seq["indices"]))
    ]
    assert got == seq["indices"]


def test_locate_in_the_sum_tree(ledger, challenge):
    for case in challenge["locate"]:
        got = ledger.harness.locate.call(case["slot_leaves"], [], case["index"])
        assert tuple(got) == (case["slot"], case["leaf"]), case
    for case in challenge["locate_after_clearing"]:
        got = ledger.harness.locate.call(case["slot_leaves"], case["cleared"], case["index"])
        assert tuple(got) == (case["slot"], case["leaf"]), case


def test_locate_past_the_end(ledger):
    with reverts("sumtree: index beyond the last slot"):
        ledger.harness.locate.call([3, 0, 2], [], 5)
    with reverts("sumtree: index beyond the last slot"):
        ledger.harness.locate.call([3, 0, 2], [2], 3)


@pytest.mark.parametrize(
    "word", [0, 1, 2**255, 2**256 - 1, 0x5555 << 100, int("f0" * 32, 16), 0xDEADBEEF << 77]
)
def test_popcount(ledger, word):
    assert ledger.harness.popcount(word) == bin(word).count("1")
    for lo, hi in ((0, 256), (0, 1), (255, 256), (3, 200), (100, 101), (17, 18)):
        expected = bin((word >> lo) & ((1 << (hi - lo)) - 1)).count("1")
        assert ledger.harness.count_range(word, lo, hi) == expected
