"""The configuration: the commented file round-trips, values are parsed exactly, junk is refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from prover.config import (
    GIB,
    MIB,
    ProverConfig,
    config_from_dict,
    format_amount,
    load_config,
    parse_addr,
    parse_amount,
    parse_size,
    render_toml,
)
from prover.errors import ConfigError

TOKEN = 10**18


def test_the_rendered_defaults_parse_back_to_the_defaults() -> None:
    text = render_toml()
    assert config_from_dict(tomllib.loads(text)) == ProverConfig()
    # Every key is documented in the file.
    for line_no, line in enumerate(text.splitlines()):
        if "=" in line and not line.startswith("#"):
            assert text.splitlines()[line_no - 1].startswith("# ")


def test_a_changed_config_round_trips(tmp_path: Path) -> None:
    config = (
        ProverConfig()
        .with_values("offer", price_per_gib_period="0.000000000000000123", max_periods=7)
        .with_values("storage", capacity="3 TiB", reserve=12345)
        .with_values("p2p", bootstrap=["ab" * 32 + "@127.0.0.1:4001"], advertise="10.0.0.1:4001")
        .with_values("chain", stake="123456789.5", rpc_url='http://x/"q"')
    )
    path = tmp_path / "config.toml"
    path.write_text(render_toml(config))
    loaded = load_config(path)
    assert loaded == config
    assert loaded.offer.price_per_gib_period == 123
    assert loaded.chain.stake == 123456789 * TOKEN + TOKEN // 2
    assert loaded.storage.capacity == 3 << 40


def test_missing_keys_take_their_defaults() -> None:
    config = config_from_dict({"offer": {"max_periods": 9}})
    assert config.offer.max_periods == 9
    assert config.chain == ProverConfig().chain


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"nope": {}}, "unknown configuration section"),
        ({"chain": {"nope": 1}}, "unknown configuration key chain.nope"),
        ({"chain": []}, "must be a table"),
        ({"chain": {"poll_interval": "fast"}}, "expected a number"),
        ({"chain": {"poll_interval": 0}}, "must be > 0"),
        ({"chain": {"confirmations": True}}, "expected an integer"),
        ({"chain": {"fee_bump": 1.05}}, "fee_bump"),
        ({"chain": {"stake": "-1"}}, "non-negative"),
        ({"chain": {"stake": "0.0000000000000000001"}}, "18 decimals"),
        ({"p2p": {"listen": "nowhere"}}, "not host:port"),
        ({"p2p": {"advertise": "0.0.0.0:4001"}}, "dialable"),
        ({"p2p": {"bootstrap": "x"}}, "list of strings"),
        ({"storage": {"capacity": "12 parsecs"}}, "not a size"),
        ({"storage": {"capacity": 0}}, "capacity"),
        ({"offer": {"min_piece_size": 10, "max_piece_size": 5}}, "min_piece_size"),
        ({"api": {"enabled": "yes"}}, "true or false"),
        ({"log": {"format": "xml"}}, "kv or json"),
    ],
)
def test_bad_values_are_refused_with_the_key(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        config_from_dict(data)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prover init"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[chain\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_value_parsers() -> None:
    assert parse_amount("1") == TOKEN and parse_amount(2) == 2 * TOKEN
    assert parse_amount("0.001") == TOKEN // 1000
    assert format_amount(TOKEN // 1000) == "0.001" and format_amount(5 * TOKEN) == "5"
    assert parse_size("4 GiB") == 4 * GIB and parse_size("1.5MiB") == MIB * 3 // 2
    assert parse_size("2 MB") == 2_000_000 and parse_size(7) == 7
    assert parse_addr("[::1]:80") == ("::1", 80)
    with pytest.raises(ConfigError):
        parse_addr("127.0.0.1:70000")
    with pytest.raises(ConfigError):
        parse_size(True)
