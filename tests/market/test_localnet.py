"""market.localnet's config editing (the network itself runs in test_e2e and tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from market.config import load_config, render_config
from market.localnet import set_config
from prover.config import load_config as load_prover_config
from prover.config import render_toml


def test_set_config_changes_keys_and_keeps_the_comments(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(render_config())
    comments = [line for line in path.read_text().splitlines() if line.startswith("#")]
    set_config(tmp_path, {"deals.upload_timeout": 3.5, "repair.miss_threshold": 7})
    config = load_config(path)
    assert config.deals.upload_timeout == 3.5
    assert config.repair.miss_threshold == 7
    assert [line for line in path.read_text().splitlines() if line.startswith("#")] == comments


def test_set_config_edits_a_prover_home_too(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(render_toml())
    set_config(tmp_path, {"storage.scrub_rate": 0, "log.level": "debug"})
    config = load_prover_config(path)
    assert (config.storage.scrub_rate, config.log.level) == (0, "debug")


def test_set_config_refuses_an_unknown_section(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(render_config())
    before = (tmp_path / "config.toml").read_text()
    with pytest.raises(ValueError, match=r"no \[nosuch\] section"):
        set_config(tmp_path, {"nosuch.key": 1})
    assert (tmp_path / "config.toml").read_text() == before
