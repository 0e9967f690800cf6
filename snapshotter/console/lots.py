"""FIFO lots from one account's trades and corporate actions (README "FIFO lots").

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
from dataclasses import dataclass
from datetime import date, timedelta
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
                    "buy_trade_id", "sell_trade_id"]
OPEN_COLUMNS = ["tradingsymbol", "isin", "buy_date", "quantity", "buy_price",
                "buy_trade_id"]
POSITION_COLUMNS = ["instrument", "from_date", "to_date", "tradingsymbol", "isin",
                    "quantity"]
ACTION_COLUMNS = ["instrument", "day", "action", "ratio"]


@dataclass(frozen=True)
class LotBook:
    realised: pd.DataFrame
    open: pd.DataFrame
    positions: pd.DataFrame


@dataclass
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
    isin_of = (trades.dropna(subset=["isin"]).sort_values("trade_date")
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


def build(trades: pd.DataFrame, actions: pd.DataFrame) -> LotBook:
    """FIFO over one account's trades (columns of ``trades``, ISINs filled) and
    ``actions`` (from ``actions()``)."""
    equity = trades[trades["segment"].isin(EQUITY_SEGMENTS)].copy()
    equity["instrument"] = instrument(equity)
    equity["order_execution_time"] = pd.to_datetime(equity["order_execution_time"],
                                                    utc=True)
    equity = equity.sort_values(["trade_date", "order_execution_time", "trade_id"],
                                kind="stable", na_position="last")
    realised: list[dict[str, Any]] = []
    still_open: list[dict[str, Any]] = []
    positions: list[dict[str, Any]] = []
    by_instrument = {key: group for key, group in actions.groupby("instrument")}
    for key, group in equity.groupby("instrument", sort=True):
        book = _Instrument(str(key), group, by_instrument.get(key))
        book.run()
        realised += book.realised
        still_open += book.open_rows()
        positions += book.positions
    return LotBook(_realised_frame(realised), pd.DataFrame(still_open, columns=OPEN_COLUMNS),
                   pd.DataFrame(positions, columns=POSITION_COLUMNS))


class _Instrument:
    """One instrument's lots, walked day by day."""

    def __init__(self, key: str, trades: pd.DataFrame, actions: pd.DataFrame | None):
        self.key = key
        self.isin = trades["isin"].dropna().iloc[-1] if trades["isin"].notna().any() \
            else None
        self.trades = trades
        self.actions = actions if actions is not None else pd.DataFrame(
            columns=ACTION_COLUMNS)
        self.open: deque[_Lot] = deque()
        self.realised: list[dict[str, Any]] = []
        self.positions: list[dict[str, Any]] = []
        self.symbol = str(trades["tradingsymbol"].iloc[0])

    def run(self) -> None:
        trades_by_day = {day: group for day, group in self.trades.groupby("trade_date")}
        actions_by_day = {day: group for day, group in self.actions.groupby("day")}
        for day in sorted(set(trades_by_day) | set(actions_by_day)):
            if day in actions_by_day:
                for action in actions_by_day[day].itertuples(index=False):
                    self._act(day, str(action.action), float(action.ratio))
            if day in trades_by_day:
                self._trade(day, trades_by_day[day])
            self._position(day)

    def _act(self, day: date, action: str, ratio: float) -> None:
        if action == "split":
            for lot in self.open:
                lot.quantity *= ratio
                lot.price /= ratio
        else:
            extra = math.floor(sum(lot.quantity for lot in self.open) * ratio + EPS)
            if extra > 0:
                self.open.append(_Lot(float(extra), 0.0, day, None, self.symbol))

    def _trade(self, day: date, trades: pd.DataFrame) -> None:
        self.symbol = str(trades["tradingsymbol"].iloc[-1])
        buys = deque(_Lot(float(t.quantity), float(t.price), day, str(t.trade_id),
                          str(t.tradingsymbol))
                     for t in trades[trades["trade_type"] == "buy"].itertuples(index=False))
        for sale in trades[trades["trade_type"] == "sell"].itertuples(index=False):
            left = float(sale.quantity)
            for queue in (buys, self.open):  # the day's own buys first: intraday
                for lot, quantity in _consume(queue, left):
                    left -= quantity
                    self._realise(sale, day, quantity, lot)
            if left > EPS:
                self._realise(sale, day, left, None)
        self.open.extend(buys)

    def _realise(self, sale: Any, day: date, quantity: float, lot: _Lot | None) -> None:
        self.realised.append({
            "tradingsymbol": str(sale.tradingsymbol), "isin": self.isin,
            "buy_date": lot.day if lot else None, "sell_date": day, "quantity": quantity,
            "buy_price": lot.price if lot else None, "sell_price": float(sale.price),
            "unmatched": lot is None, "buy_trade_id": lot.trade_id if lot else None,
            "sell_trade_id": str(sale.trade_id)})

    def _position(self, day: date) -> None:
        quantity = round(sum(lot.quantity for lot in self.open), 6)
        last = self.positions[-1] if self.positions else None
        if last is not None and last["to_date"] is None:
            if abs(last["quantity"] - quantity) <= EPS:
                last["tradingsymbol"] = self.symbol
                return
            last["to_date"] = day
        if quantity > EPS:
            self.positions.append({"instrument": self.key, "from_date": day, "to_date": None,
                                   "tradingsymbol": self.symbol, "isin": self.isin,
                                   "quantity": quantity})

    def open_rows(self) -> list[dict[str, Any]]:
        return [{"tradingsymbol": lot.symbol, "isin": self.isin, "buy_date": lot.day,
                 "quantity": round(lot.quantity, 6), "buy_price": round(lot.price, 6),
                 "buy_trade_id": lot.trade_id}
                for lot in self.open if lot.quantity > EPS]


def _consume(queue: deque[_Lot], quantity: float) -> list[tuple[_Lot, float]]:
    """Take up to ``quantity`` from the head of ``queue`` (oldest first)."""
    pieces = []
    while quantity > EPS and queue:
        lot = queue[0]
        take = min(lot.quantity, quantity)
        pieces.append((_Lot(take, lot.price, lot.day, lot.trade_id, lot.symbol), take))
        lot.quantity -= take
        quantity -= take
        if lot.quantity <= EPS:
            queue.popleft()
    return pieces


def _realised_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
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
