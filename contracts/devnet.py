"""
The devnet: anvil plus a deployed ledger, for tests, the demo and local development.
(Work in progress: dev accounts only.)
"""

from __future__ import annotations

import functools
from typing import Final

from eth_account import Account
from eth_account.signers.local import LocalAccount

DEV_MNEMONIC: Final = "test test test test test test test test test test test junk"
"""anvil's (and hardhat's) default mnemonic: public, for devnets only."""


@functools.cache
def _dev_account(index: int) -> LocalAccount:
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(
        DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return account


def dev_accounts(count: int = 10) -> list[LocalAccount]:
    """The first ``count`` accounts of anvil's default mnemonic (BIP-44 path m/44'/60'/0'/0/i)."""
    return [_dev_account(i) for i in range(count)]
