"""
The client's configuration: one documented dataclass per concern, read from config.toml.

``market init`` writes ``config.toml`` from these dataclasses (every key with its comment
and default, ``render_config``); ``load_config`` reads it back with ``tomllib``, refusing
unknown keys and values outside their domain with a ``ConfigError`` that names the key.
Token amounts are written as decimal strings of whole tokens (``"0.25"``) because TOML
integers stop at 2**63 and token base units (18 decimals) do not.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from market.errors import ConfigError, UsageError
from node.pieces.modes import Copies, ErasureCode, Mode

TOKEN_DECIMALS: Final = 18
TOKEN_UNIT: Final = 10**TOKEN_DECIMALS


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class ChainConfig:
    """Where the ledger is."""

    deployment: str = _doc(
        "Deployment file (written by `devnet up`), relative to the home directory.",
        "deployment.json",
    )
    rpc_url: str = _doc("JSON-RPC URL; empty: the deployment file's.", "")


@dataclass(frozen=True)
class NodeConfig:
    """The client's P2P node (transport, DHT, swarm)."""

    listen: str = _doc("HOST:PORT the node listens on (port 0: any free port).", "127.0.0.1:0")
    bootstrap: tuple[str, ...] = _doc("DHT bootstrap peers, NODE_ID_HEX@IP:PORT.", ())
    chain_bootstrap: bool = _doc(
        "Also join the DHT through the endpoints registered providers published on chain.",
        True,
    )
    exempt_loopback: bool = _doc(
        "Exempt loopback addresses from the DHT's IP-prefix limits (local devnets only).",
        False,
    )
    lookup_timeout: float = _doc("Seconds a DHT lookup may take.", 20.0)
    ping_timeout: float = _doc("Seconds to wait for a provider's answer to a latency ping.", 5.0)


@dataclass(frozen=True)
class DealsConfig:
    """How files are placed: redundancy, duration, prices, timeouts."""

    redundancy: str = _doc(
        'Default redundancy: "copies:R" (R full copies) or "ec:K-of-N" (erasure coding).',
        "copies:3",
    )
    duration_periods: int = _doc("Default deal length, in proving periods.", 100)
    max_price: str = _doc("Price cap in tokens per GiB per period; empty: no cap.", "")
    proposal_ttl_blocks: int = _doc(
        "A proposal may be accepted until this many blocks after it is signed.", 200
    )
    decision_timeout: float = _doc("Seconds for a provider to accept or refuse a proposal.", 15.0)
    upload_timeout: float = _doc(
        "Seconds without upload progress before a provider is given up (stall).", 60.0
    )
    activation_timeout: float = _doc(
        "Seconds for a provider to accept on chain once it stored the piece.", 120.0
    )
    parallel_uploads: int = _doc("Shares uploaded at once; 0: all of them.", 0)
    keep_staging: bool = _doc(
        "Keep the prepared shares after a successful put (they are deleted by default).", False
    )


@dataclass(frozen=True)
class ScoringConfig:
    """How providers are ranked (docs/market.md, "Provider score")."""

    window_periods: int = _doc("Recent periods over which proofs and faults are counted.", 20)
    history_periods: int = _doc(
        "Periods of history read for terminations and declared losses.", 1000
    )
    latency_reference_ms: float = _doc("Round-trip time that halves the latency sub-score.", 100.0)
    reputation: str = _doc(
        "Auditor reputation export (a file path or http(s) URL); empty: none.", ""
    )


@dataclass(frozen=True)
class RepairConfig:
    """When a file is repaired."""

    renew_before_periods: int = _doc(
        "Renew (or re-place) a share this many periods before its deal ends.", 5
    )
    miss_threshold: int = _doc("Unproven recent periods after which a provider counts as gone.", 2)
    watch_interval: float = _doc("Seconds between checks of `repair --watch`.", 30.0)


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the client's records are kept."""

    url: str = _doc(
        "SQLAlchemy URL; empty: sqlite in the home directory (market.db). "
        "A postgresql:// URL works too.",
        "",
    )


