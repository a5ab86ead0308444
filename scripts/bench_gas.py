#!/usr/bin/env python3
"""
Gas of the ledger's transactions, measured on anvil (Prague rules, then the proof rows
again on Cancun).

What it does:
1. Starts its own anvil and deploys Token + StorageMarket from the committed artifacts
   with the protocol's default parameters (46 challenges) and 256-block periods.
2. Registers four providers and gives them 1, 10, 100 and 1,000 deals on pieces of the
   same size (1 GiB by default: 2**20 leaves, 20-level audit paths). Each piece is one
   random 1 KiB leaf repeated, so that its root and proofs are computed with memoized
   subtrees; the proof calldata is still real random bytes.
3. Measures register, accept_deal (first and 1,000th slot), the proof transaction of each
   provider over several periods (each proof also rolls the provider into the period, as
   it does in steady state), report_fault and settle.
4. Prints the table and, as the last line, one JSON object:
   {"proof_gas": {"1":..,"10":..,"100":..,"1000":..}, "challenges": 46,
    "gas_per_challenge": .., "detect_1pct_within_10_periods": .., ...}

Usage:
    .venv/bin/python scripts/bench_gas.py [--piece-size BYTES] [--periods N] [--quick]

Numbers are gas, not time: they do not depend on machine load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from gen_vectors import UniformTree

from contracts.chain import LedgerClient, connect, new_nonce
from contracts.deployment import TOKEN_UNIT, Deployment, MarketParams
from contracts.devnet import deploy, dev_accounts, fund, start_anvil
from contracts.errors import LedgerError
from contracts.events import DealSettled, FaultReported
from contracts.spec import challenge, commitment
from contracts.spec.deal import DealProposal
from contracts.txs import TxConfig

DEAL_COUNTS = (1, 10, 100, 1000)
BASE_TX = 21_000
PERIOD_BLOCKS = 256


@dataclass
class Provider:
    """A benchmark provider: its client and the leaf of each of its pieces (by root)."""

    client: LedgerClient
    deals: int
    trees: dict[bytes, UniformTree] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)


def calldata_cost(data: bytes) -> tuple[int, int]:
    """(standard, floor) calldata gas: EIP-2028 (4/16 per zero/non-zero byte) and the
    EIP-7623 floor (10 per token, a non-zero byte being 4 tokens)."""
    zeros = data.count(0)
    nonzero = len(data) - zeros
    return 4 * zeros + 16 * nonzero, 10 * (zeros + 4 * nonzero)


def mine_to(web3: Any, block: int) -> None:
    head = web3.eth.block_number
    if block > head:
        web3.provider.make_request("anvil_mine", [hex(block - head)])


def to_window(client: LedgerClient, period: int) -> None:
    """Head at the period's seed block: the next transaction lands in the proving window."""
    mine_to(client.web3, client.schedule.seed_block(period))


@dataclass
class Bench:
    """A deployed market with its providers, a client and an auditor."""

    deployment: Deployment
    providers: list[Provider]
    client: LedgerClient
    auditor: LedgerClient
    gas: dict[str, int]


def last_tx_gas(client: LedgerClient) -> int:
    """Gas of the latest block's transaction (anvil mines one per transaction)."""
    web3 = client.web3
    tx_hash = web3.eth.get_block("latest")["transactions"][0]
    return int(web3.eth.get_transaction_receipt(tx_hash)["gasUsed"])


def setup(url: str, piece_size: int, counts: tuple[int, ...], rng: random.Random) -> Bench:
    web3 = connect(url)
    keys = dev_accounts(len(counts) + 3)
    deployer, client_key, auditor_key = keys[0], keys[1], keys[2]
    params = MarketParams(period_blocks=PERIOD_BLOCKS, min_stake=1_000 * TOKEN_UNIT)
    deployment = deploy(web3, deployer, params, rpc_url=url)
    fund(web3, deployment, deployer, [k.address for k in keys], tokens=10**9 * TOKEN_UNIT)
    config = TxConfig(priority_fee=10**9)
    client = LedgerClient(web3, deployment, client_key, tx_config=config)
    client.approve()
    gas: dict[str, int] = {}
    providers = []
    leaves = commitment.leaf_count(piece_size)
    for n, key in zip(counts, keys[3:], strict=True):
        p = Provider(LedgerClient(web3, deployment, key, tx_config=config), n)
        p.client.approve()
        node_id = hashlib.sha256(key.address.encode()).digest()
        receipt = p.client.register(node_id, "127.0.0.1:4001", 10**6 * TOKEN_UNIT)
        gas.setdefault("register", receipt.gas_used)
        for i in range(n):
            tree = UniformTree(rng.randbytes(commitment.LEAF_SIZE))
            root = tree.root(leaves)
            p.trees[root] = tree
            proposal = DealProposal(
                client=client.address,
                provider=p.client.address,
                piece_root=root,
                piece_size=piece_size,
                price_per_period=TOKEN_UNIT // 100,
                periods=1_000,
                collateral=10 * TOKEN_UNIT,
                nonce=new_nonce(),
                expiry_block=web3.eth.block_number + 10**6,
            )
            p.ids.append(p.client.accept_deal(proposal, client.sign_proposal(proposal)))
            if i + 1 in (1, 1000):
                gas[f"accept_deal_slot_{i + 1}"] = last_tx_gas(client)
        providers.append(p)
    auditor = LedgerClient(web3, deployment, auditor_key, tx_config=config)
    return Bench(deployment, providers, client, auditor, gas)


