"""
The auditor's configuration: ``config.toml`` in its home, one documented dataclass per
component (``IndexerConfig``, ``RpcConfig``, ``BountyConfig``, ``RetrievalConfig``) under
one ``AuditorConfig``. ``auditor init`` writes ``DEFAULT_TOML`` (every key, commented, at its
default); unknown keys and values of the wrong type are a ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from market.auditor.bounty import BountyConfig
from market.auditor.errors import ConfigError
from market.auditor.indexer import IndexerConfig
from market.auditor.retrieval import RetrievalConfig
from market.auditor.rpc import RpcConfig

HOME_ENV: Final = "DEPOT_HOME"
DEFAULT_HOME: Final = Path("~/.depot/auditor")
CONFIG_NAME: Final = "config.toml"
DEPLOYMENT_NAME: Final = "deployment.json"
NODE_KEY_NAME: Final = "node.key"
DATABASE_NAME: Final = "auditor.db"
REPORT_DIR: Final = "report"


@dataclass(frozen=True)
class AuditorConfig:
    """Everything ``auditor run`` reads from ``config.toml``."""

    database: str = ""
    """SQLAlchemy URL; empty: SQLite ``auditor.db`` in the home (PostgreSQL:
    ``postgresql+psycopg://user@host/db``)."""
    rpc_url: str = ""
    """JSON-RPC endpoint; empty: the deployment file's."""
    listen: str = "127.0.0.1:0"
    """P2P address for retrieval checks and DHT lookups (HOST:PORT; port 0: any)."""
    bootstrap: tuple[str, ...] = ()
    """DHT peers ``<node id hex>@HOST:PORT``; none: dial providers' on-chain endpoints."""
    api: str = "127.0.0.1:8700"
    """Where the JSON API, the report and /metrics are served (HOST:PORT)."""
    poll_interval: float = 1.0
    """Seconds between indexer steps once caught up."""
    report_interval: float = 30.0
    """Seconds between two rewrites of the report files."""
    indexer: IndexerConfig = field(default_factory=IndexerConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    bounty: BountyConfig = field(default_factory=BountyConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)


SECTIONS: Final = {
    "indexer": IndexerConfig,
    "rpc": RpcConfig,
    "bounty": BountyConfig,
    "retrieval": RetrievalConfig,
}

DEFAULT_TOML: Final = """\
# Depot auditor configuration (docs/auditor.md). Every key is shown at its default.

[auditor]
# SQLAlchemy URL of the database; empty: SQLite auditor.db in this directory.
# PostgreSQL works too, e.g. "postgresql+psycopg://auditor@localhost/depot".
database = ""
# JSON-RPC endpoint; empty: the RPC URL of deployment.json.
rpc_url = ""
# P2P address for retrieval checks (HOST:PORT, port 0 = any free port).
listen = "127.0.0.1:0"
# DHT peers "<node id hex>@HOST:PORT"; without them providers are dialled at the
# endpoint they registered on chain.
bootstrap = []
# JSON API, HTML report and Prometheus /metrics.
api = "127.0.0.1:8700"
# Seconds between indexer steps once caught up with the chain.
poll_interval = 1.0
# Seconds between rewrites of report/reputation.json and report/report.html.
report_interval = 30.0

[indexer]
# Blocks below the head before a block is indexed (deeper reorgs are rolled back later).
confirmations = 2
# Most blocks per indexing step (one database transaction).
batch_blocks = 1000
# Read every transaction of every block to find reverted proof transactions too.
scan_failed_proofs = true
# Most raw transactions held per step (a proof transaction is ~60 KB).
max_txs = 400
# Read the next range on a second thread while the current one is judged.
prefetch = true
# Check each block's logs against its receipts root (needs eth_getBlockReceipts).
verify_logs = true

[rpc]
timeout = 30.0          # seconds per request
batch_size = 100        # calls per JSON-RPC batch
log_range = 2000        # blocks per eth_getLogs
attempts = 4            # tries per request
backoff = 0.25          # seconds before the first retry, doubled each time
max_backoff = 10.0

[bounty]
# Report missed proofs for their bounty (needs ETH for gas in the account).
enabled = true
# Value of one token in ETH, to weigh a bounty against the gas of reporting it.
token_price_eth = 0.001
# Report only if the bounty is worth this many times its gas.
min_profit_ratio = 2.0

[retrieval]
# Fetch random chunks of live deals from their providers and verify them.
enabled = true
interval = 30.0         # seconds between rounds
deals_per_round = 4
timeout = 20.0          # seconds per probe
"""


def home_dir(value: str | None) -> Path:
    """``--home``, else ``$DEPOT_HOME``, else ``~/.depot/auditor``."""
    raw = value or os.environ.get(HOME_ENV) or str(DEFAULT_HOME)
    return Path(raw).expanduser()


def _build(cls: type[Any], values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(sorted(unknown))}")
    kwargs = {}
    defaults = cls()
    for name, raw in values.items():
        default = getattr(defaults, name)
        value = raw
        if isinstance(default, bool) or isinstance(raw, bool):
            ok = isinstance(raw, bool) and isinstance(default, bool)
        elif isinstance(default, float):
            ok = isinstance(raw, int | float)
            value = float(raw)
        elif isinstance(default, tuple):
            ok = isinstance(raw, list) and all(isinstance(v, str) for v in raw)
            value = tuple(raw) if ok else raw
        else:
            ok = isinstance(raw, type(default))
        if not ok:
            raise ConfigError(f"[{where}] {name} = {raw!r}: expected {type(default).__name__}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{where}]: {exc}") from None


def parse_config(text: str) -> AuditorConfig:
    """An ``AuditorConfig`` from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config.toml: {exc}") from None
    unknown = set(data) - {"auditor", *SECTIONS}
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    top = dict(data.get("auditor", {}))
    sections = {name: _build(cls, data.get(name, {}), name) for name, cls in SECTIONS.items()}
    base: AuditorConfig = _build(AuditorConfig, top, "auditor")
    return dataclasses.replace(base, **sections)


def load_config(home: Path) -> AuditorConfig:
    """``config.toml`` of ``home``."""
    path = home / CONFIG_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no {path}: run `auditor init` first") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse_config(text)


def database_url(config: AuditorConfig, home: Path) -> str:
    return config.database or f"sqlite:///{home / DATABASE_NAME}"


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{what} must be HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