@dataclass(frozen=True)
class MarketConfig:
    """Everything in config.toml."""

    chain: ChainConfig = field(default_factory=ChainConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    deals: DealsConfig = field(default_factory=DealsConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)

    def __post_init__(self) -> None:
        parse_redundancy(self.deals.redundancy)
        parse_listen(self.node.listen)
        parse_token_amount(self.deals.max_price)
        positive = {
            "deals.duration_periods": self.deals.duration_periods,
            "deals.proposal_ttl_blocks": self.deals.proposal_ttl_blocks,
            "deals.decision_timeout": self.deals.decision_timeout,
            "deals.upload_timeout": self.deals.upload_timeout,
            "deals.activation_timeout": self.deals.activation_timeout,
            "node.lookup_timeout": self.node.lookup_timeout,
            "node.ping_timeout": self.node.ping_timeout,
            "scoring.window_periods": self.scoring.window_periods,
            "scoring.history_periods": self.scoring.history_periods,
            "scoring.latency_reference_ms": self.scoring.latency_reference_ms,
            "repair.miss_threshold": self.repair.miss_threshold,
            "repair.watch_interval": self.repair.watch_interval,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be positive, not {value}")
        if self.deals.parallel_uploads < 0 or self.repair.renew_before_periods < 0:
            raise ConfigError("deals.parallel_uploads and repair.renew_before_periods >= 0")


_CLASSES: Final[dict[str, type]] = {
    "chain": ChainConfig,
    "node": NodeConfig,
    "deals": DealsConfig,
    "scoring": ScoringConfig,
    "repair": RepairConfig,
    "database": DatabaseConfig,
}


def render_config(config: MarketConfig | None = None) -> str:
    """config.toml text: every section and key with its comment, from ``config``."""
    config = config or MarketConfig()
    lines = [
        "# Depot market client configuration (docs/market.md).",
        "# Every key is shown with its default; delete a key to go back to the default.",
        "",
    ]
    for name, cls in _CLASSES.items():
        section = getattr(config, name)
        lines.append(f"[{name}]")
        lines.append(f"# {(cls.__doc__ or '').strip()}")
        for f in dataclasses.fields(cls):
            lines.append(f"# {f.metadata['doc']}")
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML rendering for {value!r}")


def load_config(path: Path) -> MarketConfig:
    """
    Read ``config.toml``; missing keys take their defaults.

    Raises
    ------
    ConfigError
        The file is missing, not TOML, has an unknown section or key, or a bad value.
    """
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no config at {path} (run `market init`)") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config_from_dict(data, str(path))


def config_from_dict(data: dict[str, Any], origin: str = "config") -> MarketConfig:
    """A ``MarketConfig`` from parsed TOML (see ``load_config``)."""
    sections: dict[str, Any] = {}
    for name, values in data.items():
        cls = _CLASSES.get(name)
        if cls is None:
            raise ConfigError(f"{origin}: unknown section [{name}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{name}] must be a table")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            f = fields.get(key)
            if f is None:
                raise ConfigError(f"{origin}: unknown key {name}.{key}")
            kwargs[key] = _coerce(f"{name}.{key}", f.default, value, origin)
        sections[name] = cls(**kwargs)
    try:
        return MarketConfig(**sections)
    except (ConfigError, UsageError) as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _coerce(key: str, default: object, value: object, origin: str) -> object:
    """Check ``value`` against the type of the field's default."""
    ok: bool
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value  # type: ignore[arg-type]
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value  # type: ignore[arg-type]
    else:  # pragma: no cover - every field has one of the types above
        ok = False
    if not ok:
        raise ConfigError(f"{origin}: {key} must be a {type(default).__name__}, not {value!r}")
    return value


# ----------------------------------------------------------------------------- values


def parse_redundancy(text: str) -> Mode:
    """``"copies:3"`` -> ``Copies(3)``; ``"ec:3-of-5"`` -> ``ErasureCode(3, 5)``."""
    kind, _, rest = text.strip().partition(":")
    try:
        if kind == "copies":
            return Copies(int(rest))
        if kind == "ec":
            k, _, n = rest.partition("-of-")
            return ErasureCode(int(k), int(n))
    except ValueError:
        pass
    except Exception as exc:  # node.pieces.errors.InvalidArgument: k > n, n > 256...
        raise UsageError(f"bad redundancy {text!r}: {exc}") from None
    raise UsageError(f'bad redundancy {text!r}: write "copies:R" or "ec:K-of-N"')


def redundancy_text(mode: Mode) -> str:
    """The inverse of ``parse_redundancy``."""
    return f"copies:{mode.n}" if isinstance(mode, Copies) else f"ec:{mode.k}-of-{mode.n}"


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:0"`` -> ``("127.0.0.1", 0)`` (``[v6]:port`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise UsageError(f"bad listen address {text!r}: write HOST:PORT")
    return host.strip("[]"), int(port)


def parse_token_amount(text: str) -> int | None:
    """Whole tokens as a decimal string -> base units (``""`` -> ``None``: no amount)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UsageError(f"bad token amount {text!r}: write a decimal like 0.25") from None
    units = value * TOKEN_UNIT
    if not value.is_finite() or value < 0 or units != units.to_integral_value():
        raise UsageError(f"bad token amount {text!r}: at most {TOKEN_DECIMALS} decimals, >= 0")
    return int(units)


def format_tokens(units: int) -> str:
    """Base units -> whole tokens, without trailing zeros (``2500...0`` -> ``"0.25"``)."""
    whole, frac = divmod(units, TOKEN_UNIT)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{TOKEN_DECIMALS}d}".rstrip("0")
