"""A simulated market for `snapshotter demo --days N`: moves a simulator account's
portfolio from one session to the next (prices, trades, cash in and out, a split; the
split holding is not traded that day, so the ``corporate_actions`` view finds it), and
the indices it moves with (``NIFTY50``, ``NIFTYBANK``: the simulator's historical route
serves their daily candles).

Every holding's daily move is the index's move over the same days plus its own noise,
so a simulated portfolio and NIFTY 50 move plausibly together.

Used only with the simulator. Cash is booked the day a trade or transfer happens:
``available.cash`` includes today's pay-in and trades, a withdrawal requested today sits
in ``utilised.payout`` and leaves the opening balance the next session, as on Kite.
"""

from __future__ import annotations

import math
import random
import threading
from datetime import date, timedelta
from typing import Any

from snapshotter.simulator._instruments import tick


def _tick(price: float) -> float:
    """A price on the 0.05 tick that the market never moves to zero."""
    return max(tick(price), 0.05)


class IndexSeries:
    """A deterministic daily index: a close for every weekday from ``EPOCH`` on (a random
    walk seeded by ``seed``, ``drift`` and ``volatility`` per day), scaled to ``level`` on
    ``anchor``. The same on every run and machine; closes to 2 decimals."""

    EPOCH = date(2000, 1, 3)  # a Monday

    def __init__(self, name: str, seed: int, level: float, *, anchor: date = date(2026, 1, 1),
                 drift: float = 0.0004, volatility: float = 0.009):
        self.name, self.seed, self.level, self.anchor = name, seed, level, anchor
        self.drift, self.volatility = drift, volatility
        self._log_levels: list[float] = [0.0]  # per weekday from EPOCH: sum of log(1 + r)
        self._lock = threading.Lock()

    @staticmethod
    def session_on_or_before(day: date) -> date:
        """The last weekday on or before ``day``."""
        return day - timedelta(days=max(day.weekday() - 4, 0))

    def _index(self, day: date) -> int:
        """Weekdays from EPOCH to ``day`` (a weekday), EPOCH being 0."""
        days = (day - self.EPOCH).days
        return days // 7 * 5 + days % 7

    def _log_level(self, day: date) -> float:
        i = self._index(self.session_on_or_before(day))
        with self._lock:
            levels = self._log_levels
            while len(levels) <= i:
                n = len(levels)
                move = random.Random(self.seed * 1_000_003 + n).gauss(self.drift,
                                                                      self.volatility)
                levels.append(levels[-1] + math.log1p(max(move, -0.5)))
            return levels[i]

    def close(self, day: date) -> float:
        """The close of the last weekday on or before ``day`` (from EPOCH on)."""
        if day < self.EPOCH:
            raise ValueError(f"{self.name} starts on {self.EPOCH}")
        return round(self.level * math.exp(self._log_level(day) - self._log_level(self.anchor)),
                     2)

    def change(self, since: date | None, day: date) -> float:
        """The index's return from the close of ``since`` (default: the weekday before
        ``day``) to the close of ``day``."""
        if since is None:
            since = self.session_on_or_before(day) - timedelta(days=1)
        return self.close(day) / self.close(since) - 1

    def candles(self, start: date, end: date) -> list[list[Any]]:
        """Kite's daily candles, weekdays from ``start`` to ``end`` inclusive:
        ``[timestamp, open, high, low, close, volume]`` (an index trades no volume)."""
        out: list[list[Any]] = []
        day = max(start, self.EPOCH + timedelta(days=1))
        while day <= end:
            if day.weekday() < 5:
                close, previous = self.close(day), self.close(day - timedelta(days=1))
                rng = random.Random(self.seed * 7_919 + day.toordinal())
                open_ = round(previous * (1 + rng.gauss(0, 0.002)), 2)
                high = round(max(open_, close) * (1 + abs(rng.gauss(0, 0.003))), 2)
                low = round(min(open_, close) * (1 - abs(rng.gauss(0, 0.003))), 2)
                out.append([f"{day.isoformat()}T00:00:00+0530", open_, high, low, close, 0])
            day += timedelta(days=1)
        return out


NIFTY50 = IndexSeries("NIFTY 50", seed=50, level=23_644.80)
NIFTYBANK = IndexSeries("NIFTY BANK", seed=260105, level=51_060.60, volatility=0.011)
#: Kite instrument token -> the index the historical route serves for it
INDICES: dict[int, IndexSeries] = {256265: NIFTY50, 260105: NIFTYBANK}


