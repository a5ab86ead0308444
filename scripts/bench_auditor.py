"""
Benchmark of the auditor: index and re-verify ``--proofs`` proof events from an anvil devnet.

Generation (not timed): anvil with a large block gas limit and auto-impersonation; ``P``
providers register and take one deal each over a 64 KiB piece; then, period after period
(``period_blocks = 2``: the seed block, then one block holding every provider's proof), each
provider sends its real proof (the default 46 challenges, leaves and RFC 9162 audit paths
from ``contracts.spec``) with ``eth_sendTransaction`` in one JSON-RPC batch, and the block is
mined with ``evm_mine``. Nothing the auditor computes is cached: the measured run starts
from an empty database and reads everything from the node.

Measured: ``Indexer.run_until(head)`` with the default configuration (``scan_failed_proofs``
on: every transaction of every block is read raw and hash-checked) into a fresh SQLite file.
Baseline, in the same run: the straightforward path for a sample of proofs (web3's
``get_transaction`` + ``decode_function_input`` + the spec's ``verify_leaf``), per event.

    .venv/bin/python scripts/bench_auditor.py                 # 10,000 proofs
    .venv/bin/python scripts/bench_auditor.py --proofs 2000 --profile /tmp/auditor.prof

Last line: one JSON object with "events" (proof events indexed and re-verified) and
"events_per_s".
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests
from eth_account import Account
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.chain import LedgerClient, connect
from contracts.deployment import TOKEN_UNIT, MarketParams
from contracts.devnet import deploy, dev_accounts, start_anvil
from contracts.events import ProofSubmitted
from contracts.spec import challenge, commitment
from contracts.spec.deal import DealProposal
from market.auditor import db
from market.auditor.calldata import selector_of
from market.auditor.indexer import Indexer, IndexerConfig
from market.auditor.rpc import RpcClient

PIECE = 64 * 1024
GAS_LIMIT = 2_000_000_000
PROOF_GAS = 4_000_000
SEND_BATCH = 4
"""Proof transactions per JSON-RPC request (anvil refuses very large request bodies)."""


class Rpc:
    def __init__(self, url: str) -> None:
        self.url, self.s, self.n = url, requests.Session(), 0

    def call(self, method: str, params: list) -> object:
        return self.batch([(method, params)])[0]

    def batch(self, calls: list[tuple[str, list]]) -> list:
        body = []
        for m, p in calls:
            self.n += 1
            body.append({"jsonrpc": "2.0", "id": self.n, "method": m, "params": p})
        out = self.s.post(self.url, json=body, timeout=600).json()
        if isinstance(out, dict):
            raise RuntimeError(out)
        out.sort(key=lambda r: r["id"])
        for r in out:
            if "error" in r:
                raise RuntimeError(r["error"])
        return [r["result"] for r in out]


def encode_submit_proof(selector: bytes, proofs: list[tuple[bytes, list[bytes]]]) -> bytes:
    """ABI encoding of submit_proof((bytes,bytes32[])[]) (checked against web3 once)."""
    w = lambda v: v.to_bytes(32, "big")  # noqa: E731
    items = []
    for leaf, path in proofs:
        pad = (-len(leaf)) % 32
        leaf_part = w(len(leaf)) + leaf + b"\0" * pad
        path_part = w(len(path)) + b"".join(path)
        items.append(w(64) + w(64 + len(leaf_part)) + leaf_part + path_part)
    heads, offset = [], 32 * len(items)
    for it in items:
        heads.append(w(offset))
        offset += len(it)
    return selector + w(32) + w(len(items)) + b"".join(heads) + b"".join(items)


def generate(providers: int, periods: int, seed: int) -> tuple[object, object, str, int]:
    node = start_anvil(gas_limit=GAS_LIMIT)
    web3 = connect(node.url, timeout=600)
    rpc = Rpc(node.url)
    deployer, client = dev_accounts(2)
    params = MarketParams(period_blocks=2, min_stake=TOKEN_UNIT, max_piece_size=1 << 20)
    deployment = deploy(web3, deployer, params)
    ledger = LedgerClient(web3, deployment)
    market, token = ledger.market, ledger.token
    rng = random.Random(seed)
    keys = {}
    for i in range(providers):
        account = Account.from_key(hashlib.sha256(b"p%d" % i).digest())
        keys[account.address] = account
    keys[client.address] = client
    addrs = [a for a in keys if a != client.address]
    nonces = {a: int(web3.eth.get_transaction_count(a)) for a in keys}
    big = hex(10**24)

    def tx(frm: str, to: str, data: str | bytes) -> tuple[str, list]:
        """A transaction signed by ``frm`` (real signatures: the auditor checks raw hashes)."""
        raw = (
            keys[frm]
            .sign_transaction(
                {
                    "to": to,
                    "data": data,
                    "gas": PROOF_GAS,
                    "nonce": nonces[frm],
                    "value": 0,
                    "chainId": deployment.chain_id,
                    "maxFeePerGas": 10**12,
                    "maxPriorityFeePerGas": 10**9,
                    "type": 2,
                }
            )
            .raw_transaction
        )
        nonces[frm] += 1
        return ("eth_sendRawTransaction", ["0x" + bytes(raw).hex()])

    rpc.call("evm_setAutomine", [False])
    rpc.batch([("anvil_setBalance", [a, big]) for a in [*addrs, client.address]])
    amount = 10**6 * TOKEN_UNIT
    setup = [
        tx(a, token.address, token.encode_abi("faucet", args=[amount]))
        for a in [*addrs, client.address]
    ]
    setup += [
        tx(a, token.address, token.encode_abi("approve", args=[market.address, 2**256 - 1]))
        for a in [*addrs, client.address]
    ]
    setup += [
        tx(
            a,
            market.address,
            market.encode_abi(
                "register",
                args=[hashlib.sha256(a.encode()).digest(), "127.0.0.1:1", 10 * TOKEN_UNIT],
            ),
        )
        for a in addrs
    ]
    for i in range(0, len(setup), 50):
        rpc.batch(setup[i : i + 50])
    rpc.call("evm_mine", [])
    pieces = {}
    accepts = []
    client_ledger = LedgerClient(web3, deployment, client)
    head = web3.eth.block_number
    for a in addrs:
        data = rng.randbytes(PIECE)
        hashes = [commitment.hash_leaf(x) for x in commitment.leaves_of(data)]
        root = commitment.root_of_nodes(hashes)
        answers = [
            (
                commitment.pad_leaf(data[i * 1024 : (i + 1) * 1024]),
                list(commitment.inclusion_proof(hashes, i)),
            )
            for i in range(len(hashes))
        ]
        pieces[a] = answers
        p = DealProposal(
            client.address,
            a,
            root,
            PIECE,
            TOKEN_UNIT // 100,
            periods + 10,
            TOKEN_UNIT,
            rng.getrandbits(256),
            head + 10_000,
        )
        accepts.append(
            tx(
                a,
                market.address,
                market.encode_abi(
                    "accept_deal", args=[p.as_tuple(), client_ledger.sign_proposal(p)]
                ),
            )
        )
    for i in range(0, len(accepts), 50):
        rpc.batch(accepts[i : i + 50])
    rpc.call("evm_mine", [])
    submit = next(i for i in market.abi if i.get("name") == "submit_proof")
    selector = selector_of(submit)
    check = encode_submit_proof(selector, pieces[addrs[0]][:2])
    assert check.hex() == market.encode_abi("submit_proof", args=[pieces[addrs[0]][:2]])[2:]
    schedule = deployment.schedule
    leaves = PIECE // 1024
    started = time.perf_counter()
    for n in range(periods):
        head = web3.eth.block_number
        period = schedule.period_of(head + 1)
        if head + 1 != schedule.seed_block(period):
            rpc.call("evm_mine", [])  # align: the next block is a seed block
            head += 1
            period = schedule.period_of(head + 1)
        rpc.call("evm_mine", [])  # the seed block
        seed = bytes(web3.eth.get_block(schedule.seed_block(period))["hash"])
        sends = []
        for a in addrs:
            proofs = [
                pieces[a][challenge.challenge_index(seed, a, period, i, leaves)]
                for i in range(params.challenges)
            ]
            sends.append(tx(a, market.address, encode_submit_proof(selector, proofs)))
        for i in range(0, len(sends), SEND_BATCH):
            rpc.batch(sends[i : i + SEND_BATCH])
        rpc.call("evm_mine", [])
        if n % 10 == 0:
            print(
                f"  generated period {n}/{periods} ({time.perf_counter() - started:.0f}s)",
                flush=True,
            )
    rpc.call("evm_setAutomine", [True])
    return node, web3, deployment, web3.eth.block_number


def baseline(web3, deployment, sample: int) -> float:
    """Seconds per proof event on the straightforward web3 path."""
    ledger = LedgerClient(web3, deployment)
    events = [e for e in ledger.events(deployment.deploy_block, kinds=[ProofSubmitted])][:sample]
    slots = {}
    start = time.perf_counter()
    for e in events:
        tx = web3.eth.get_transaction(e.tx_hash)
        _, args = ledger.market.decode_function_input(tx["input"])
        if e.provider not in slots:
            slots[e.provider] = ledger.slots(e.provider, e.epoch)
        sl = slots[e.provider]
        seed = bytes(web3.eth.get_block(deployment.schedule.seed_block(e.period))["hash"])
        weights = [s.leaves_in(e.period) for s in sl]
        for i, proof in enumerate(args["proofs"]):
            leaf, path = (proof["leaf"], proof["path"]) if isinstance(proof, dict) else proof
            idx = challenge.challenge_index(seed, e.provider, e.period, i, sum(weights))
            slot, at = challenge.locate(idx, weights)
            assert commitment.verify_leaf(sl[slot].piece_root, sl[slot].piece_size, at, leaf, path)
    return (time.perf_counter() - start) / max(len(events), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proofs", type=int, default=10_000)
    ap.add_argument("--providers", type=int, default=100)
    ap.add_argument("--baseline-sample", type=int, default=200)
    ap.add_argument("--profile", help="write a cProfile of the measured run here")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    periods = -(-args.proofs // args.providers)
    total = args.providers * periods
    print(f"generating {args.providers} providers x {periods} periods = {total} proofs")
    t0 = time.perf_counter()
    node, web3, deployment, head = generate(args.providers, periods, args.seed)
    print(f"generated in {time.perf_counter() - t0:.0f}s; head block {head}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = db.open_engine(f"sqlite:///{os.path.join(tmp, 'bench.db')}")
            rpc = RpcClient(node.url)
            ledger = LedgerClient(web3, deployment)
            indexer = Indexer(
                engine, rpc, deployment, ledger.market.abi, IndexerConfig(confirmations=0)
            )
            profiler = cProfile.Profile() if args.profile else None
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            if profiler:
                profiler.enable()
            indexer.run_until(head, poll=0.0)
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            elapsed = time.perf_counter() - start
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
            with engine.connect() as conn:
                proofs = conn.execute(select(func.count()).select_from(db.proofs)).scalar_one()
                valid = conn.execute(
                    select(func.count()).select_from(db.proofs).where(db.proofs.c.valid)
                ).scalar_one()
                events = conn.execute(select(func.count()).select_from(db.events)).scalar_one()
                alarms = conn.execute(select(func.count()).select_from(db.alarms)).scalar_one()
            per_base = baseline(web3, deployment, args.baseline_sample)
    finally:
        node.stop()
    rate = proofs / elapsed
    base_rate = 1 / per_base
    print()
    print(f"{'path':<44}{'proof events/s':>16}{'s':>10}")
    print(f"{'auditor indexer (batched, raw txs, checked)':<44}{rate:>16.0f}{elapsed:>10.1f}")
    print(f"{'baseline web3 per event (sample)':<44}{base_rate:>16.0f}{per_base * proofs:>10.1f}")
    print(f"proof events {proofs} (valid {valid}), all market events {events}, alarms {alarms}")
    fetch = indexer._prefetch_rpc
    by_method = Counter(rpc.seconds) + Counter(fetch.seconds)
    waited = sum(by_method.values())
    requests_sent = rpc.requests + fetch.requests
    print(
        f"indexer CPU {cpu:.1f}s for {elapsed:.1f}s wall; RPC requests {requests_sent}"
        f", waiting on the node {waited:.1f}s ({sum(fetch.seconds.values()):.1f}s of it on the"
        " prefetch thread)"
    )
    print("  waiting by method: " + ", ".join(f"{m} {s:.1f}s" for m, s in by_method.most_common()))
    print(
        json.dumps(
            {
                "events": proofs,
                "events_per_s": round(rate, 1),
                "all_events": events,
                "valid": valid,
                "alarms": alarms,
                "seconds": round(elapsed, 2),
                "cpu_seconds": round(cpu, 2),
                "rpc_wait_seconds": round(waited, 2),
                "baseline_events_per_s": round(base_rate, 1),
                "ratio": round(rate / base_rate, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
