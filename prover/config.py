"""
The prover's configuration: one documented dataclass per component, read from
``config.toml`` in the data directory.

Every field carries its documentation and its kind in ``dataclasses.field`` metadata, so the
commented ``config.toml`` that ``prover init`` writes (``render_toml``) and the parser
(``load_config``) come from the same place as the defaults. Values in the file:

- token amounts are whole tokens, as a decimal string or an integer (``"0.001"``,
  ``2000``); the token has 18 decimals (``contracts.deployment.TOKEN_UNIT``). TOML integers
  are 64-bit, too small for base units, hence strings.
- sizes are bytes, or strings with a binary or decimal unit (``"100 GiB"``, ``"4 MB"``).
- durations are seconds (floats allowed).
- addresses are ``host:port`` (``[v6]:port`` for IPv6).

Unknown sections or keys, or a value of the wrong kind, are a ``ConfigError`` naming the
key, never a silent default.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from contracts.deployment import TOKEN_UNIT
from prover.errors import ConfigError

KIB: Final = 1024
MIB: Final = KIB * KIB
GIB: Final = MIB * KIB
_UNITS: Final = {
    "": 1,
    "b": 1,
    "kib": KIB,
    "mib": MIB,
    "gib": GIB,
    "tib": GIB * KIB,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
_SIZE_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _f(default: Any, kind: str, doc: str) -> Any:
    """A config field: its default, how it is written in TOML, and its documentation."""
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: tuple(default), metadata={"kind": kind, "doc": doc})
    return field(default=default, metadata={"kind": kind, "doc": doc})


@dataclass(frozen=True)
class ChainConfig:
    """The ledger: where it is, how often it is read, how transactions are sent."""

    rpc_url: str = _f("", "str", "JSON-RPC endpoint; empty: the deployment file's rpc_url.")
    deployment: str = _f(
        "deployment.json", "str", "Deployment file (relative to the data directory)."
    )
    poll_interval: float = _f(0.5, "duration", "Seconds between reads of the chain head.")
    confirmations: int = _f(
        0, "int", "Blocks an event must be buried under before it is applied (reorg safety)."
    )
    rpc_timeout: float = _f(10.0, "duration", "Seconds before an RPC request is given up.")
    retry_initial: float = _f(
        0.5, "duration", "First wait after the RPC endpoint failed; doubled up to retry_max."
    )
    retry_max: float = _f(15.0, "duration", "Longest wait between retries of the RPC endpoint.")
    resubmit_after: float = _f(
        4.0,
        "duration",
        "Seconds without a receipt before a transaction is resent with higher fees.",
    )
    max_resubmits: int = _f(8, "int", "Fee bumps before a transaction counts as stuck.")
    fee_bump: float = _f(1.125, "float", "Factor on both fees at each resubmission (>= 1.1).")
    stake: int = _f(2000 * TOKEN_UNIT, "amount", "Stake deposited when registering (tokens).")
    devnet_faucet: bool = _f(
        False, "bool", "Mint missing stake from the token's faucet (devnet tokens only)."
    )

    def validate(self) -> None:
        _positive(self, "poll_interval", "rpc_timeout", "retry_initial", "resubmit_after")
        if self.retry_max < self.retry_initial:
            raise ConfigError("chain.retry_max must be >= chain.retry_initial")
        if self.confirmations < 0 or self.max_resubmits < 0:
            raise ConfigError("chain.confirmations and chain.max_resubmits must be >= 0")
        if self.fee_bump < 1.1:
            raise ConfigError("chain.fee_bump must be >= 1.1 (nodes refuse smaller bumps)")


@dataclass(frozen=True)
class P2PConfig:
    """The node: where it listens, what it tells others, whom it joins through."""

    listen: str = _f("127.0.0.1:4001", "addr", "Address the P2P node listens on (port 0: any).")
    advertise: str = _f(
        "",
        "str",
        "host:port registered on chain and told to peers; empty: the listen address "
        "(which must then be dialable, not 0.0.0.0).",
    )
    bootstrap: tuple[str, ...] = _f(
        [], "peers", "DHT peers to join through, each <node id hex>@<ip>:<port>."
    )
    directory_interval: float = _f(
        15.0, "duration", "Seconds between refreshes of the staked-provider set (DHT policy)."
    )

    def validate(self) -> None:
        parse_addr(self.listen, "p2p.listen")
        if self.advertise:
            host, port = parse_addr(self.advertise, "p2p.advertise")
            if port == 0 or host in ("0.0.0.0", "::"):
                raise ConfigError("p2p.advertise must be a dialable host and port")
        _positive(self, "directory_interval")


@dataclass(frozen=True)
class StorageConfig:
    """The blob store: where pieces live and how much of the disk they may take."""

    path: str = _f("blobs", "str", "Blob store directory (relative to the data directory).")
    capacity: int = _f(100 * GIB, "size", "Most bytes of pieces held at once.")
    reserve: int = _f(1 * GIB, "size", "Disk space always left free beside the pieces.")
    scrub_rate: int = _f(
        16 * MIB,
        "size",
        "Bytes per second re-hashed by the background scrub (0: existence checks only).",
    )

    def validate(self) -> None:
        if self.capacity <= 0 or self.reserve < 0 or self.scrub_rate < 0:
            raise ConfigError("storage.capacity must be > 0, reserve and scrub_rate >= 0")


@dataclass(frozen=True)
class OfferConfig:
    """The ask: prices and limits of the deals this provider takes."""

    price_per_gib_period: int = _f(
        TOKEN_UNIT // 1000, "amount", "Price per GiB per proving period (tokens)."
    )
    collateral_per_gib: int = _f(
        TOKEN_UNIT // 10, "amount", "Collateral locked per GiB stored (tokens)."
    )
    min_piece_size: int = _f(1, "size", "Smallest piece taken.")
    max_piece_size: int = _f(4 * GIB, "size", "Largest piece taken.")
    max_periods: int = _f(100_000, "int", "Longest deal taken, in proving periods.")
    min_expiry_blocks: int = _f(
        8, "int", "A proposal must stay acceptable at least this many blocks from now."
    )
    push_timeout: float = _f(
        600.0, "duration", "Seconds a client has to start and finish the upload of a piece."
    )
    ask_interval: float = _f(
        300.0, "duration", "Seconds between republications of the ask (free space changes)."
    )

    def validate(self) -> None:
        if not 0 < self.min_piece_size <= self.max_piece_size:
            raise ConfigError("offer: need 0 < min_piece_size <= max_piece_size")
        if self.max_periods < 1 or self.min_expiry_blocks < 1:
            raise ConfigError("offer.max_periods and offer.min_expiry_blocks must be >= 1")
        if self.price_per_gib_period < 0 or self.collateral_per_gib < 0:
            raise ConfigError("offer prices must be >= 0")
        _positive(self, "push_timeout", "ask_interval")


@dataclass(frozen=True)
class ProvingConfig:
    """Proofs, settlement and scrubbing."""

    margin_blocks: int = _f(
        2,
        "int",
        "Safety margin: a proof not mined this many blocks before its window closes is "
        "logged as late and counted in the metrics.",
    )
    settle_interval_periods: int = _f(
        10, "int", "Collect payments of running deals every this many periods."
    )
    cross_check_periods: int = _f(
        10,
        "int",
        "Check the locally located challenges against the contract's every this many "
        "periods (0: never).",
    )

    def validate(self) -> None:
        if self.margin_blocks < 0 or self.cross_check_periods < 0:
            raise ConfigError("proving.margin_blocks and cross_check_periods must be >= 0")
        if self.settle_interval_periods < 1:
            raise ConfigError("proving.settle_interval_periods must be >= 1")


@dataclass(frozen=True)
class ApiConfig:
    """The local HTTP API (status, deals, proofs, earnings, /metrics)."""

    listen: str = _f("127.0.0.1:7401", "addr", "Address of the HTTP API (port 0: any).")
    enabled: bool = _f(True, "bool", "Serve the HTTP API.")

    def validate(self) -> None:
        parse_addr(self.listen, "api.listen")


@dataclass(frozen=True)
class DatabaseConfig:
    """The metadata database."""

    url: str = _f("", "str", "SQLAlchemy URL; empty: SQLite prover.db in the data directory.")

    def validate(self) -> None:
        return None


@dataclass(frozen=True)
class LogConfig:
    """Logs (stderr)."""

    level: str = _f("info", "str", "debug, info, warning or error.")
    format: str = _f("kv", "str", "kv (key=value lines) or json (one object per line).")

    def validate(self) -> None:
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log.level {self.level!r} is not debug, info, warning or error")
        if self.format not in ("kv", "json"):
            raise ConfigError(f"log.format {self.format!r} is not kv or json")


@dataclass(frozen=True)
class ProverConfig:
    """Everything ``prover run`` is configured with, one section per component."""

    chain: ChainConfig = field(default_factory=ChainConfig)
    p2p: P2PConfig = field(default_factory=P2PConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    offer: OfferConfig = field(default_factory=OfferConfig)
    proving: ProvingConfig = field(default_factory=ProvingConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def validate(self) -> ProverConfig:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        return self

    def with_values(self, section: str, **values: Any) -> ProverConfig:
        """A copy with some raw (TOML-style) values of one section replaced and checked."""
        current = getattr(self, section)
        parsed = {
            k: _parse(f"{section}.{k}", _field(current, section, k), v) for k, v in values.items()
        }
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **parsed)})

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """The configuration as plain values (amounts in base units), e.g. for the API."""
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self)}


SECTIONS: Final = {f.name: f.type for f in dataclasses.fields(ProverConfig)}


def load_config(path: str | Path) -> ProverConfig:
    """
    Read and check ``config.toml``.

    Raises
    ------
    ConfigError
        The file is missing, not TOML, has unknown keys, or a value is out of range.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"no configuration at {path} (run `prover init` first)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return config_from_dict(data)


