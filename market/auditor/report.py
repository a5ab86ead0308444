"""
The public report: the reputation document as JSON and as a static HTML page.

The page is one self-contained file: charts are inline SVG drawn here, no script, no
stylesheet or font from elsewhere, so that it can be published as is. Network-wide: proofs
proven and missed per period, faults reported per period, total stake, live deals and
earnings; per provider: the same per period, its stake over time, its retrieval checks.
Both files are written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from market.auditor.reputation import dumps

TOKEN: Final = 10**18
WIDTH: Final = 640
HEIGHT: Final = 140
PROVEN_COLOR: Final = "#2e7d32"
MISSED_COLOR: Final = "#c62828"
LINE_COLOR: Final = "#1565c0"


def svg_bars(
    title: str, labels: Sequence[int], stacks: Sequence[tuple[str, str, Sequence[float]]]
) -> str:
    """A stacked bar chart: one bar per label, one ``(name, color, values)`` per layer."""
    n = max(len(labels), 1)
    top = max([1.0] + [sum(v[i] for _, _, v in stacks) for i in range(len(labels))])
    bar = WIDTH / n
    parts = []
    for i, label in enumerate(labels):
        y: float = HEIGHT
        for name, color, values in stacks:
            h = values[i] / top * (HEIGHT - 20)
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect x="{i * bar:.1f}" y="{y:.1f}" width="{max(bar - 1, 0.5):.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>period {label}: {values[i]:g} '
                f"{html.escape(name)}</title></rect>"
            )
    legend = " ".join(f'<tspan fill="{c}">■ {html.escape(name)}</tspan>' for name, c, _ in stacks)
    return _frame(title, "".join(parts), f"max {top:g}", legend, labels)


def svg_line(title: str, points: Sequence[tuple[int, float]], unit: str = "") -> str:
    """A step line over periods."""
    if not points:
        return _frame(title, "", "", "no data", [])
    xs = [p for p, _ in points]
    lo, hi = min(xs), max(*xs, min(xs) + 1)
    top = max([1e-18] + [v for _, v in points])
    coords = []
    for (p, v), nxt in zip(points, [*points[1:], (hi, points[-1][1])], strict=True):
        x0 = (p - lo) / (hi - lo) * WIDTH
        x1 = (nxt[0] - lo) / (hi - lo) * WIDTH
        y = HEIGHT - v / top * (HEIGHT - 20)
        coords += [f"{x0:.1f},{y:.1f}", f"{x1:.1f},{y:.1f}"]
    points_attr = " ".join(coords)
    path = f'<polyline fill="none" stroke="{LINE_COLOR}" stroke-width="2" points="{points_attr}"/>'
    return _frame(title, path, f"max {top:,.4g} {unit}", "", [lo, hi])


def _frame(title: str, body: str, scale: str, legend: str, labels: Sequence[int]) -> str:
    axis = ""
    if labels:
        axis = (
            f'<text x="0" y="{HEIGHT + 14}" font-size="10">period {labels[0]}</text>'
            f'<text x="{WIDTH}" y="{HEIGHT + 14}" font-size="10" text-anchor="end">'
            f"period {labels[-1]}</text>"
        )
    return (
        f"<figure><figcaption>{html.escape(title)} <small>({html.escape(scale)})</small>"
        "</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT + 18}" '
        f'role="img" aria-label="{html.escape(title)}">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fafafa" stroke="#ddd"/>{body}{axis}'
        f'<text x="4" y="12" font-size="10">{legend}</text></svg></figure>'
    )


def _tokens(base_units: str) -> str:
    return f"{int(base_units) / TOKEN:,.4f}"


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def render_html(doc: dict[str, Any]) -> str:
    """The report page for a reputation document."""
    net = doc["network"]
    periods = [p["period"] for p in net["periods"]]
    proven = [p["proven"] for p in net["periods"]]
    missed = [p["missed"] for p in net["periods"]]
    reported = [p["reported"] for p in net["periods"]]
    providers = doc["providers"]

    stake_by_period: dict[int, int] = {}
    earned_by_period: dict[int, int] = {}
    for info in providers.values():
        for h in info["history"]:
            earned_by_period[h["period"]] = earned_by_period.get(h["period"], 0) + int(h["earned"])
    all_periods = sorted({s["period"] for i in providers.values() for s in i["stake_history"]})
    for period in all_periods:
        total = 0
        for info in providers.values():
            last = [int(s["stake"]) for s in info["stake_history"] if s["period"] <= period]
            total += last[-1] if last else 0
        stake_by_period[period] = total
    cumulative, running = [], 0
    for period in sorted(earned_by_period):
        running += earned_by_period[period]
        cumulative.append((period, running / TOKEN))

    rows = []
    charts = []
    for address, info in providers.items():
        proofs, retrieval = info["proofs"], info["retrieval"]
        p50 = retrieval["latency_ms_p50"]
        latency = "n/a" if p50 is None else f"{p50:.0f} ms"
        rows.append(
            "<tr>"
            f"<td><a href='#{address}'><code>{address}</code></a></td>"
            f"<td>{html.escape(info['status'])}</td>"
            f"<td>{_tokens(info['stake'])}</td>"
            f"<td>{info['deals']['live']} / {info['deals']['total']}</td>"
            f"<td>{proofs['proven']} / {proofs['expected']} ({_rate(proofs['success_rate'])})</td>"
            f"<td>{info['faults']['reported']}</td>"
            f"<td>{_tokens(info['slashed'])}</td>"
            f"<td>{_tokens(info['earnings'])}</td>"
            f"<td>{retrieval['ok']} / {retrieval['checks']} "
            f"({_rate(retrieval['success_rate'])})</td>"
            f"<td>{latency}</td>"
            f"<td>{proofs['alarms']}</td>"
            "</tr>"
        )
        hist = info["history"]
        charts.append(
            f"<section id='{address}'><h3><code>{address}</code></h3>"
            f"<p>node <code>{html.escape(info['node_id'])}</code> at "
            f"<code>{html.escape(info['endpoint'])}</code>; retrieval outcomes "
            f"{html.escape(str(info['retrieval']['outcomes']))}</p>"
            + svg_bars(
                "proofs per period",
                [h["period"] for h in hist],
                [
                    ("proven", PROVEN_COLOR, [1.0 if h["proven"] else 0.0 for h in hist]),
                    ("missed", MISSED_COLOR, [0.0 if h["proven"] else 1.0 for h in hist]),
                ],
            )
            + svg_line(
                "stake",
                [(s["period"], int(s["stake"]) / TOKEN) for s in info["stake_history"]],
                "tokens",
            )
            + "</section>"
        )
    stake_points = [(p, v / TOKEN) for p, v in sorted(stake_by_period.items())]
    network_proofs = svg_bars(
        "proofs per period",
        periods,
        [("proven", PROVEN_COLOR, proven), ("missed", MISSED_COLOR, missed)],
    )
    head = (
        f"chain {doc['chain_id']} · market <code>{html.escape(doc['market'])}</code> · "
        f"indexed through block {doc['indexed_through_block']} (period {doc['current_period']})"
        f" · {net['providers']} providers · {net['live_deals']} live deals · stake "
        f"{_tokens(net['stake'])} · earnings {_tokens(net['earnings'])} · alarms {net['alarms']}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Depot auditor report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}figure{{margin:0.5em 0}}</style>
</head><body>
<h1>Depot auditor report</h1>
<p>{head}</p>
<h2>Network</h2>
{network_proofs}
{svg_bars("faults reported per period", periods, [("reported", MISSED_COLOR, reported)])}
{svg_line("total stake", stake_points, "tokens")}
{svg_line("cumulative provider earnings", cumulative, "tokens")}
<h2>Providers</h2>
<table><tr><th>provider</th><th>status</th><th>stake</th><th>live / deals</th>
<th>proofs</th><th>faults</th><th>slashed</th><th>earnings</th><th>retrievals</th>
<th>p50 latency</th><th>alarms</th></tr>
{"".join(rows)}
</table>
{"".join(charts)}
</body></html>
"""


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` all or nothing (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(directory: Path, doc: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``reputation.json`` and ``report.html`` into ``directory``."""
    json_path, html_path = directory / "reputation.json", directory / "report.html"
    write_atomic(json_path, dumps(doc) + "\n")
    write_atomic(html_path, render_html(doc))
    return json_path, html_path