def prove(p: Provider, piece_size: int) -> tuple[int, bytes]:
    """Submit the provider's proof for the current period; returns (gas, calldata)."""
    leaves = commitment.leaf_count(piece_size)
    proofs = []
    for c in p.client.challenges(p.client.address):
        tree = p.trees[c.piece_root]
        proofs.append((tree.leaf, tree.path(leaves, c.leaf)))
    receipt = p.client.submit_proof(proofs)
    tx = p.client.web3.eth.get_transaction(receipt.tx_hash)
    return receipt.gas_used, bytes(tx["input"])


def measure(
    hardfork: str, piece_size: int, periods: int, counts: tuple[int, ...], full: bool
) -> dict[str, Any]:
    rng = random.Random(f"bench_gas {hardfork}")
    t0 = time.monotonic()
    with start_anvil(hardfork=hardfork, gas_limit=60_000_000) as node:
        bench = setup(node.url, piece_size, counts, rng)
        providers, client, auditor = bench.providers, bench.client, bench.auditor
        setup_s = time.monotonic() - t0
        schedule = bench.deployment.schedule
        proof_gas: dict[int, list[int]] = {n: [] for n in counts}
        calldata = b""
        period = schedule.period_of(client.current_block()) + 1
        for _ in range(periods):
            to_window(client, period)
            for p in providers:
                used, calldata = prove(p, piece_size)
                proof_gas[p.deals].append(used)
            period += 1
        result: dict[str, Any] = {
            "setup_seconds": round(setup_s, 1),
            "proof_gas": proof_gas,
            "calldata": calldata,
        }
        if full:
            # A missed period, reported during the next one; then a settlement.
            to_window(client, period + 1)
            small = providers[0]
            receipt = auditor.report_fault(small.client.address, period)
            result["report_fault"] = receipt.gas_used
            result["bounty"] = receipt.first(FaultReported).bounty
            receipt = client.settle(small.ids[0])
            result["settle"] = receipt.gas_used
            result["settled_periods"] = (
                receipt.first(DealSettled).to_period - receipt.first(DealSettled).from_period
            )
            big = max(providers, key=lambda p: p.deals)
            receipts = client.settle_many(big.ids[:64])
            result["settle_many_64"] = receipts[0].gas_used
        result.update(bench.gas)
        return result


def commitment_tradeoff(rng: random.Random) -> dict[str, float]:
    """Merkle root speed (one core, hashlib) and per-challenge calldata for 1 KiB vs 32 B leaves."""
    data = rng.randbytes(64 * 2**20)
    out: dict[str, float] = {}
    for leaf_size in (1024, 32):
        t = time.perf_counter()
        level = [
            hashlib.sha256(b"\x00" + data[i : i + leaf_size]).digest()
            for i in range(0, len(data), leaf_size)
        ]
        while len(level) > 1:
            level = [
                hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
                for i in range(0, len(level), 2)
            ]
        out[f"merkle_mib_s_{leaf_size}"] = round(64 / (time.perf_counter() - t), 1)
    return out


