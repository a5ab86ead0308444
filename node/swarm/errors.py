"""
Swarm errors, as branches of the ``node`` error tree (``node.errors``).

Local errors are our misuse (a session given inconsistent sources, a sink that cannot be
written); remote errors are a peer's fault and never take the node down: the session
penalises the peer, takes the data elsewhere, and finishes from the others.
"""

from __future__ import annotations

from node.errors import LocalError, NodeError, ProtocolViolation, RemoteError


class SwarmUsageError(LocalError):
    """The swarm was asked for something impossible (inconsistent sources, bad goal)."""


class IllegalTransitionError(LocalError):
    """A state machine was driven through a transition its table does not allow."""


class DownloadFailedError(NodeError):
    """A download could not reach its goal: every source that could help is gone."""


class PushRefusedError(RemoteError):
    """The receiving node refused a pushed piece, or failed before acknowledging it."""


class SwarmProtocolError(ProtocolViolation):
    """A swarm message that is well formed but not allowed in the current state."""


class StateFileError(LocalError):
    """A resume state file that cannot be read or does not match the session."""
