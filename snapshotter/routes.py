"""The data routes: one table of what the job fetches from Kite and where it keeps it.

Per route: its name (the payload's name, as the client fetches it and ``raw_payloads``
keeps it), its path (the same under the web session's ``{base_url}/oms`` and Kite
Connect's ``{api_root}``), the table it fills, the columns that identify a record within
one account snapshot, and every column with its kind. The Kite client, normalize, the
models (its table and its ledger count column), the store, the run's outcomes and the
summaries read this table; adding a route is a row here, a migration and the simulator's
answer.

Standard library only: the Kite client imports it and must not import pandas or
SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, cast, get_args

# Column kinds: str, int, float, bool, datetime (Kite's naive IST in, aware UTC out), date
Kind = Literal["str", "int", "float", "bool", "datetime", "date"]

WEB_PREFIX = "/oms"  # data routes of a web (enctoken) session live under {base_url}/oms
PROFILE_PATH = "/user/profile"  # asked once per session to check it, never stored


@dataclass(frozen=True)
class Route:
    """One data route. ``shape`` is how its answer holds the records:

    - ``list``: a list of records;
    - ``grouped``: an object whose ``groups`` (in that order) are lists of records, the
      group's name kept in ``group_column`` (positions' ``net`` and ``day``);
    - ``keyed``: an object of records keyed by ``group_column`` (margins' segments,
      in sorted order; every key Kite sends is a row).

    ``nested``: objects inside a record whose leaves are columns. With ``nested_prefix``
    a leaf is ``{object}_{leaf}`` (``mtf.quantity`` -> ``mtf_quantity``) and an object of
    another shape goes to ``extra``; without, a leaf keeps its own name (margins'
    ``available.cash`` -> ``cash``) and an object of another shape is a payload error.
    """

    name: str
    path: str
    table: str
    natural_key: tuple[str, ...]
    fields: Mapping[str, Kind]
    label: str  # how a message names one record: str.format over its columns
    nested: Mapping[str, Mapping[str, Kind]] = field(default_factory=dict)
    nested_prefix: bool = True
    shape: Literal["list", "grouped", "keyed"] = "list"
    group_column: str | None = None
    groups: tuple[str, ...] = ()
    # The column a record without a last_price is valued at (the views' fallback), for
    # routes whose records are valued by last_price; None: no such warning.
    unpriced_fallback: str | None = None
    # The heading of its row count in a session's summary (`demo`); None: not shown.
    summary_heading: str | None = None

    @property
    def web_path(self) -> str:
        return f"{WEB_PREFIX}{self.path}"

    @property
    def connect_path(self) -> str:
        return self.path

    @property
    def count_column(self) -> str:
        """The ledger's (``snapshots``) column counting the rows a snapshot stored here."""
        return f"{self.table}_count"

    @cached_property
    def columns(self) -> dict[str, Kind]:
        """Every column normalize fills, in table order (before ``extra``)."""
        out: dict[str, Kind] = {self.group_column: "str"} if self.group_column else {}
        out.update(self.fields)
        for parent, leaves in self.nested.items():
            prefix = f"{parent}_" if self.nested_prefix else ""
            out.update({f"{prefix}{leaf}": kind for leaf, kind in leaves.items()})
        return out


def kinds(spec: str) -> dict[str, Kind]:
    """Columns in order from ``"name, name: kind; name: kind"`` (as Python annotates)."""
    out: dict[str, Kind] = {}
    for group in filter(None, (part.strip() for part in spec.split(";"))):
        names, kind = (text.strip() for text in group.split(":"))
        if kind not in get_args(Kind):
            raise ValueError(f"unknown column kind {kind!r} in {group!r}")
        out.update(dict.fromkeys((name.strip() for name in names.split(",")),
                                 cast(Kind, kind)))
    return out