def proof_item_calldata(leaf_size: int, depth: int, rng: random.Random) -> int:
    """EIP-7623 floor gas of one challenge's ABI-encoded (leaf, path) inside submit_proof."""
    from eth_abi import encode  # noqa: PLC0415

    one = encode(
        ["(bytes,bytes32[])[]"], [[(rng.randbytes(leaf_size), [rng.randbytes(32)] * depth)]]
    )
    two = encode(
        ["(bytes,bytes32[])[]"], [[(rng.randbytes(leaf_size), [rng.randbytes(32)] * depth)] * 2]
    )
    return calldata_cost(two)[1] - calldata_cost(one)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gas of the ledger's transactions")
    parser.add_argument(
        "--piece-size", type=int, default=2**30, help="bytes per piece (default 1 GiB)"
    )
    parser.add_argument("--periods", type=int, default=3, help="proofs measured per provider")
    parser.add_argument("--quick", action="store_true", help="1, 10, 100 deals only")
    args = parser.parse_args(argv)
    counts = DEAL_COUNTS[:3] if args.quick else DEAL_COUNTS
    depth = (commitment.leaf_count(args.piece_size) - 1).bit_length()
    c = challenge.DEFAULT_CHALLENGES

    try:
        prague = measure("prague", args.piece_size, args.periods, counts, full=True)
        cancun = measure("cancun", args.piece_size, args.periods, counts, full=False)
    except LedgerError as exc:
        print(f"bench_gas: {exc}", file=sys.stderr)
        return 1
    std, floor = calldata_cost(prague["calldata"])
    rng = random.Random("bench_gas tradeoff")
    tradeoff = commitment_tradeoff(rng)
    per_challenge_1k = proof_item_calldata(1024, depth, rng)
    per_challenge_32 = proof_item_calldata(32, depth + 5, rng)

    def med(values: list[int]) -> int:
        return int(statistics.median(values))

    p_gas = {str(n): med(v) for n, v in prague["proof_gas"].items()}
    c_gas = {str(n): med(v) for n, v in cancun["proof_gas"].items()}
    base = p_gas["1"]
    detect = challenge.detection_probability(0.01, c, 10)

    leaves = commitment.leaf_count(args.piece_size)
    print(f"piece size {args.piece_size} bytes ({leaves} leaves, {depth}-level paths), "
          f"{c} challenges/period, {args.periods} periods measured")  # fmt: skip
    print(f"setup: prague {prague['setup_seconds']} s, cancun {cancun['setup_seconds']} s\n")
    print(f"{'transaction':<34}{'gas (Prague)':>14}{'gas (Cancun)':>14}{'vs 1 deal':>11}")
    for key in (
        "register",
        "accept_deal_slot_1",
        "accept_deal_slot_1000",
        "report_fault",
        "settle",
        "settle_many_64",
    ):
        if key in prague:
            print(f"{key:<34}{prague[key]:>14,}{'':>14}{'':>11}")
    for n in counts:
        k = str(n)
        label = f"submit_proof, {n} deal{'s' if n > 1 else ''}"
        print(f"{label:<34}{p_gas[k]:>14,}{c_gas[k]:>14,}{p_gas[k] / base:>10.3f}x")
    print()
    print(f"proof calldata: {len(prague['calldata']):,} bytes; standard cost {std:,}, "
          f"EIP-7623 floor {floor:,} (+{BASE_TX:,} base)")  # fmt: skip
    most = str(counts[-1])
    print(f"Cancun execution of the 1-deal proof: {c_gas['1'] - BASE_TX - std:,} gas; "
          f"{most} deals: {c_gas[most] - BASE_TX - std:,} gas")  # fmt: skip
    print(f"gas per challenge (1-deal proof / {c}): {base / c:,.0f}; calldata floor per "
          f"challenge: {per_challenge_1k:,} (1 KiB leaf) vs {per_challenge_32:,} "
          f"(32-byte leaf, {depth + 5}-level path)")  # fmt: skip
    print(f"Merkle root on one core: {tradeoff['merkle_mib_s_1024']} MiB/s (1 KiB leaves) vs "
          f"{tradeoff['merkle_mib_s_32']} MiB/s (32-byte leaves)")  # fmt: skip
    print(f"detection: 1 - (1 - f)^(c * periods) = 1 - 0.99^({c} * 10) = {detect:.5f}")
    summary = {
        "proof_gas": p_gas,
        "challenges": c,
        "gas_per_challenge": round(base / c),
        "detect_1pct_within_10_periods": round(detect, 6),
        "proof_gas_ratio_1000_vs_1": round(p_gas[str(counts[-1])] / base, 4),
        "proof_gas_cancun": c_gas,
        "proof_gas_ratio_cancun": round(c_gas[str(counts[-1])] / c_gas["1"], 4),
        "register": prague["register"],
        "accept_deal": prague["accept_deal_slot_1"],
        "accept_deal_slot_1000": prague.get("accept_deal_slot_1000"),
        "report_fault": prague["report_fault"],
        "settle": prague["settle"],
        "settle_many_64": prague["settle_many_64"],
        "calldata_floor_per_challenge_1kib": per_challenge_1k,
        "calldata_floor_per_challenge_32b": per_challenge_32,
        "merkle_mib_s_1kib": tradeoff["merkle_mib_s_1024"],
        "merkle_mib_s_32b": tradeoff["merkle_mib_s_32"],
        "piece_size": args.piece_size,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
