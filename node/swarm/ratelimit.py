"""
Rate measurement and rate limiting, sans-I/O (the caller passes ``now``).

- ``RateMeter``: an exponentially weighted moving average of bytes per second, O(1) per
  sample, used to size request pipelines and to rank peers for choking.
- ``TokenBucket``: the classic token bucket, in its "debt" form: a send of ``n`` bytes
  always takes its tokens, possibly driving the balance negative, and the caller waits
  until the balance is back to zero. A 256 KiB chunk therefore passes a bucket of any
  depth, and the long-run rate is exact.
- ``UploadLimiter``: a per-peer bucket and one node-wide bucket. A serving stream asks for
  one chunk at a time, so when peers compete for the node-wide budget their sends
  interleave in arrival order: each gets an equal share, and one greedy peer with a deep
  request queue cannot take the whole upload.
"""

from __future__ import annotations

import math


class RateMeter:
    """
    EWMA of a byte rate with time constant ``tau`` seconds.

    Each sample of ``n`` bytes adds ``n / tau`` and decays with ``exp(-dt / tau)``; dividing
    by ``1 - exp(-age / tau)`` removes the start-up bias (as Adam's bias correction does), so
    a young meter reports the plain average and a constant rate is reported exactly.
    """

    __slots__ = ("_acc", "_last", "_start", "tau")

    def __init__(self, tau: float, now: float) -> None:
        if tau <= 0:
            raise ValueError("tau must be positive")
        self.tau = tau
        self._acc = 0.0
        self._last = now
        self._start = now

    def add(self, nbytes: int, now: float) -> None:
        self._decay(now)
        self._acc += nbytes / self.tau

    def rate(self, now: float) -> float:
        """Current estimate in bytes per second."""
        self._decay(now)
        age = now - self._start
        if age <= 0:
            return 0.0
        return self._acc / -math.expm1(-age / self.tau)

    def _decay(self, now: float) -> None:
        dt = now - self._last
        if dt > 0:
            self._acc *= math.exp(-dt / self.tau)
            self._last = now


class TokenBucket:
    """Token bucket of ``rate`` bytes per second and depth ``burst`` bytes (debt form)."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, nbytes: int, now: float) -> float:
        """Take ``nbytes`` tokens; return how many seconds to wait before sending them."""
        self._refill(now)
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now


class UploadLimiter:
    """Per-peer and node-wide upload caps (either may be ``None``: unlimited)."""

    def __init__(
        self, peer_rate: float | None, total_rate: float | None, burst_seconds: float, now: float
    ) -> None:
        self._peer_rate = peer_rate
        self._burst_seconds = burst_seconds
        self._total = (
            None
            if total_rate is None
            else TokenBucket(total_rate, max(total_rate * burst_seconds, 1.0), now)
        )
        self._peers: dict[object, TokenBucket] = {}

    def take(self, peer: object, nbytes: int, now: float) -> float:
        """Reserve ``nbytes`` for ``peer``; return the seconds to wait before sending."""
        wait = 0.0
        if self._peer_rate is not None:
            bucket = self._peers.get(peer)
            if bucket is None:
                rate = self._peer_rate
                bucket = self._peers[peer] = TokenBucket(
                    rate, max(rate * self._burst_seconds, 1.0), now
                )
            wait = bucket.take(nbytes, now)
        if self._total is not None:
            wait = max(wait, self._total.take(nbytes, now))
        return wait

    def forget(self, peer: object) -> None:
        self._peers.pop(peer, None)
