#!/usr/bin/env python3
"""
Write the shared JSON test vectors in tests/vectors/ from the reference (contracts.spec).

Both the Python tests (tests/spec) and the contract tests (tests/contracts/test_vectors.py)
read them, which holds the Vyper contracts and every Python implementation to the spec.
The output is deterministic (fixed seeds): re-running it must leave the files unchanged,
and tests/spec/test_vectors_fresh.py checks that.

Files:
    commitment.json   roots, inclusion proofs (valid and broken), a maximum-depth proof
    challenge.json    challenge indices and the sum-tree walk (locate)
    deal.json         EIP-712 domain separators, struct hashes, digests and signatures
    accounting.json   settlement steps of deals over given proven/reported periods

Usage:
    .venv/bin/python scripts/gen_vectors.py [--check]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import random
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from contracts.spec import accounting, challenge, commitment, deal
from contracts.spec.commitment import Hash32

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "vectors"
# anvil's first default account: public test key, used to make deterministic signatures.
SIGNER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def hexs(data: bytes) -> str:
    return "0x" + data.hex()


# ------------------------------------------------------------------ commitment


class UniformTree:
    """
    A tree of ``n`` identical leaves, computed with memoized subtrees: equal-sized subtrees
    have equal roots, so a 2**40-leaf tree costs O(log n) hashes. An independent reading of
    RFC 9162 §2.1 against which the spec's ``root_from_proof`` is checked at full depth.
    """

    def __init__(self, leaf: bytes) -> None:
        self.leaf = commitment.pad_leaf(leaf)
        self.leaf_hash = commitment.hash_leaf(self.leaf)

    @functools.cache  # noqa: B019 (a handful of trees, kept for the script's lifetime)
    def root(self, n: int) -> Hash32:
        if n == 1:
            return self.leaf_hash
        k = commitment.split_point(n)
        return commitment.hash_node(self.root(k), self.root(n - k))

    def path(self, n: int, index: int) -> list[Hash32]:
        if n == 1:
            return []
        k = commitment.split_point(n)
        if index < k:
            return [*self.path(k, index), self.root(n - k)]
        return [*self.path(n - k, index - k), self.root(k)]


def proof_case(
    name: str, root: bytes, size: int, index: int, leaf: bytes, path: list[bytes], valid: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "root": hexs(root),
        "piece_size": size,
        "index": index,
        "leaf": hexs(leaf),
        "path": [hexs(p) for p in path],
        "valid": valid,
    }


def commitment_vectors(rng: random.Random) -> dict[str, Any]:
    sizes = {
        "one byte": 1,
        "one whole leaf": 1024,
        "partial last leaf": 1025,
        "two leaves": 2048,
        "three leaves, partial": 2 * 1024 + 300,
        "five leaves": 5 * 1024,
        "seven leaves, partial": 6 * 1024 + 1,
        "eight leaves": 8 * 1024,
        "thirteen leaves": 13 * 1024 - 17,
        "thirty-three leaves": 33 * 1024,
    }
    roots = []
    proofs = []
    for name, size in sizes.items():
        piece = rng.randbytes(size)
        leaves = commitment.leaves_of(piece)
        hashes = [commitment.hash_leaf(x) for x in leaves]
        root = commitment.merkle_root(piece)
        roots.append({"name": name, "piece": hexs(piece), "root": hexs(root)})
        n = len(leaves)
        for index in sorted({0, n // 2, n - 1}):
            leaf = commitment.pad_leaf(leaves[index])
            path = commitment.inclusion_proof(hashes, index)
            proofs.append(proof_case(f"{name}, leaf {index}", root, size, index, leaf, path, True))
        # Broken proofs, each a mistake a prover (or a buggy verifier) could make.
        index = n - 1
        leaf = commitment.pad_leaf(leaves[index])
        path = commitment.inclusion_proof(hashes, index)
        if path:
            wrong = bytes([path[0][0] ^ 1]) + path[0][1:]
            proofs.append(
                proof_case(
                    f"{name}: wrong sibling", root, size, index, leaf, [wrong, *path[1:]], False
                )
            )
            proofs.append(
                proof_case(f"{name}: path too short", root, size, index, leaf, path[:-1], False)
            )
            proofs.append(
                proof_case(
                    f"{name}: path too long", root, size, index, leaf, [*path, path[-1]], False
                )
            )
            other = 0 if index else 1
            proofs.append(proof_case(f"{name}: wrong index", root, size, other, leaf, path, False))
            proofs.append(
                proof_case(f"{name}: wrong size", root, size + 1024, index, leaf, path, False)
            )
        proofs.append(proof_case(f"{name}: index out of range", root, size, n, leaf, path, False))
        flipped = bytes([leaf[0] ^ 0x80]) + leaf[1:]
        proofs.append(proof_case(f"{name}: wrong leaf", root, size, index, flipped, path, False))
        proofs.append(
            proof_case(
                f"{name}: unpadded leaf", root, size, index, leaves[index][:-1] or b"", path, False
            )
        )
    # An inner node presented as a leaf: the domain separation rejects it (RFC 9162 §2.1.1).
    piece = rng.randbytes(4 * 1024)
    hashes = [commitment.hash_leaf(x) for x in commitment.leaves_of(piece)]
    inner = hashes[0] + hashes[1]
    fake_leaf = commitment.pad_leaf(inner)
    proofs.append(
        proof_case(
            "inner node as a leaf",
            commitment.merkle_root(piece),
            2 * 1024,
            0,
            fake_leaf,
            [commitment.root_of_nodes(hashes[2:])],
            False,
        )
    )

    deep = []
    for n, index in (
        (2**40, 0),
        (2**40, 2**40 - 1),
        (2**40, 0x5A5A5A5A5A),
        (2**40 - 3, 2**40 - 4),
        (2**39 + 1, 2**39),
    ):
        tree = UniformTree(rng.randbytes(1024))
        path = tree.path(n, index)
        root = tree.root(n)
        assert commitment.root_from_proof(tree.leaf_hash, index, n, path) == root
        deep.append(
            proof_case(
                f"{n} identical leaves, leaf {index}", root, n * 1024, index, tree.leaf, path, True
            )
        )
    return {
        "leaf_size": commitment.LEAF_SIZE,
        "max_proof_depth": commitment.MAX_PROOF_DEPTH,
        "empty_root": hexs(commitment.EMPTY_ROOT),
        "roots": roots,
        "proofs": proofs,
        "max_depth": deep,
    }


# ------------------------------------------------------------------ challenge


def challenge_vectors(rng: random.Random) -> dict[str, Any]:
    indices = []
    providers = [
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x" + "ff" * 20,
        "0x" + "00" * 19 + "01",
    ]
    for leaf_range in (1, 2, 3, 1000, 46 * 1024, 2**40, 2**64 - 1):
        seed = rng.randbytes(32)
        provider = rng.choice(providers)
        period = rng.choice([0, 1, 7, 2**32 + 5])
        for i in (0, 1, 45):
            indices.append(
                {
                    "seed": hexs(seed),
                    "provider": provider,
                    "period": period,
                    "i": i,
                    "leaf_range": leaf_range,
                    "index": challenge.challenge_index(seed, provider, period, i, leaf_range),
                }
            )
    seed = rng.randbytes(32)
    sequence = {
        "seed": hexs(seed),
        "provider": providers[0],
        "period": 12,
        "leaf_range": 123_457,
        "indices": challenge.challenge_indices(seed, providers[0], 12, 123_457),
    }
    locates = []
    layouts = [
        [1],
        [5],
        [3, 0, 4],
        [0, 0, 2],
        [1, 1, 1, 1, 1, 1, 1],
        [7, 0, 0, 9, 1, 0, 33, 2],
        [rng.choice([0, 1, 2, 5, 64, 1000]) for _ in range(37)],
        # Around the powers of four where the 4-ary sum tree grows a level.
        [1, 2, 3, 4],
        [2] * 16 + [3],
        [rng.randint(0, 9) for _ in range(64)] + [5],
        [rng.randint(1, 2**40) for _ in range(70)],
    ]
    for slots in layouts:
        total = sum(slots)
        for index in sorted({0, total // 3, total // 2, total - 1}):
            slot, leaf = challenge.locate(index, slots)
            locates.append({"slot_leaves": slots, "index": index, "slot": slot, "leaf": leaf})
    cleared = []
    for _ in range(4):
        slots = [rng.randint(1, 50) for _ in range(rng.randint(3, 40))]
        gone = sorted(rng.sample(range(len(slots)), len(slots) // 3))
        live = [0 if i in gone else s for i, s in enumerate(slots)]
        for index in sorted({0, sum(live) // 2, sum(live) - 1}):
            slot, leaf = challenge.locate(index, live)
            cleared.append(
                {"slot_leaves": slots, "cleared": gone, "index": index, "slot": slot, "leaf": leaf}
            )
    return {
        "default_challenges": challenge.DEFAULT_CHALLENGES,
        "detect_1pct_within_10_periods": challenge.detection_probability(
            0.01, challenge.DEFAULT_CHALLENGES, 10
        ),
        "indices": indices,
        "sequence": sequence,
        "locate": locates,
        "locate_after_clearing": cleared,
    }


# ------------------------------------------------------------------ deal


def deal_vectors(rng: random.Random) -> dict[str, Any]:
    signer = Account.from_key(SIGNER_KEY)
    cases = []
    markets = ["0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512", "0x" + "ab" * 20]
    for chain_id in (1, 31337):
        for market in markets:
            p = deal.DealProposal(
                client=signer.address,
                provider="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                piece_root=rng.randbytes(32),
                piece_size=rng.randint(1, 2**40),
                price_per_period=rng.randint(0, 10**21),
                periods=rng.randint(1, 2**32 - 1),
                collateral=rng.randint(0, 10**22),
                nonce=rng.getrandbits(256),
                expiry_block=rng.randint(0, 2**64 - 1),
            )
            typed = deal.typed_data(p, chain_id, market)
            signature = signer.sign_message(encode_typed_data(full_message=typed)).signature
            fields = dataclasses.asdict(p)
            fields["piece_root"] = hexs(p.piece_root)
            cases.append(
                {
                    "chain_id": chain_id,
                    "market": market,
                    "proposal": fields,
                    "domain_separator": hexs(deal.domain_separator(chain_id, market)),
                    "struct_hash": hexs(deal.struct_hash(p)),
                    "digest": hexs(deal.signing_digest(p, chain_id, market)),
                    "signer": signer.address,
                    "signature": hexs(bytes(signature)),
                }
            )
    return {
        "domain_typehash": hexs(deal.EIP712_DOMAIN_TYPEHASH),
        "proposal_typehash": hexs(deal.DEAL_PROPOSAL_TYPEHASH),
        "cases": cases,
    }


# ------------------------------------------------------------------ accounting


def accounting_vectors(rng: random.Random) -> dict[str, Any]:
    scenarios = []
    specs = [
        ("all proven, settled at the end", 10, 5, [], [], 0, 0, [9, 12, 16, 17]),
        ("two misses, one reported", 10, 6, [11, 13], [13], 0, 0, [6, 13, 18]),
        ("settled in two steps", 4, 8, [2], [], 0, 0, [6, 20]),
        ("terminated after three misses", 4, 10, [4, 5, 6], [6], 7, 0, [20]),
        ("loss declared", 4, 10, [], [], 0, 8, [5, 20]),
        (
            "collateral exhausted by misses",
            4,
            20,
            list(range(4, 24)),
            list(range(4, 24, 2)),
            0,
            0,
            [30],
        ),
        ("terminated before the deal started", 10, 3, [], [], 5, 0, [11]),
        (
            "longer than one settlement step",
            1,
            3000,
            [100, 2000],
            [2000],
            0,
            0,
            [2600, 3100, 4000],
        ),
    ]
    params = {"miss_slash_bps": 1000, "bounty_bps": 5000}
    for name, start, periods, missed, reported, epoch_end, loss_end, currents in specs:
        book = accounting.DealBook(
            price_per_period=rng.randint(1, 10**19),
            collateral=rng.randint(0, 10**21),
            start=start,
            end=start + periods,
        )
        stop = accounting.deal_stop(book.end, epoch_end, loss_end)
        proven = sorted(set(range(start, start + periods)) - set(missed))
        steps = []
        for current in currents:
            step = accounting.settle_deal(
                book, stop=stop, current=current, proven=proven, reported=reported, **params
            )
            steps.append(
                {"current": current, "settlement": dataclasses.asdict(step) if step else None}
            )
            if step:
                book = accounting.apply_settlement(book, step)
        scenarios.append(
            {
                "name": name,
                "deal": dataclasses.asdict(
                    accounting.DealBook(
                        price_per_period=book.price_per_period,
                        collateral=book.collateral,
                        start=start,
                        end=start + periods,
                    )
                ),
                "epoch_end": epoch_end,
                "loss_end": loss_end,
                "proven": proven,
                "reported": reported,
                "steps": steps,
            }
        )
    return {**params, "scenarios": scenarios}


# ------------------------------------------------------------------ main


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1) + "\n"


def build() -> dict[str, str]:
    """Every vector file's name and text, from fixed seeds."""
    return {
        "commitment.json": render(commitment_vectors(random.Random("depot commitment v1"))),
        "challenge.json": render(challenge_vectors(random.Random("depot challenge v1"))),
        "deal.json": render(deal_vectors(random.Random("depot deal v1"))),
        "accounting.json": render(accounting_vectors(random.Random("depot accounting v1"))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write tests/vectors/*.json from contracts.spec")
    parser.add_argument("--check", action="store_true", help="fail if the files would change")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, text in build().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)} ({len(text)} bytes)")
    if stale:
        print(f"stale vectors: {', '.join(stale)}; run scripts/gen_vectors.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
