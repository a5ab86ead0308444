"""
The client's home directory: what ``market init`` writes and every other command opens.

::

    <home>/config.toml       documented settings (market.config)
    <home>/deployment.json   the ledger's addresses, copied at init (--rpc overrides its URL)
    <home>/account.json      the Ethereum account, encrypted (Web3 Secret Storage)
    <home>/node.key          the P2P identity (Ed25519)
    <home>/market.db         SQLite database (unless config.toml names another URL)
    <home>/staging/          prepared shares of puts in progress
    <home>/downloads/        partial downloads of gets in progress (resumable)
    <home>/kad.table         the DHT routing table between runs

**The file secret** (the 32 bytes every file key derives from, node.pieces.crypto) is not
stored: it is derived from the account's private key with HKDF-SHA256 (RFC 5869; salt
``FILE_SECRET_SALT``, info ``FILE_SECRET_INFO``). So the account key alone, with a file's
manifest id, gets the file back: importing the same key into a fresh home
(``market init --import-key``) recovers every file. The secret is only as safe as the key,
which already controls the client's tokens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account.signers.local import LocalAccount

from contracts.deployment import Deployment
from contracts.errors import DeploymentError
from contracts.keystore import KeystoreError, create_keystore, load_keystore
from market.config import MarketConfig, load_config, render_config
from market.db import Database
from market.errors import ConfigError
from market.paths import HomePaths
from node.errors import KeyFileError
from node.identity import NodeKey

FILE_SECRET_SALT: Final = b"depot/market/file-secret/v1"
FILE_SECRET_INFO: Final = b"file-secret"
SECRET_SIZE: Final = 32


def file_secret(account: LocalAccount) -> bytes:
    """The client's 32-byte file secret, derived from its account key (module docstring)."""
    hkdf = HKDF(SHA256(), SECRET_SIZE, FILE_SECRET_SALT, FILE_SECRET_INFO)
    return hkdf.derive(bytes(account.key))


@dataclass(frozen=True)
class InitResult:
    home: Path
    address: str
    node_id: bytes
    database_url: str


def init_home(
    root: Path,
    *,
    deployment: Path,
    passphrase: str,
    rpc_url: str | None = None,
    import_key: bytes | None = None,
    config: MarketConfig | None = None,
) -> InitResult:
    """
    Create a home directory: config, deployment copy, keystore, node key, database.

    Refuses an existing home (one with a config.toml or a keystore): an account is never
    overwritten. Everything is written atomically; a failure removes what this call made.

    Raises
    ------
    ConfigError
        The home exists, or the deployment file is missing or malformed.
    """
    paths = HomePaths(root)
    if paths.config.exists() or paths.keystore.exists():
        raise ConfigError(f"{root} is already a market home (config.toml or account.json exist)")
    try:
        dep = Deployment.load(deployment)
    except DeploymentError as exc:
        raise ConfigError(str(exc)) from None
    if rpc_url:
        dep = replace(dep, rpc_url=rpc_url)
    config = config or MarketConfig()
    existed = root.exists()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        dep.save(paths.deployment(config))
        try:
            account = create_keystore(paths.keystore, passphrase, import_key)
        except (KeystoreError, ValueError) as exc:
            raise ConfigError(f"cannot create the account: {exc}") from None
        key = NodeKey.load_or_create(paths.node_key)
        paths.staging.mkdir(exist_ok=True)
        paths.downloads.mkdir(exist_ok=True)
        url = paths.database_url(config)
        db = Database(url)
        try:
            db.create()
        finally:
            db.close()
        _write_atomic(paths.config, render_config(config))
    except BaseException:
        if not existed:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for p in (paths.config, paths.keystore, paths.deployment(config), paths.node_key):
                with contextlib.suppress(OSError):
                    p.unlink()
        raise
    return InitResult(root, account.address, key.node_id, url)


@dataclass
class Home:
    """An opened home directory (config, deployment, database; the account on demand)."""

    paths: HomePaths
    config: MarketConfig
    deployment: Deployment
    db: Database

    @property
    def rpc_url(self) -> str:
        return self.config.chain.rpc_url or self.deployment.rpc_url

    def node_key(self) -> NodeKey:
        try:
            return NodeKey.load_or_create(self.paths.node_key)
        except KeyFileError as exc:
            raise ConfigError(str(exc)) from None

    def account(self, passphrase: str) -> LocalAccount:
        """Decrypt the account (``ConfigError`` on a wrong passphrase)."""
        try:
            return load_keystore(self.paths.keystore, passphrase)
        except KeystoreError as exc:
            raise ConfigError(str(exc)) from None

    def close(self) -> None:
        self.db.close()


def open_home(root: Path) -> Home:
    """Open an initialised home (``ConfigError`` if it is not one)."""
    paths = HomePaths(root)
    if not paths.config.exists():
        raise ConfigError(f"{root} is not a market home (run `market init --home {root}`)")
    config = load_config(paths.config)
    try:
        deployment = Deployment.load(paths.deployment(config))
    except DeploymentError as exc:
        raise ConfigError(str(exc)) from None
    db = Database(paths.database_url(config))
    db.check()
    paths.staging.mkdir(exist_ok=True)
    paths.downloads.mkdir(exist_ok=True)
    return Home(paths, config, deployment, db)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