def config_from_dict(data: Mapping[str, Any]) -> ProverConfig:
    """A checked ``ProverConfig`` from parsed TOML (missing keys take their defaults)."""
    config = ProverConfig()
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown configuration section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        config = config.with_values(section, **values)
    return config.validate()


def render_toml(config: ProverConfig | None = None) -> str:
    """The commented ``config.toml`` for ``config`` (default: the defaults)."""
    config = config or ProverConfig()
    lines = [
        "# Depot prover configuration (written by `prover init`; read by `prover run`).",
        '# Amounts are whole tokens (decimal strings), sizes bytes or "<n> GiB",',
        "# durations seconds. Every key is optional: a missing key takes the default shown.",
    ]
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        lines += ["", f"# {type(section).__doc__}", f"[{f.name}]"]
        for sf in dataclasses.fields(section):
            lines.append(f"# {sf.metadata['doc']}")
            lines.append(f"{sf.name} = {_render(sf.metadata['kind'], getattr(section, sf.name))}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- values


def parse_addr(text: str, where: str = "address") -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) as a pair; ``ConfigError`` if it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: {text!r} is not host:port")
    return host.strip("[]"), int(port)


def parse_amount(value: Any, where: str = "amount") -> int:
    """Whole tokens (int or decimal string) to base units; exact or ``ConfigError``."""
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise ConfigError(f"{where}: expected a token amount, got {value!r}")
    try:
        tokens = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{where}: {value!r} is not a number of tokens") from None
    units = tokens * TOKEN_UNIT
    if not tokens.is_finite() or units < 0 or units != units.to_integral_value():
        raise ConfigError(f"{where}: {value!r} is not a non-negative amount of at most 18 decimals")
    return int(units)


