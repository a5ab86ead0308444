#!/usr/bin/env python3
"""
Deploy Token + StorageMarket onto any JSON-RPC endpoint (testnet, L2, or a local node) from
the committed artifacts, and write the deployment file every component reads.

Unlike ``devnet deploy`` this funds nobody and deploys the token without its faucet unless
asked. The deployer key comes from an environment variable or an encrypted keystore file
(eth-account's JSON v3), never from the command line.

Usage:
    DEPLOYER_KEY=0x... .venv/bin/python scripts/deploy.py --rpc URL [--out deployment.json]
    .venv/bin/python scripts/deploy.py --rpc URL --keystore key.json   # asks the password
    options: --period-blocks N --challenges N --min-stake TOKENS --unbonding-periods N
             --max-misses N --miss-slash-bps N --bounty-bps N --max-piece-size BYTES --faucet
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from eth_account import Account

from contracts.chain import LedgerClient, connect
from contracts.deployment import TOKEN_UNIT, MarketParams
from contracts.devnet import deploy
from contracts.errors import LedgerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="deploy the Depot ledger")
    parser.add_argument("--rpc", required=True, help="JSON-RPC URL")
    parser.add_argument("--out", default="deployment.json")
    parser.add_argument("--key-env", default="DEPLOYER_KEY", help="env var with the key")
    parser.add_argument("--keystore", type=Path, help="encrypted key file (asks the password)")
    parser.add_argument("--faucet", action="store_true", help="let anyone mint (test networks)")
    defaults = MarketParams()
    parser.add_argument("--period-blocks", type=int, default=defaults.period_blocks)
    parser.add_argument("--challenges", type=int, default=defaults.challenges)
    parser.add_argument("--min-stake", type=int, default=defaults.min_stake // TOKEN_UNIT)
    parser.add_argument("--unbonding-periods", type=int, default=defaults.unbonding_periods)
    parser.add_argument("--max-misses", type=int, default=defaults.max_consecutive_misses)
    parser.add_argument("--miss-slash-bps", type=int, default=defaults.miss_slash_bps)
    parser.add_argument("--bounty-bps", type=int, default=defaults.bounty_bps)
    parser.add_argument("--max-piece-size", type=int, default=defaults.max_piece_size)
    args = parser.parse_args(argv)

    if args.keystore:
        password = getpass.getpass(f"password for {args.keystore}: ")
        key = Account.decrypt(json.loads(args.keystore.read_text()), password)
    elif os.environ.get(args.key_env):
        key = os.environ[args.key_env]
    else:
        print(f"deploy: set {args.key_env} or pass --keystore", file=sys.stderr)
        return 2
    try:
        params = MarketParams(
            period_blocks=args.period_blocks,
            challenges=args.challenges,
            min_stake=args.min_stake * TOKEN_UNIT,
            unbonding_periods=args.unbonding_periods,
            max_consecutive_misses=args.max_misses,
            miss_slash_bps=args.miss_slash_bps,
            bounty_bps=args.bounty_bps,
            max_piece_size=args.max_piece_size,
        )
        web3 = connect(args.rpc)
        deployment = deploy(
            web3, Account.from_key(key), params, faucet=args.faucet, rpc_url=args.rpc
        )
        if LedgerClient(web3, deployment).chain_params() != params:
            print("deploy: the deployed parameters do not read back", file=sys.stderr)
            return 1
    except LedgerError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    deployment.save(args.out)
    print(json.dumps(deployment.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
