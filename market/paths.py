"""Where a home directory's parts are (``market.home`` has what ``init`` writes there)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from market.config import MarketConfig

HOME_ENV: Final = "DEPOT_HOME"
DEFAULT_HOME: Final = Path("~/.depot/market")


def resolve_home(arg: str | None) -> Path:
    """``--home``, else ``$DEPOT_HOME``, else ``~/.depot/market``."""
    return Path(arg or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


@dataclass(frozen=True)
class HomePaths:
    """Where each part of a home directory lives."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def keystore(self) -> Path:
        return self.root / "account.json"

    @property
    def node_key(self) -> Path:
        return self.root / "node.key"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def kad_table(self) -> Path:
        return self.root / "kad.table"

    def deployment(self, config: MarketConfig) -> Path:
        return self.root / config.chain.deployment

    def database_url(self, config: MarketConfig) -> str:
        return config.database.url or f"sqlite:///{self.root / 'market.db'}"