def format_amount(units: int) -> str:
    """Base units as whole tokens, without trailing zeros (``"0.001"``)."""
    text = format(Decimal(units) / TOKEN_UNIT, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_size(value: Any, where: str = "size") -> int:
    """Bytes from an int or a string with a unit (``"4 GiB"``, ``"500 MB"``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{where}: negative size")
        return value
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if match is None or match.group(2).lower() not in _UNITS:
        raise ConfigError(f'{where}: {value!r} is not a size such as 1048576 or "4 GiB"')
    return int(Decimal(match.group(1)) * _UNITS[match.group(2).lower()])


def format_size(size: int) -> str:
    """The largest binary unit that shows ``size`` exactly, else bytes."""
    for unit, factor in (("TiB", GIB * KIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size and size % factor == 0:
            return f"{size // factor} {unit}"
    return str(size)


def _parse(where: str, kind: str, value: Any) -> Any:
    if kind == "amount":
        return parse_amount(value, where)
    if kind == "size":
        return parse_size(value, where)
    if kind in ("str", "addr"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if kind == "addr":
            parse_addr(value, where)
        return value
    if kind == "peers":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind in ("float", "duration"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    raise ConfigError(f"{where}: unknown kind {kind}")  # pragma: no cover (a bug here)


def _render(kind: str, value: Any) -> str:
    if kind == "amount":
        return f'"{format_amount(value)}"'
    if kind == "size":
        text = format_size(value)
        return text if text.isdigit() else f'"{text}"'
    if kind in ("str", "addr"):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if kind == "peers":
        return "[" + ", ".join(json.dumps(str(v)) for v in value) + "]"
    if kind == "bool":
        return "true" if value else "false"
    return repr(value)


def _field(section: Any, name: str, key: str) -> str:
    for f in dataclasses.fields(section):
        if f.name == key:
            return str(f.metadata["kind"])
    raise ConfigError(f"unknown configuration key {name}.{key}")


def _positive(section: Any, *names: str) -> None:
    for name in names:
        if getattr(section, name) <= 0:
            raise ConfigError(f"{type(section).__name__}.{name} must be > 0")
