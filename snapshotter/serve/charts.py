"""The pages' charts as data for static/charts.js (Plotly): traces with their hover text
formatted the Indian way, money axes ticked in lakh and crore."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from snapshotter.serve import formatting

TICKS = 5


def money_axis(values: Iterable[float | None], with_zero: bool = False) -> dict[str, Any]:
    """An axis over ``values`` with about five round ticks labelled '₹12.5 L', '₹1.20 Cr'."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if with_zero:
        finite.append(0.0)
    if not finite:
        return {}
    low, high = min(finite), max(finite)
    span = high - low or abs(high) or 1.0
    raw = span / TICKS
    size = 10 ** math.floor(math.log10(raw))
    step = next(m * size for m in (1, 2, 2.5, 5, 10) if m * size >= raw)
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    count = round((last - first) / step)
    ticks = [first + i * step for i in range(count + 1)]
    return {"tickvals": ticks, "ticktext": [formatting.short_rupees(t) for t in ticks],
            "range": [first - step * 0.05, last + step * 0.05]}


def _dates(values: pd.Series) -> list[str]:
    return [pd.Timestamp(v).date().isoformat() for v in values]


def _floats(values: Iterable[Any]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        number = None if v is None or pd.isna(v) else float(v)
        out.append(number if number is not None and math.isfinite(number) else None)
    return out


def trace(name: str, x: Sequence[str], y: Sequence[float | None], text: Sequence[str],
          **extra: Any) -> dict[str, Any]:
    return {"name": name, "x": list(x), "y": list(y), "text": list(text), "type": "scatter",
            "mode": "lines", **extra}


def value_chart(frame: pd.DataFrame) -> dict[str, Any]:
    """Total value and what it would be without market moves (chart_data's rows)."""
    x = _dates(frame["snapshot_date"])
    value = _floats(frame["total_value"])
    without = _floats(frame["without_market_moves"])
    return {"traces": [
        trace("total value", x, value, [formatting.rupees(v) for v in value]),
        trace("first value + net deposits", x, without,
              [formatting.rupees(v) for v in without], line={"dash": "dash"}),
    ], "layout": {"yaxis": money_axis([*value, *without])}}


def nav_chart(nav: pd.DataFrame, benchmark: str | None,
              closes: pd.DataFrame | None) -> dict[str, Any]:
    x = _dates(nav["snapshot_date"])
    rebased = _floats(nav["rebased"])
    traces = [trace("NAV", x, rebased, [formatting.number(v) for v in rebased])]
    if benchmark and closes is not None and "rebased" in closes.columns:
        values = _floats(closes["rebased"])
        traces.append(trace(benchmark, _dates(closes["date"]), values,
                            [formatting.number(v) for v in values]))
    return {"traces": traces, "layout": {"yaxis": {"title": {"text": "rebased to 100"}}}}


def drawdown_chart(nav: pd.DataFrame) -> dict[str, Any]:
    x = _dates(nav["snapshot_date"])
    values = _floats(nav["drawdown"])
    return {"traces": [trace("drawdown", x, values,
                             [formatting.percent(v) for v in values], fill="tozeroy")],
            "layout": {"yaxis": {"tickformat": ".1%"}}}


def bar_chart(labels: Sequence[str], values: Sequence[float]) -> dict[str, Any]:
    """Horizontal bars (a negative cash balance stays readable, as a pie could not)."""
    return {"traces": [{"type": "bar", "orientation": "h", "x": list(values),
                        "y": list(labels), "text": [formatting.rupees(v) for v in values],
                        "textposition": "none", "name": "value"}],
            "layout": {"xaxis": money_axis(values, with_zero=True),
                       "yaxis": {"automargin": True, "autorange": "reversed"},
                       "height": max(160, 40 + 28 * len(labels))}}


def as_json(charts: dict[str, dict[str, Any]]) -> str:
    """The charts for a ``<script type="application/json">`` block (no '<' in it)."""
    return json.dumps(charts, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
