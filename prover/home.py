"""
The prover's data directory and ``prover init``.

    <home>/config.toml        commented configuration (prover.config)
    <home>/node.key           Ed25519 node identity (node.identity), mode 0600
    <home>/account.json       encrypted Ethereum keystore (contracts.keystore), mode 0600
    <home>/deployment.json    copy of the ledger's deployment file
    <home>/prover.db          SQLite metadata (unless database.url points elsewhere)
    <home>/blobs/             the blob store (prover.blobstore)
    <home>/kad.table          saved DHT routing table
    <home>/run.json           written by a running daemon once it is ready: pid, API URL,
                              P2P addresses (how the other commands find it)

The home is ``--home``, else ``$DEPOT_HOME``, else ``~/.depot/prover``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from contracts.deployment import Deployment
from contracts.keystore import KEYSTORE_NAME, create_keystore
from node.identity import NodeKey
from node.pieces.files import atomic_write
from prover.config import ProverConfig, load_config, render_toml
from prover.errors import HomeError

HOME_ENV: Final = "DEPOT_HOME"
DEFAULT_HOME: Final = Path("~/.depot/prover")


def resolve_home(path: str | None) -> Path:
    """The data directory: ``path``, else ``$DEPOT_HOME``, else ``~/.depot/prover``."""
    chosen = path or os.environ.get(HOME_ENV) or str(DEFAULT_HOME)
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class Home:
    """Where everything of one prover lives."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def key_path(self) -> Path:
        return self.root / "node.key"

    @property
    def keystore_path(self) -> Path:
        return self.root / KEYSTORE_NAME

    @property
    def run_path(self) -> Path:
        return self.root / "run.json"

    @property
    def table_path(self) -> Path:
        return self.root / "kad.table"

    def deployment_path(self, config: ProverConfig) -> Path:
        return self.root / config.chain.deployment

    def blob_path(self, config: ProverConfig) -> Path:
        return self.root / config.storage.path

    def database_url(self, config: ProverConfig) -> str:
        return config.database.url or f"sqlite:///{self.root / 'prover.db'}"

    def load_config(self) -> ProverConfig:
        """The configuration, or ``HomeError`` if the home was never initialised."""
        if not self.config_path.exists():
            raise HomeError(f"{self.root} is not a prover home (run `prover init` first)")
        return load_config(self.config_path)

    def load_deployment(self, config: ProverConfig) -> Deployment:
        return Deployment.load(self.deployment_path(config))

    # ------------------------------------------------------------------ run file

    def write_run_info(self, info: dict[str, Any]) -> None:
        atomic_write(self.run_path, json.dumps(info, indent=1).encode())

    def read_run_info(self) -> dict[str, Any] | None:
        """What a running daemon wrote, or ``None`` (no daemon, or a stale file)."""
        try:
            info = json.loads(self.run_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or not _alive(int(info.get("pid", 0))):
            return None
        return info

    def clear_run_info(self) -> None:
        self.run_path.unlink(missing_ok=True)


def init_home(
    home: Home,
    config: ProverConfig,
    deployment: Path,
    passphrase: str,
    *,
    private_key: bytes | None = None,
) -> dict[str, str]:
    """
    Create a prover home: directories, config, node key, keystore, deployment copy.

    Refuses an already initialised home (``HomeError``), so that an account is never
    overwritten. Returns what was created (node id, address, paths).
    """
    if home.config_path.exists():
        raise HomeError(f"{home.root} is already initialised ({home.config_path} exists)")
    loaded = Deployment.load(deployment)  # check it before writing anything
    home.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.keystore_path.exists():
        raise HomeError(f"{home.keystore_path} exists; refusing to overwrite an account")
    key = NodeKey.load_or_create(home.key_path)
    account = create_keystore(home.keystore_path, passphrase, private_key)
    target = home.deployment_path(config)
    target.parent.mkdir(parents=True, exist_ok=True)
    if deployment.resolve() != target.resolve():
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(deployment, tmp)
        os.replace(tmp, target)
    home.blob_path(config).mkdir(parents=True, exist_ok=True)
    atomic_write(home.config_path, render_toml(config).encode())
    return {
        "home": str(home.root),
        "node_id": key.node_id.hex(),
        "address": account.address,
        "chain_id": str(loaded.chain_id),
        "market": loaded.market,
        "config": str(home.config_path),
    }


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