HOLDINGS = Route(
    name="holdings", path="/portfolio/holdings", table="holdings",
    natural_key=("exchange", "tradingsymbol"),
    fields=kinds("tradingsymbol, exchange: str; instrument_token: int; isin, product: str; "
                 "price: float; quantity, used_quantity, t1_quantity, realised_quantity, "
                 "authorised_quantity: int; authorised_date: datetime; opening_quantity, "
                 "short_quantity, collateral_quantity: int; collateral_type: str; "
                 "discrepancy: bool; average_price, last_price, close_price, pnl, day_change, "
                 "day_change_percentage: float"),
    nested={"mtf": kinds("quantity, used_quantity: int; "
                         "average_price, value, initial_margin: float")},
    label="holdings {exchange}:{tradingsymbol}",
    unpriced_fallback="close_price",
    summary_heading="holdings",
)

POSITIONS = Route(
    name="positions", path="/portfolio/positions", table="positions",
    natural_key=("position_type", "exchange", "tradingsymbol", "product"),
    fields=kinds("tradingsymbol, exchange: str; instrument_token: int; product: str; "
                 "quantity, overnight_quantity: int; multiplier, average_price, close_price, "
                 "last_price, value, pnl, m2m, unrealised, realised: float; "
                 "buy_quantity: int; buy_price, buy_value, buy_m2m: float; "
                 "sell_quantity: int; sell_price, sell_value, sell_m2m: float; "
                 "day_buy_quantity: int; day_buy_price, day_buy_value: float; "
                 "day_sell_quantity: int; day_sell_price, day_sell_value: float"),
    label="positions {position_type} {exchange}:{tradingsymbol} {product}",
    shape="grouped", group_column="position_type", groups=("net", "day"),
    summary_heading="positions",
)

MARGINS = Route(
    name="margins", path="/user/margins", table="funds", natural_key=("segment",),
    fields=kinds("enabled: bool; net: float"),
    nested={
        "available": kinds("adhoc_margin, cash, opening_balance, live_balance, collateral, "
                           "intraday_payin: float"),
        "utilised": kinds("debits, exposure, m2m_realised, m2m_unrealised, option_premium, "
                          "payout, span, holding_sales, turnover, liquid_collateral, "
                          "stock_collateral, delivery: float"),
    },
    nested_prefix=False,
    label="margins {segment}",
    shape="keyed", group_column="segment",
)

MF_HOLDINGS = Route(
    name="mf_holdings", path="/mf/holdings", table="mf_holdings",
    natural_key=("folio", "tradingsymbol"),
    fields=kinds("folio, fund, tradingsymbol: str; average_price, last_price: float; "
                 "last_price_date: date; pledged_quantity, pnl, quantity: float"),
    label="mf_holdings {tradingsymbol} (folio {folio})",
    unpriced_fallback="average_price",
    summary_heading="mf",
)

ROUTES: tuple[Route, ...] = (HOLDINGS, POSITIONS, MARGINS, MF_HOLDINGS)
BY_TABLE: dict[str, Route] = {route.table: route for route in ROUTES}


# Historical candles (`snapshotter benchmark fetch`): GET {base_url}/oms{path} with the web
# session, {api_root}{path} with Kite Connect (whose Personal plan has no market data:
# PermissionException), ``?from=YYYY-MM-DD&to=YYYY-MM-DD`` both inclusive; the answer is
# ``{"candles": [[timestamp, open, high, low, close, volume], ...]}``.
HISTORICAL_PATH = "/instruments/historical/{instrument_token}/{interval}"
# Kite refuses a day-interval request spanning more days than this: longer ranges go in
# chunks.
HISTORICAL_MAX_DAYS = {"day": 2000}
# The benchmark names `benchmark fetch` knows, and their Kite instrument tokens (NSE
# indices: the tokens Kite's instrument dump gives "NIFTY 50" and "NIFTY BANK").
INDEX_TOKENS: dict[str, int] = {"NIFTY50": 256265, "NIFTYBANK": 260105}
