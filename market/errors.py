"""
The error tree of ``market`` (the client; ``market.auditor`` has its own).

``LocalError``: the user asked for something impossible or the local state is wrong (a bad
argument, an unknown file id, a missing home directory, too little money). ``RemoteError``:
the network or the chain did not deliver (no providers, every provider refused, a deal that
never activated, no surviving shares). Each class carries the ``market`` command's exit code
for it (``exit_code``), and its message is the one line the user sees.
"""

from __future__ import annotations


class MarketError(Exception):
    """Root of every error raised by ``market``."""

    exit_code: int = 1


class LocalError(MarketError):
    """A misuse or a local problem: the user can fix it without the network."""

    exit_code = 2


class UsageError(LocalError):
    """A bad argument or option value."""


class ConfigError(LocalError):
    """The home directory, its config.toml or its database is missing or malformed."""


class UnknownFile(LocalError):
    """No manifest with that id is known locally, in the DHT or to any provider."""

    exit_code = 3


class InsufficientFunds(LocalError):
    """The client's token balance does not cover the escrow of the deals it would make."""

    exit_code = 4


class RemoteError(MarketError):
    """The network or the chain did not deliver."""

    exit_code = 5


class NoProviders(RemoteError):
    """No usable provider was found (none discovered, or too few distinct ones)."""


class PriceCapUnmet(NoProviders):
    """Providers exist, but too few ask at most the price cap."""


class PlacementFailed(RemoteError):
    """A share could not be placed: every candidate provider refused or failed."""


class RetrievalFailed(RemoteError):
    """Too few shares could be fetched to rebuild the file."""


class DealRejected(RemoteError):
    """One provider refused a proposal or failed before its deal was active (retried)."""
