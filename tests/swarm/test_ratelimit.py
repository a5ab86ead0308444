"""Rate meter and token buckets (time passed in)."""

from __future__ import annotations

import pytest

from node.swarm.ratelimit import RateMeter, TokenBucket, UploadLimiter


def test_rate_meter_reports_a_constant_rate_exactly() -> None:
    meter = RateMeter(tau=1.0, now=0.0)
    for i in range(1, 501):
        meter.add(1000, i * 0.01)  # 100 kB/s
    assert meter.rate(5.0) == pytest.approx(100_000, rel=0.02)
    assert meter.rate(15.0) < 100  # decays when nothing arrives


def test_young_meter_is_the_plain_average() -> None:
    meter = RateMeter(tau=10.0, now=0.0)
    meter.add(1000, 0.5)
    assert meter.rate(1.0) == pytest.approx(1000, rel=0.1)
    assert RateMeter(1.0, 0.0).rate(0.0) == 0.0


def test_token_bucket_long_run_rate_is_exact() -> None:
    bucket = TokenBucket(rate=1000.0, burst=100.0, now=0.0)
    now = 0.0
    for _ in range(100):
        now += bucket.take(250, now)  # chunks larger than the burst still pass
    assert now == pytest.approx(100 * 250 / 1000 - 0.1, abs=0.01)


def test_upload_limiter_shares_the_node_budget_between_peers() -> None:
    limiter = UploadLimiter(peer_rate=None, total_rate=1000.0, burst_seconds=0.1, now=0.0)
    # A greedy peer asks as often as it can, a modest one once per second: when each asks
    # for its next chunk only after sending the previous one, their grants interleave.
    ready = {"greedy": 0.0, "modest": 0.0}
    sent = {"greedy": 0, "modest": 0}
    for _ in range(200):
        peer = min(ready, key=lambda p: ready[p])
        now = ready[peer]
        ready[peer] = now + limiter.take(peer, 100, now)
        sent[peer] += 100
    assert sent["greedy"] == pytest.approx(sent["modest"], rel=0.05)


def test_per_peer_cap_applies_to_each_peer() -> None:
    limiter = UploadLimiter(peer_rate=100.0, total_rate=None, burst_seconds=0.1, now=0.0)
    assert limiter.take("a", 10, 0.0) == 0.0
    assert limiter.take("a", 100, 0.0) == pytest.approx(1.0)
    assert limiter.take("b", 10, 0.0) == 0.0  # b has its own bucket
    limiter.forget("a")
    assert limiter.take("a", 10, 0.0) == 0.0


def test_bad_parameters_raise() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        RateMeter(0.0, 0.0)