class DemoMarket:
    def __init__(self, seed: int, split_day: date | None = None):
        self.rng = random.Random(seed)
        self.split_day = split_day
        self.started = False
        self.index_day: date | None = None  # the session the index move is counted from

    def step(self, portfolio: dict[str, Any], day: date) -> list[str]:
        """Advance ``portfolio`` to the end of session ``day``; return what happened."""
        rng = self.rng
        events: list[str] = []
        holdings: list[dict[str, Any]] = portfolio["holdings"]
        equity = portfolio["margins"]["equity"]
        if not self.started:
            # History starts flat: no F&O, nothing pending.
            portfolio["positions"] = {"net": [], "day": []}
            for m in portfolio["margins"].values():
                m["available"]["intraday_payin"] = 0
                m["utilised"]["payout"] = 0
            self.started = True
        market_move = NIFTY50.change(self.index_day, day)
        self.index_day = day
        available, utilised = equity["available"], equity["utilised"]
        # The new session opens: yesterday's transfers settle, T+1 shares are delivered.
        opening = available["cash"] - utilised.get("payout", 0)
        available["opening_balance"] = round(opening, 2)
        available["intraday_payin"] = 0
        utilised["payout"] = 0
        cash = opening
        for h in holdings:
            h["quantity"] += h.get("t1_quantity", 0)
            h["opening_quantity"] = h["quantity"]
            h["realised_quantity"] = h["quantity"]
            h["t1_quantity"] = 0
            h["close_price"] = h["last_price"]
            h["last_price"] = _tick(h["last_price"]
                                    * (1 + market_move + rng.gauss(0.0001, 0.011)))
        positions: list[dict[str, Any]] = []

        split: dict[str, Any] | None = None
        if self.split_day and day == self.split_day and holdings:
            h = split = max(holdings, key=lambda x: x["last_price"])
            h["quantity"] *= 2
            h["opening_quantity"] = h["realised_quantity"] = h["quantity"]
            h["average_price"] = round(h["average_price"] / 2, 6)
            h["close_price"] = _tick(h["close_price"] / 2)
            h["last_price"] = _tick(h["last_price"] / 2)
            events.append(f"1:1 bonus/split in {h['tradingsymbol']}")

        # The split holding is not traded that day: a trade would hide the split from the
        # corporate_actions view (quantity exactly times the ratio, average divided by it).
        tradable = [x for x in holdings if x is not split]
        roll = rng.random()
        if roll < 0.12 and tradable:  # sell part of a holding
            h = rng.choice([x for x in tradable if x["quantity"] > 1] or tradable)
            qty = max(1, h["quantity"] // rng.randint(2, 5))
            price = _tick(h["last_price"] * (1 + rng.uniform(-0.004, 0.004)))
            h["quantity"] -= qty
            cash += qty * price
            positions.append(_sale_position(h, qty, price))
            events.append(f"sold {qty} {h['tradingsymbol']} at {price}")
            if h["quantity"] == 0 and not h.get("t1_quantity"):
                holdings.remove(h)
        elif roll < 0.24 and tradable:  # buy more (delivered next session: T+1)
            h = rng.choice(tradable)
            qty = max(1, int(rng.uniform(10_000, 80_000) / h["last_price"]))
            price = h["last_price"]
            old = h["quantity"]
            h["average_price"] = round((old * h["average_price"] + qty * price) / (old + qty), 6)
            h["t1_quantity"] = qty
            cash -= qty * price
            events.append(f"bought {qty} {h['tradingsymbol']} at {price}")
        roll = rng.random()
        if roll < 0.06:
            amount = round(rng.uniform(20_000, 200_000), 2)
            available["intraday_payin"] = amount
            cash += amount
            events.append(f"deposited {amount:,.2f}")
        elif roll < 0.10 and cash > 50_000:
            amount = round(rng.uniform(10_000, min(cash / 2, 150_000)), 2)
            utilised["payout"] = amount
            events.append(f"withdrew {amount:,.2f}")

        for h in holdings:
            h["pnl"] = (h["last_price"] - h["average_price"]) * h["quantity"]
            h["day_change"] = h["last_price"] - h["close_price"]
            h["day_change_percentage"] = (h["day_change"] / h["close_price"] * 100
                                          if h["close_price"] else 0)
        for mf in portfolio["mf_holdings"]:
            mf["last_price"] = round(
                mf["last_price"] * (1 + market_move / 2 + rng.gauss(0.0001, 0.003)), 4)
            mf["last_price_date"] = day.isoformat()
            mf["pnl"] = (mf["last_price"] - mf["average_price"]) * mf["quantity"]
        portfolio["positions"] = {"net": positions, "day": [dict(p) for p in positions]}
        cash = round(cash, 2)
        debits = utilised.get("debits", 0)
        available["cash"] = cash
        available["live_balance"] = round(cash - debits, 2)
        equity["net"] = round(cash - debits, 2)
        return events


def _sale_position(h: dict[str, Any], qty: int, price: float) -> dict[str, Any]:
    value = qty * price
    return {
        "tradingsymbol": h["tradingsymbol"], "exchange": h["exchange"],
        "instrument_token": h["instrument_token"], "product": "CNC", "quantity": -qty,
        "overnight_quantity": 0, "multiplier": 1, "average_price": price,
        "close_price": h["close_price"], "last_price": h["last_price"], "value": value,
        "pnl": (price - h["close_price"]) * qty, "m2m": (price - h["close_price"]) * qty,
        "unrealised": 0, "realised": 0, "buy_quantity": 0, "buy_price": 0, "buy_value": 0,
        "buy_m2m": 0, "sell_quantity": qty, "sell_price": price, "sell_value": value,
        "sell_m2m": value, "day_buy_quantity": 0, "day_buy_price": 0, "day_buy_value": 0,
        "day_sell_quantity": qty, "day_sell_price": price, "day_sell_value": value,
    }
