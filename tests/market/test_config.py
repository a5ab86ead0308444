"""market.config: the rendered config.toml reads back, bad values are named errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from market.config import (
    TOKEN_UNIT,
    DealsConfig,
    MarketConfig,
    config_from_dict,
    format_tokens,
    load_config,
    parse_listen,
    parse_redundancy,
    parse_token_amount,
    redundancy_text,
    render_config,
)
from market.errors import ConfigError, UsageError
from node.pieces.modes import Copies, ErasureCode


def test_rendered_defaults_read_back_as_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(render_config())
    assert load_config(path) == MarketConfig()


def test_every_key_is_documented() -> None:
    text = render_config()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), f"{line!r} has no comment"


def test_changed_values_survive_the_round_trip(tmp_path: Path) -> None:
    config = MarketConfig(deals=DealsConfig(redundancy="ec:3-of-5", max_price="0.25"))
    path = tmp_path / "config.toml"
    path.write_text(render_config(config))
    assert load_config(path).deals.redundancy == "ec:3-of-5"
    assert tomllib.loads(path.read_text())["deals"]["max_price"] == "0.25"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nope": {}}, "unknown section"),
        ({"deals": {"colour": 1}}, "unknown key deals.colour"),
        ({"deals": {"duration_periods": "ten"}}, "deals.duration_periods must be a int"),
        ({"deals": {"duration_periods": 0}}, "must be positive"),
        ({"deals": {"redundancy": "raid5"}}, "bad redundancy"),
        ({"node": {"listen": "nowhere"}}, "bad listen address"),
        ({"node": {"bootstrap": "x@y"}}, "node.bootstrap must be a tuple"),
        ({"deals": {"max_price": "-1"}}, "bad token amount"),
    ],
)
def test_bad_values_are_config_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="market init"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[deals\n")
    with pytest.raises(ConfigError):
        load_config(bad)


def test_redundancy_texts() -> None:
    assert parse_redundancy("copies:3") == Copies(3)
    assert parse_redundancy("ec:3-of-5") == ErasureCode(3, 5)
    for mode in (Copies(2), ErasureCode(10, 30)):
        assert parse_redundancy(redundancy_text(mode)) == mode
    for bad in ("copies", "ec:5-of-3", "ec:0-of-2", "copies:x", "ec:1-of-300"):
        with pytest.raises(UsageError):
            parse_redundancy(bad)


def test_token_amounts() -> None:
    assert parse_token_amount("") is None
    assert parse_token_amount("1") == TOKEN_UNIT
    assert parse_token_amount("0.25") == TOKEN_UNIT // 4
    assert parse_token_amount("0.000000000000000001") == 1
    for bad in ("abc", "-1", "0.0000000000000000001", "inf", "nan"):
        with pytest.raises(UsageError):
            parse_token_amount(bad)
    for units in (0, 1, TOKEN_UNIT, TOKEN_UNIT // 4, 123 * TOKEN_UNIT + 7):
        assert parse_token_amount(format_tokens(units)) == units


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:4001") == ("::1", 4001)
    for bad in ("127.0.0.1", ":80", "h:99999", "h:x"):
        with pytest.raises(UsageError):
            parse_listen(bad)
