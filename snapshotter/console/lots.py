"""FIFO lots from one account's trades and corporate actions (docs/console-imports.md "FIFO lots").

Equity delivery (segment ``EQ``) only: F&O, currency and commodity trades are stored
but are not capital gains. Per instrument (the ISIN, or the symbol when the ISIN is
blank), across exchanges (a share bought on NSE and sold on BSE is one demat holding),
day by day in date order:

1. the corporate actions of that day, before its trades (trades on the ex-date are in
   the new shares): a split multiplies each open lot's quantity by its ratio and divides
   its price, keeping its date; a bonus adds one lot at cost 0 dated the day, of
   floor(open quantity x ratio) shares (fractions are paid in cash, not allotted);
2. the day's trades, in order of execution: each sale closes the day's own buys first
   (bought and sold the same day: ``intraday``; the exchange settles only a day's net
   quantity), then the oldest open lots (FIFO, as Console); what no open lot covers is
   a lot with NULL buy fields and ``unmatched`` true (shares transferred in, or bought
   before the export); the day's buys left over become open lots.

``term``: ``intraday`` when bought and sold the same day; ``long`` when the sale is more
than 12 months after the purchase (sell_date > buy_date plus 12 calendar months: bought
2024-03-15, sold 2025-03-15 is short, 2025-03-16 long; Income-tax Act s. 2(42A) for
listed equity); else ``short``; NULL for unmatched sales.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any

import numpy as np
import pandas as pd

EQUITY_SEGMENTS = ("EQ",)
EPS = 1e-9
# A listed action of an instrument replaces a corporate_actions row of it whose
# snapshot_date is this many days on or after the action's ex-date (bonus shares are
# credited days after the ex-date): the two are the same action.
SAME_ACTION_DAYS = 30

REALISED_COLUMNS = ["tradingsymbol", "isin", "buy_date", "sell_date", "quantity",
                    "buy_price", "sell_price", "pnl", "holding_days", "term", "unmatched",
                    "buy_trade_id", "sell_trade_id", "instrument"]
OPEN_COLUMNS = ["tradingsymbol", "isin", "buy_date", "quantity", "buy_price",
                "buy_trade_id", "instrument"]
POSITION_COLUMNS = ["instrument", "from_date", "to_date", "tradingsymbol", "isin",
                    "quantity"]
ACTION_COLUMNS = ["instrument", "day", "action", "ratio"]


@dataclass(frozen=True)
class LotBook:
    realised: pd.DataFrame
    open: pd.DataFrame
    positions: pd.DataFrame


@dataclass(slots=True)
class _Lot:
    quantity: float
    price: float
    day: date
    trade_id: str | None
    symbol: str


def instrument(frame: pd.DataFrame) -> pd.Series:
    """The key lots are matched by: the ISIN, or the symbol when the ISIN is blank."""
    return frame["isin"].where(frame["isin"].notna() & (frame["isin"] != ""),
                               frame["tradingsymbol"])


def actions(trades: pd.DataFrame, observed: pd.DataFrame,
            listed: pd.DataFrame) -> pd.DataFrame:
    """The actions applied to the lots (``instrument``, ``day``, ``action``, ``ratio``).

    ``observed``: ``corporate_actions`` rows (tradingsymbol, isin, previous_snapshot_date,
    snapshot_date, ratio). A snapshot cannot tell a split from a bonus, so each is
    applied as a split, on the day after the previous snapshot (every trade the
    snapshots saw before it was in the old shares). ``listed``: the user's actions
    (tradingsymbol, isin, ex_date, action, new_shares, for_every), applied on their
    ex-date; one replaces an observed row of the instrument dated within
    SAME_ACTION_DAYS on or after its ex-date. An action without an ISIN is matched
    through the ISIN the trades give its symbol."""
    isin_of = (trades.dropna(subset=["isin"]).sort_values("trade_date", kind="stable")
               .groupby("tradingsymbol")["isin"].last())

    def keyed(frame: pd.DataFrame) -> pd.Series:
        isin = frame["isin"].where(frame["isin"].notna() & (frame["isin"] != ""),
                                   frame["tradingsymbol"].map(isin_of))
        return isin.where(isin.notna(), frame["tradingsymbol"])

    parts = []
    if not observed.empty:
        seen = observed.assign(instrument=keyed(observed)).drop_duplicates(
            ["instrument", "previous_snapshot_date", "snapshot_date"])
        if not listed.empty:
            pairs = seen.reset_index().merge(
                listed.assign(instrument=keyed(listed))[["instrument", "ex_date"]],
                on="instrument")
            after = pd.to_datetime(pairs["snapshot_date"]) - pd.to_datetime(pairs["ex_date"])
            same = (after >= pd.Timedelta(0)) & (after <= pd.Timedelta(days=SAME_ACTION_DAYS))
            seen = seen.drop(index=pairs.loc[same, "index"].unique())
        parts.append(pd.DataFrame({
            "instrument": seen["instrument"],
            "day": seen["previous_snapshot_date"].map(lambda d: d + timedelta(days=1)),
            "action": "split", "ratio": seen["ratio"].astype(float)}))
    if not listed.empty:
        parts.append(pd.DataFrame({
            "instrument": keyed(listed), "day": listed["ex_date"],
            "action": listed["action"],
            "ratio": listed["new_shares"].astype(float) / listed["for_every"].astype(float)}))
    if not parts:
        return pd.DataFrame(columns=ACTION_COLUMNS)
    return pd.concat(parts, ignore_index=True)[ACTION_COLUMNS]


def applied(actions: pd.DataFrame) -> dict[str, str]:
    """Per instrument, the actions ``build`` applies to its lots, as one text (day,
    action and exact ratio, in the order applied): lots built with the same text for an
    instrument and the same trades are the same lots."""
    ordered = _in_order(actions)
    return {str(key): "; ".join(f"{day} {action} {ratio!r}" for day, action, ratio
                                in zip(group["day"], group["action"], group["ratio"],
                                       strict=True))
            for key, group in ordered.groupby("instrument", sort=False)}


def _in_order(actions: pd.DataFrame) -> pd.DataFrame:
    """Actions in the order they are applied: by day; two of one day by kind, then
    ratio (bonus before split)."""
    return actions.sort_values(["instrument", "day", "action", "ratio"], kind="stable")


def build(trades: pd.DataFrame, actions: pd.DataFrame) -> LotBook:
    """FIFO over one account's trades (columns of ``trades``, ISINs filled) and
    ``actions`` (from ``actions()``); only the instruments ``trades`` has get lots.

    One pass over plain Python values in (instrument, date, execution time, trade id)
    order: a million fills take seconds, not minutes."""
    equity = trades[trades["segment"].isin(EQUITY_SEGMENTS)]
    walk = pd.DataFrame({
        "instrument": instrument(equity),
        "trade_date": equity["trade_date"],
        "when": _instants(equity["order_execution_time"]),
        "trade_id": equity["trade_id"].astype(str),
    }).sort_values(["trade_date", "when", "trade_id"], kind="stable", na_position="last")
    order = walk.sort_values("instrument", kind="stable").index
    rows = equity.loc[order]
    keys = walk.loc[order, "instrument"].tolist()
    columns = _Columns(
        dates=rows["trade_date"].tolist(),
        selling=(rows["trade_type"] == "sell").tolist(),
        quantities=rows["quantity"].astype(float).tolist(),
        prices=rows["price"].astype(float).tolist(),
        trade_ids=walk.loc[order, "trade_id"].tolist(),
        symbols=rows["tradingsymbol"].astype(str).tolist(),
        isins=rows["isin"].astype(object).where(rows["isin"].notna(), None).tolist())
    by_instrument: dict[str, list[tuple[date, str, float]]] = {}
    ordered = _in_order(actions)
    for key, day, action, ratio in zip(ordered["instrument"], ordered["day"],
                                       ordered["action"], ordered["ratio"], strict=True):
        by_instrument.setdefault(str(key), []).append((day, str(action), float(ratio)))
    out = _Out()
    start = 0
    for key, group in groupby(range(len(keys)), keys.__getitem__):
        end = start + sum(1 for _ in group)
        _Instrument(str(key), columns, start, end, by_instrument.get(str(key), []),
                    out).run()
        start = end
    return LotBook(_realised_frame(out.realised),
                   pd.DataFrame(out.still_open, columns=OPEN_COLUMNS),
                   pd.DataFrame(out.positions, columns=POSITION_COLUMNS))


def _instants(times: pd.Series) -> pd.Series:
    """Execution times as seconds since the epoch (NaN where missing), for ordering:
    the database gives datetimes, which pandas converts one by one, slowly."""
    if all(isinstance(t, datetime) or t is None for t in times):
        return pd.Series([math.nan if t is None or t is pd.NaT else t.timestamp()
                          for t in times],
                         index=times.index, dtype=float)
    return pd.to_datetime(times, utc=True)


class LotError(ValueError):
    """Lots that cannot be built (an action that makes a quantity infinite)."""


@dataclass(frozen=True)
class _Columns:
    dates: list[date]
    selling: list[bool]
    quantities: list[float]
    prices: list[float]
    trade_ids: list[str]
    symbols: list[str]
    isins: list[str | None]


@dataclass
class _Out:
    realised: list[tuple[Any, ...]] = field(default_factory=list)
    still_open: list[tuple[Any, ...]] = field(default_factory=list)
    positions: list[list[Any]] = field(default_factory=list)


class _Instrument:
    """One instrument's lots (rows ``start`` to ``end`` of ``columns``), walked day by
    day."""

    def __init__(self, key: str, columns: _Columns, start: int, end: int,
                 actions: list[tuple[date, str, float]], out: _Out):
        self.key = key
        self.columns = columns
        self.start = start
        self.end = end
        self.actions = actions
        self.out = out
        self.isin = next((columns.isins[i] for i in range(end - 1, start - 1, -1)
                          if columns.isins[i] is not None), None)
        self.symbol = columns.symbols[start]
        self.open: deque[_Lot] = deque()
        self.held = 0.0  # the open lots' quantity
        self.position: list[Any] | None = None  # the last trade_positions row

    def run(self) -> None:
        dates = self.columns.dates
        pending = iter(self.actions)
        action = next(pending, None)
        i = self.start
        while i < self.end:
            day = dates[i]
            while action is not None and action[0] < day:
                action = self._act_day(action, pending)
            if action is not None and action[0] == day:
                action = self._act_day(action, pending, then_position=False)
            j = i
            while j < self.end and dates[j] == day:
                j += 1
            self._trade(day, i, j)
            self._position(day)
            i = j
        while action is not None:
            action = self._act_day(action, pending)
        for lot in self.open:
            if lot.quantity > EPS:
                self.out.still_open.append((lot.symbol, self.isin, lot.day,
                                            round(lot.quantity, 6), round(lot.price, 6),
                                            lot.trade_id, self.key))

    def _act_day(self, action: tuple[date, str, float], pending: Any,
                 then_position: bool = True) -> tuple[date, str, float] | None:
        """Apply ``action`` and the others of its day; the next one after them."""
        day = action[0]
        following: tuple[date, str, float] | None = action
        while following is not None and following[0] == day:
            self._act(*following)
            following = next(pending, None)
        if then_position:
            self._position(day)
        return following

    def _act(self, day: date, action: str, ratio: float) -> None:
        if action == "split":
            for lot in self.open:
                lot.quantity *= ratio
                lot.price /= ratio
            self.held = sum(lot.quantity for lot in self.open)
        else:
            extra = sum(lot.quantity for lot in self.open) * ratio
            if not math.isfinite(extra):
                raise LotError(f"{self.symbol} ({self.key}): a {action} of ratio "
                               f"{ratio:g} on {day} makes an infinite quantity")
            extra = math.floor(extra + EPS)
            if extra > 0:
                self.open.append(_Lot(float(extra), 0.0, day, None, self.symbol))
                self.held += extra
        if not math.isfinite(self.held):
            raise LotError(f"{self.symbol} ({self.key}): a {action} of ratio {ratio:g} "
                           f"on {day} makes an infinite quantity")

    def _trade(self, day: date, first: int, end: int) -> None:
        c = self.columns
        self.symbol = c.symbols[end - 1]
        buys = deque(_Lot(c.quantities[i], c.prices[i], day, c.trade_ids[i], c.symbols[i])
                     for i in range(first, end) if not c.selling[i])
        self.held += sum(lot.quantity for lot in buys)
        for i in range(first, end):
            if not c.selling[i]:
                continue
            left = c.quantities[i]
            for queue in (buys, self.open):  # the day's own buys first: intraday
                for lot, quantity in _consume(queue, left):
                    left -= quantity
                    self.held -= quantity
                    self._realise(i, day, quantity, lot)
            if left > EPS:
                self._realise(i, day, left, None)
        self.open.extend(buys)

    def _realise(self, sale: int, day: date, quantity: float, lot: _Lot | None) -> None:
        c = self.columns
        if lot is None:
            self.out.realised.append((c.symbols[sale], self.isin, None, day, quantity, None,
                                      c.prices[sale], True, None, c.trade_ids[sale],
                                      self.key))
        else:
            self.out.realised.append((c.symbols[sale], self.isin, lot.day, day, quantity,
                                      lot.price, c.prices[sale], False, lot.trade_id,
                                      c.trade_ids[sale], self.key))

    def _position(self, day: date) -> None:
        quantity = round(self.held, 6)
        last = self.position
        if last is not None and last[2] is None:
            if abs(last[5] - quantity) <= EPS:
                last[3] = self.symbol
                return
            last[2] = day
        if quantity > EPS:
            self.position = [self.key, day, None, self.symbol, self.isin, quantity]
            self.out.positions.append(self.position)


def _consume(queue: deque[_Lot], quantity: float) -> list[tuple[_Lot, float]]:
    """Take up to ``quantity`` from the head of ``queue`` (oldest first)."""
    pieces = []
    while quantity > EPS and queue:
        lot = queue[0]
        take = min(lot.quantity, quantity)
        pieces.append((lot, take))
        lot.quantity -= take
        quantity -= take
        if lot.quantity <= EPS:
            queue.popleft()
    return pieces


def _realised_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[c for c in REALISED_COLUMNS
                                        if c not in ("pnl", "holding_days", "term")])
    buy = pd.to_datetime(frame["buy_date"])
    sell = pd.to_datetime(frame["sell_date"])
    days = (sell - buy).dt.days
    anniversary = buy + pd.DateOffset(months=12)
    term = np.where(days == 0, "intraday", np.where(sell > anniversary, "long", "short"))
    frame["quantity"] = frame["quantity"].astype(float).round(6)
    frame["buy_price"] = frame["buy_price"].astype(float).round(6)
    frame["pnl"] = (frame["quantity"] * (frame["sell_price"] - frame["buy_price"])).round(6)
    frame["holding_days"] = days.astype("Int64")
    frame["term"] = pd.Series(term, index=frame.index, dtype=object).where(buy.notna(), None)
    frame["unmatched"] = frame["unmatched"].astype(bool)
    return frame[REALISED_COLUMNS]
