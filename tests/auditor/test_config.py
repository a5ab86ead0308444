"""config.toml: defaults, overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from market.auditor.config import (
    DEFAULT_TOML,
    AuditorConfig,
    database_url,
    home_dir,
    load_config,
    parse_config,
    parse_hostport,
)
from market.auditor.errors import ConfigError


def test_overrides_and_types() -> None:
    config = parse_config(
        '[auditor]\nbootstrap = ["aa@1.2.3.4:5"]\npoll_interval = 2\n'
        "[indexer]\nconfirmations = 5\nscan_failed_proofs = false\n[bounty]\nenabled = false\n"
    )
    assert config.bootstrap == ("aa@1.2.3.4:5",) and config.poll_interval == 2.0
    assert config.indexer.confirmations == 5 and not config.indexer.scan_failed_proofs
    assert not config.bounty.enabled and config.retrieval == AuditorConfig().retrieval


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[indexer]\nconfirmation = 1\n", "unknown key"),
        ("[indexr]\n", "unknown section"),
        ('[indexer]\nconfirmations = "2"\n', "expected int"),
        ("[bounty]\nenabled = 1\n", "expected bool"),
        ("[auditor]\nbootstrap = [1]\n", "expected tuple"),
        ("[auditor\n", "config.toml"),
    ],
)
def test_bad_files_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def test_home_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPOT_HOME", str(tmp_path / "env"))
    assert home_dir(None) == tmp_path / "env"
    assert home_dir(str(tmp_path / "x")) == tmp_path / "x"
    with pytest.raises(ConfigError, match="auditor init"):
        load_config(tmp_path)
    (tmp_path / "config.toml").write_text(DEFAULT_TOML)
    assert load_config(tmp_path) == AuditorConfig()
    assert database_url(AuditorConfig(), tmp_path) == f"sqlite:///{tmp_path / 'auditor.db'}"
    assert parse_hostport("[::1]:80", "api") == ("::1", 80)
    with pytest.raises(ConfigError):
        parse_hostport("nope", "api")
