"""
Encrypted Ethereum accounts for the daemons (Web3 Secret Storage, scrypt + AES-128-CTR,
as written by eth-account / geth).

The passphrase comes, in this order, from an explicit value, a file (``--passphrase-file``),
the environment variable ``DEPOT_PASSPHRASE``, or an interactive prompt. A missing
passphrase with no terminal to ask on is a clear error, never a hang.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Final

from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts.errors import LedgerError

PASSPHRASE_ENV: Final = "DEPOT_PASSPHRASE"
KEYSTORE_NAME: Final = "account.json"


class KeystoreError(LedgerError):
    """The keystore is missing, unreadable, or the passphrase is wrong."""


def read_passphrase(
    *, value: str | None = None, file: str | os.PathLike[str] | None = None, confirm: bool = False
) -> str:
    """
    The keystore passphrase from a value, a file, ``$DEPOT_PASSPHRASE`` or a prompt.

    Parameters
    ----------
    value :
        Used as is when given.
    file :
        A file whose first line is the passphrase.
    confirm :
        When prompting, ask twice (for a new keystore).
    """
    if value is not None:
        return value
    if file is not None:
        try:
            return Path(file).read_text().splitlines()[0] if Path(file).stat().st_size else ""
        except OSError as exc:
            raise KeystoreError(f"cannot read passphrase file {file}: {exc.strerror}") from None
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise KeystoreError(
            f"no passphrase: give --passphrase-file or set {PASSPHRASE_ENV} (no terminal to ask)"
        )
    first = getpass.getpass("Keystore passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise KeystoreError("the passphrases do not match")
    return first


def create_keystore(
    path: str | os.PathLike[str], passphrase: str, private_key: bytes | None = None
) -> LocalAccount:
    """
    Create an account (or import ``private_key``) and write its encrypted keystore
    atomically to ``path`` (mode 0600). Refuses to overwrite an existing keystore.
    """
    target = Path(path)
    if target.exists():
        raise KeystoreError(f"{target} already exists; refusing to overwrite an account")
    account: LocalAccount = (
        Account.from_key(private_key) if private_key is not None else Account.create()
    )
    encrypted = Account.encrypt(account.key, passphrase)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".account-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(encrypted, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return account


def load_keystore(path: str | os.PathLike[str], passphrase: str) -> LocalAccount:
    """Decrypt the keystore at ``path``; a wrong passphrase is a ``KeystoreError``."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KeystoreError(f"no keystore at {path} (run init first)") from None
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"unreadable keystore {path}: {exc}") from None
    try:
        key = Account.decrypt(data, passphrase)
    except ValueError:
        raise KeystoreError(f"wrong passphrase for {path}") from None
    account: LocalAccount = Account.from_key(key)
    return account
