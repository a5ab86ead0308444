"""
A small metrics registry (counters, gauges, histograms with labels) and a Prometheus
text-format exporter (exposition format 0.0.4), independent of ``prometheus_client`` so
the sans-I/O cores and the simulator can count without a global registry.

    registry = Registry()
    handshakes = registry.counter("depot_handshake_failures_total", "...", ("reason",))
    handshakes.labels(reason="timeout").inc()
    text = render_prometheus(registry)

Names follow Prometheus conventions: ``_total`` for counters, base units (bytes, seconds).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Final, Generic, TypeVar

from node.errors import LocalError

DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LabelValues = tuple[str, ...]


class _Value:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class CounterChild(_Value):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise LocalError("a counter only goes up")
        self.value += amount


class GaugeChild(_Value):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class HistogramChild:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


C = TypeVar("C", CounterChild, GaugeChild, HistogramChild)


class Metric(Generic[C]):
    """A named metric with a fixed tuple of label names; ``labels()`` gives a child."""

    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._children: dict[LabelValues, C] = {}
        self._lock = threading.Lock()

    def _new_child(self) -> C:
        raise NotImplementedError

    def labels(self, *values: str, **named: str) -> C:
        if named:
            if values or set(named) != set(self.label_names):
                raise LocalError(f"{self.name} takes labels {self.label_names}")
            values = tuple(named[n] for n in self.label_names)
        if len(values) != len(self.label_names):
            raise LocalError(f"{self.name} takes labels {self.label_names}")
        child = self._children.get(values)
        if child is None:
            with self._lock:
                child = self._children.setdefault(values, self._new_child())
        return child

    def children(self) -> Iterable[tuple[LabelValues, C]]:
        return sorted(self._children.items())


class Counter(Metric[CounterChild]):
    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        """Increment the unlabelled counter."""
        self.labels().inc(amount)


class Gauge(Metric[GaugeChild]):
    kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.labels().dec(amount)

    def set(self, value: float) -> None:
        self.labels().set(value)


class Histogram(Metric[HistogramChild]):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, label_names)
        if list(buckets) != sorted(buckets) or not buckets:
            raise LocalError("histogram buckets must be sorted and non-empty")
        self.buckets = tuple(buckets)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.buckets)

    def observe(self, value: float) -> None:
        self.labels().observe(value)


AnyMetric = Metric[CounterChild] | Metric[GaugeChild] | Metric[HistogramChild]


class Registry:
    """Owns metrics by name; asking twice for the same name returns the same metric."""

    def __init__(self) -> None:
        self._metrics: dict[str, AnyMetric] = {}

    def _get(
        self, cls: type[Any], name: str, help_text: str, labels: Sequence[str], **kw: object
    ) -> Any:
        existing = self._metrics.get(name)
        if existing is not None:
            if type(existing) is not cls or existing.label_names != tuple(labels):
                raise LocalError(f"metric {name} already registered differently")
            return existing
        metric = cls(name, help_text, labels, **kw)
        self._metrics[name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        metric: Counter = self._get(Counter, name, help_text, labels)
        return metric

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        metric: Gauge = self._get(Gauge, name, help_text, labels)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric: Histogram = self._get(Histogram, name, help_text, labels, buckets=buckets)
        return metric

    def metrics(self) -> list[AnyMetric]:
        return [self._metrics[k] for k in sorted(self._metrics)]

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter or gauge child (0 if never touched); for tests."""
        metric = self._metrics.get(name)
        if metric is None:
            return 0.0
        key = tuple(labels[n] for n in metric.label_names)
        child: object = dict(metric.children()).get(key)
        if isinstance(child, HistogramChild):
            return float(child.count)
        if isinstance(child, _Value):
            return child.value
        return 0.0


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render_prometheus(*registries: Registry) -> str:
    """The Prometheus text exposition of every metric in ``registries``."""
    lines: list[str] = []
    for registry in registries:
        for metric in registry.metrics():
            lines.append(f"# HELP {metric.name} {_escape(metric.help)}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            for values, child in metric.children():
                if isinstance(child, HistogramChild):
                    cumulative = 0
                    for bound, count in zip((*child.bounds, math.inf), child.counts, strict=True):
                        cumulative += count
                        le = 'le="' + _num(bound) + '"'
                        lab = _labels(metric.label_names, values, le)
                        lines.append(f"{metric.name}_bucket{lab} {cumulative}")
                    lab = _labels(metric.label_names, values)
                    lines.append(f"{metric.name}_sum{lab} {_num(child.sum)}")
                    lines.append(f"{metric.name}_count{lab} {child.count}")
                else:
                    lab = _labels(metric.label_names, values)
                    lines.append(f"{metric.name}{lab} {_num(child.value)}")
    return "\n".join(lines) + "\n"
