import pytest

from node.errors import LocalError
from node.metrics import Registry, render_prometheus


def test_counter_gauge_histogram_and_export():
    r = Registry()
    c = r.counter("x_events_total", "Events", ("kind",))
    c.labels(kind="a").inc()
    c.labels("a").inc(2)
    c.labels(kind='b"q').inc()
    g = r.gauge("x_peers", "Peers")
    g.inc(5)
    g.dec(2)
    h = r.histogram("x_latency_seconds", "Latency", buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    assert r.value("x_events_total", kind="a") == 3
    assert r.value("x_peers") == 3
    assert r.value("x_latency_seconds") == 4
    assert r.value("x_missing") == 0
    text = render_prometheus(r)
    assert "# TYPE x_events_total counter" in text
    assert 'x_events_total{kind="a"} 3' in text
    assert 'x_events_total{kind="b\\"q"} 1' in text
    assert "x_peers 3" in text
    assert 'x_latency_seconds_bucket{le="0.1"} 2' in text
    assert 'x_latency_seconds_bucket{le="1"} 3' in text
    assert 'x_latency_seconds_bucket{le="+Inf"} 4' in text
    assert "x_latency_seconds_count 4" in text
    assert "x_latency_seconds_sum 3.65" in text


def test_same_name_returns_same_metric_and_conflicts_are_refused():
    r = Registry()
    assert r.counter("a_total", "A") is r.counter("a_total", "A")
    with pytest.raises(LocalError):
        r.gauge("a_total", "A")
    with pytest.raises(LocalError):
        r.counter("a_total", "A", ("x",))


def test_label_misuse_and_negative_counter():
    r = Registry()
    c = r.counter("b_total", "B", ("x",))
    with pytest.raises(LocalError):
        c.labels()
    with pytest.raises(LocalError):
        c.labels(y="1")
    with pytest.raises(LocalError):
        c.labels(x="1").inc(-1)
    with pytest.raises(LocalError):
        r.histogram("h", "H", buckets=(2.0, 1.0))
