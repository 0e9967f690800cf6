"""A Kite simulator: a real HTTP server on 127.0.0.1 that speaks Kite's protocol.

It lets the production client be tested over real sockets, with no Zerodha account and no
network: the web login (``/api/login``, ``/api/twofa``, ``/oms/...`` data routes with an
``enctoken``), the official Kite Connect v3 flow (``/connect/login``, ``/connect/finish``,
``/session/token`` and the API routes with ``token api_key:access_token``), Kite's error
envelopes, TOTP checks with replay rejection and account blocking, a per-app rate limit, and
injectable faults (5xx, 429, HTML from a proxy, missing ``error_type``, garbage JSON, slow
answers, redirects, bodies that drip one byte at a time, huge bodies). Protocol notes:
``PROTOCOL.md`` sections 1-3.

Only the standard library's ``http.server`` plus ``pyotp``. Usage::

    with KiteSimulator(demo_accounts(3)) as sim:
        requests.post(f"{sim.base_url}/api/login", data={...})
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import random
import secrets
import signal
import socket
import string
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp

__all__ = [
    "FAULT_KINDS",
    "KiteSimulator",
    "SimAccount",
    "SimApp",
    "demo_accounts",
    "make_portfolio",
    "serve_forever_cli",
]

IST = timezone(timedelta(hours=5, minutes=30), "IST")

#: fault kinds accepted by :meth:`KiteSimulator.fail_next`
FAULT_KINDS = (
    "500",
    "502",
    "503",
    "504",
    "429",
    "token",
    "html",
    "no_error_type",
    "garbage",
    "slow",
    "redirect",
    "drip",
    "huge",
)

#: 2FA failures (wrong or replayed codes) after which the account is blocked
MAX_TWOFA_FAILURES = 5

#: Kite Connect API rate limit: at most this many requests per api_key in any 1 s window
RATE_LIMIT_PER_SECOND = 10

# Messages, as Kite words them (PROTOCOL.md, kite-mocks/error_examples.json)
MSG_INVALID_SESSION = "Invalid session"
MSG_LOGIN_SESSION = "The login session has expired or doesn't exist. Please try again."
MSG_BLOCKED = (
    "Your account is blocked after too many incorrect 2FA attempts. "
    "Reset your password to unblock it."
)
MSG_INVALID_TOTP = "Invalid TOTP"
MSG_BAD_API_TOKEN = "Incorrect `api_key` or `access_token`."
MSG_BAD_CHECKSUM = "Invalid checksum"
MSG_BAD_REQUEST_TOKEN = "Token is invalid or has expired."
MSG_TOO_MANY = "Too many requests"

_FAULT_ENVELOPES: dict[str, tuple[int, str, str]] = {
    "500": (500, "GeneralException", "Something unexpected went wrong"),
    "502": (
        502,
        "NetworkException",
        "The backend OMS is down and the API is unable to communicate with it",
    ),
    "503": (503, "NetworkException", "Service unavailable; the API is down"),
    "504": (504, "NetworkException", "Gateway timeout; the API is unreachable"),
    "429": (429, "NetworkException", MSG_TOO_MANY),
    "token": (403, "TokenException", "Invalid session"),
}

_ALNUM = string.ascii_letters + string.digits


def _rand_alnum(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _new_enctoken() -> str:
    # Real enctokens are base64 text (with '+' and '/'), about 88 characters long.
    return base64.b64encode(secrets.token_bytes(63)).decode("ascii")


# --------------------------------------------------------------------------------------------
# Accounts, apps and realistic portfolios
# --------------------------------------------------------------------------------------------

_DEFAULT_PROFILE: dict[str, Any] = {
    "user_id": "",
    "user_type": "individual",
    "email": "",
    "user_name": "",
    "user_shortname": "",
    "broker": "ZERODHA",
    "exchanges": ["BFO", "MCX", "NSE", "CDS", "BSE", "BCD", "MF", "NFO"],
    "products": ["CNC", "NRML", "MIS", "BO", "CO"],
    "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
    "avatar_url": None,
    "meta": {"demat_consent": "physical"},
}


@dataclass
class SimApp:
    """A Kite Connect app (for the ``connect`` login mode)."""

    api_key: str
    api_secret: str
    redirect_url: str = "http://127.0.0.1/redirect"


@dataclass
class SimAccount:
    """One Zerodha account known to the simulator.

    ``portfolio`` holds exactly the ``data`` of each route: ``holdings`` (list), ``positions``
    (``{"net": [...], "day": [...]}``), ``margins`` (``{"equity": {...}, "commodity": {...}}``)
    and ``mf_holdings`` (list). Tests may mutate it; every answer is a deep copy.
    """

    user_id: str
    password: str
    totp_secret: str
    portfolio: dict[str, Any]
    profile: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.profile = {**copy.deepcopy(_DEFAULT_PROFILE), **self.profile}
        self.profile["user_id"] = self.user_id
        if not self.profile["user_name"]:
            self.profile["user_name"] = f"Sim User {self.user_id}"
        if not self.profile["user_shortname"]:
            self.profile["user_shortname"] = str(self.profile["user_name"]).split()[0]
        if not self.profile["email"]:
            self.profile["email"] = f"{self.user_id.lower()}@example.com"


# (tradingsymbol, NSE exchange token, BSE scrip code, ISIN, typical price in INR)
# instrument_token is exchange_token * 256 + 1 (NSE) or scrip code * 256 + 4 (BSE),
# as in Kite's instrument dumps (SBIN: 779521 on NSE, 128028676 on BSE).
_EQUITIES: tuple[tuple[str, int, int, str, float], ...] = (
    ("RELIANCE", 2885, 500325, "INE002A01018", 1420.0),
    ("TCS", 11536, 532540, "INE467B01029", 3150.0),
    ("INFY", 1594, 500209, "INE009A01021", 1530.0),
    ("HDFCBANK", 1333, 500180, "INE040A01034", 985.0),
    ("ICICIBANK", 4963, 532174, "INE090A01021", 1390.0),
    ("SBIN", 3045, 500112, "INE062A01020", 860.0),
    ("ITC", 1660, 500875, "INE154A01025", 410.0),
    ("LT", 11483, 500510, "INE018A01030", 3850.0),
    ("AXISBANK", 5900, 532215, "INE238A01034", 1160.0),
    ("KOTAKBANK", 1922, 500247, "INE237A01028", 2110.0),
    ("BHARTIARTL", 10604, 532454, "INE397D01024", 1960.0),
    ("HINDUNILVR", 1394, 500696, "INE030A01027", 2440.0),
    ("TATASTEEL", 3499, 500470, "INE081A01020", 166.0),
    ("MARUTI", 10999, 532500, "INE585B01010", 15600.0),
    ("WIPRO", 3787, 507685, "INE075A01022", 248.0),
    ("ASIANPAINT", 236, 500820, "INE021A01026", 2390.0),
    ("SUNPHARMA", 3351, 524715, "INE044A01036", 1680.0),
    ("NTPC", 11630, 532555, "INE733E01010", 338.0),
    ("TITAN", 3506, 500114, "INE280A01028", 3620.0),
    ("HCLTECH", 7229, 532281, "INE860A01027", 1490.0),
    ("ONGC", 2475, 500312, "INE213A01029", 243.0),
    ("POWERGRID", 14977, 532898, "INE752E01010", 289.0),
    ("COALINDIA", 20374, 533278, "INE522F01014", 386.0),
    ("ULTRACEMCO", 11532, 532538, "INE481G01011", 11900.0),
)

# (tradingsymbol, exchange, instrument_token, typical price, lot/step quantity, multiplier)
# NFO quantities are in units (multiples of the lot size), MCX quantities in lots with the
# price multiplier, as Kite reports them.
_DERIVATIVES: tuple[tuple[str, str, int, float, int, int], ...] = (
    ("NIFTY25DECFUT", "NFO", 13238274, 26050.0, 75, 1),
    ("BANKNIFTY25DECFUT", "NFO", 13237250, 59300.0, 35, 1),
    ("NIFTY25DEC26000CE", "NFO", 13453570, 312.0, 75, 1),
    ("NIFTY25DEC25500PE", "NFO", 13450242, 118.0, 75, 1),
    ("BANKNIFTY25DEC59000PE", "NFO", 13266434, 540.0, 35, 1),
    ("GOLDM25DECFUT", "MCX", 118393607, 130450.0, 1, 10),
    ("CRUDEOILM25DECFUT", "MCX", 118382087, 5310.0, 1, 10),
    ("SILVERM25NOVFUT", "MCX", 118358279, 171200.0, 1, 5),
    ("NATGASMINI25DECFUT", "MCX", 118389511, 402.0, 1, 250),
)

# (ISIN, fund name, typical NAV); the first three are the kite-mocks funds, the rest come from
# kite-mocks/mf_instruments.csv plus one widely held fund.
_FUNDS: tuple[tuple[str, str, float], ...] = (
    ("INF205K01NT8", "INVESCO INDIA TAX PLAN - DIRECT PLAN", 84.86),
    ("INF666M01451", "Indiabulls Liquid Fund - Direct Plan", 2081.4984),
    ("INF761K01884", "BOI AXA TAX ADVANTAGE FUND - DIRECT PLAN", 101.13),
    ("INF879O01027", "PARAG PARIKH FLEXI CAP FUND - DIRECT PLAN", 89.4312),
    ("INF209K01YY7", "Aditya Birla Sun Life Frontline Equity Fund - Direct Plan", 556.39),
    ("INF209K01VY3", "Aditya Birla Sun Life Index Fund - Direct Plan", 241.6988),
    ("INF209K01VA3", "Aditya Birla Sun Life Cash Plus - Direct Plan", 436.5712),
)


def _tick(price: float) -> float:
    """Round a price to Kite's 0.05 tick."""
    return round(round(price / 0.05) * 0.05, 2)


def _money(value: float) -> float:
    return round(value, 2)


def _num(value: float) -> int | float:
    """Kite prints whole numbers as ints (``"average_price": 161``)."""
    return int(value) if float(value).is_integer() else value


def _make_holdings(rng: random.Random, base_day: date) -> list[dict[str, Any]]:
    picks = rng.sample(_EQUITIES, rng.randint(5, 12))
    holdings = []
    for symbol, nse_token, bse_code, isin, typical in picks:
        on_bse = rng.random() < 0.2
        last_price = _tick(typical * rng.uniform(0.9, 1.1))
        close_price = _tick(last_price * (1 + rng.gauss(0, 0.012)))
        # Target a position worth INR 10k-4L; at least one share.
        quantity = max(1, int(rng.uniform(10_000, 400_000) / last_price))
        t1_quantity = rng.randint(1, max(1, quantity // 4)) if rng.random() < 0.15 else 0
        # The average of a few buys at tick prices: a natural, untidy average like Kite's.
        lots = [rng.randint(1, 10) for _ in range(rng.randint(1, 3))]
        lot_prices = [_tick(last_price * rng.uniform(0.65, 1.25)) for _ in lots]
        lot_total = sum(lots)
        lot_qty = [q * quantity // lot_total for q in lots]
        lot_qty[0] += quantity - sum(lot_qty)
        cost = sum(q * p for q, p in zip(lot_qty, lot_prices, strict=True))
        average_price = _num(round(cost / quantity, 6))
        day_change = last_price - close_price
        authorised_day = base_day - timedelta(days=rng.randint(0, 200))
        holdings.append(
            {
                "tradingsymbol": symbol,
                "exchange": "BSE" if on_bse else "NSE",
                "instrument_token": bse_code * 256 + 4 if on_bse else nse_token * 256 + 1,
                "isin": isin,
                "product": "CNC",
                "price": 0,
                "quantity": quantity,
                "used_quantity": 0,
                "t1_quantity": t1_quantity,
                "realised_quantity": quantity,
                "authorised_quantity": 0,
                "authorised_date": f"{authorised_day.isoformat()} 00:00:00",
                "authorisation": {},
                "opening_quantity": quantity,
                "short_quantity": 0,
                "collateral_quantity": 0,
                "collateral_type": "",
                "discrepancy": False,
                "average_price": average_price,
                "last_price": _num(last_price),
                "close_price": _num(close_price),
                "pnl": (last_price - average_price) * quantity,
                "day_change": day_change,
                "day_change_percentage": day_change / close_price * 100 if close_price else 0,
                "mtf": {
                    "quantity": 0,
                    "used_quantity": 0,
                    "average_price": 0,
                    "value": 0,
                    "initial_margin": 0,
                },
            }
        )
    return holdings


def _position_rows(
    *,
    symbol: str,
    exchange: str,
    token: int,
    product: str,
    multiplier: int,
    last_price: float,
    close_price: float,
    overnight: int,
    overnight_price: float,
    day_buy: tuple[int, float],
    day_sell: tuple[int, float],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The ``net`` row and (if traded today) the ``day`` row of one position, Kite-style."""

    def row(
        quantity_overnight: int,
        carried_price: float,
        carried_m2m_price: float,
    ) -> dict[str, Any]:
        bq, bp = day_buy
        sq, sp = day_sell
        carried_long = max(quantity_overnight, 0)
        carried_short = max(-quantity_overnight, 0)
        buy_quantity = bq + carried_long
        sell_quantity = sq + carried_short
        buy_value = (bq * bp + carried_long * carried_price) * multiplier
        sell_value = (sq * sp + carried_short * carried_price) * multiplier
        buy_m2m = (bq * bp + carried_long * carried_m2m_price) * multiplier
        sell_m2m = (sq * sp + carried_short * carried_m2m_price) * multiplier
        buy_price = buy_value / (buy_quantity * multiplier) if buy_quantity else 0
        sell_price = sell_value / (sell_quantity * multiplier) if sell_quantity else 0
        quantity = buy_quantity - sell_quantity
        value = sell_value - buy_value
        pnl = value + quantity * last_price * multiplier
        m2m = (sell_m2m - buy_m2m) + quantity * last_price * multiplier
        if quantity > 0:
            average_price = buy_price
        elif quantity < 0:
            average_price = sell_price
        else:
            average_price = 0
        return {
            "tradingsymbol": symbol,
            "exchange": exchange,
            "instrument_token": token,
            "product": product,
            "quantity": quantity,
            "overnight_quantity": quantity_overnight,
            "multiplier": multiplier,
            "average_price": _num(average_price),
            "close_price": _num(close_price),
            "last_price": _num(last_price),
            "value": _num(value),
            "pnl": _num(pnl),
            "m2m": _num(m2m),
            "unrealised": _num(pnl),
            "realised": 0,
            "buy_quantity": buy_quantity,
            "buy_price": _num(buy_price),
            "buy_value": _num(buy_value),
            "buy_m2m": _num(buy_m2m),
            "sell_quantity": sell_quantity,
            "sell_price": _num(sell_price),
            "sell_value": _num(sell_value),
            "sell_m2m": _num(sell_m2m),
            "day_buy_quantity": bq,
            "day_buy_price": _num(bp if bq else 0),
            "day_buy_value": _num(bq * bp * multiplier),
            "day_sell_quantity": sq,
            "day_sell_price": _num(sp if sq else 0),
            "day_sell_value": _num(sq * sp * multiplier),
        }

    net = row(overnight, overnight_price, close_price)
    traded_today = day_buy[0] or day_sell[0]
    day = row(0, 0.0, 0.0) if traded_today else None
    return net, day


def _make_positions(rng: random.Random) -> dict[str, Any]:
    net: list[dict[str, Any]] = []
    day: list[dict[str, Any]] = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        if rng.random() < 0.6:
            symbol, exchange, token, typical, step, multiplier = rng.choice(_DERIVATIVES)
            if any(p["tradingsymbol"] == symbol for p in net):
                continue
            product = "NRML"
            last_price = _tick(typical * rng.uniform(0.85, 1.15))
            close_price = _tick(last_price * (1 + rng.gauss(0, 0.015)))
            lots = step * rng.randint(1, 4)
            kind = rng.choice(("overnight", "overnight_trimmed", "intraday"))
            if kind == "intraday":
                overnight = 0
                overnight_price = 0.0
            else:
                overnight = lots * rng.choice((1, 1, -1))
                overnight_price = _tick(close_price * rng.uniform(0.9, 1.1))
            if kind == "overnight":
                day_buy: tuple[int, float] = (0, 0.0)
                day_sell: tuple[int, float] = (0, 0.0)
            elif kind == "overnight_trimmed":
                # Closed part of the carried position today.
                trim = step * rng.randint(0, abs(overnight) // step)
                price = _tick(last_price * rng.uniform(0.98, 1.02))
                if overnight > 0:
                    day_buy, day_sell = (0, 0.0), (trim, price)
                else:
                    day_buy, day_sell = (trim, price), (0, 0.0)
            else:
                day_buy = (lots, _tick(last_price * rng.uniform(0.97, 1.03)))
                closed = rng.random() < 0.5
                day_sell = (lots if closed else 0, _tick(last_price * rng.uniform(0.97, 1.03)))
        else:
            symbol, nse_token, _bse, _isin, typical = rng.choice(_EQUITIES)
            if any(p["tradingsymbol"] == symbol for p in net):
                continue
            exchange, token, multiplier = "NSE", nse_token * 256 + 1, 1
            last_price = _tick(typical * rng.uniform(0.9, 1.1))
            close_price = _tick(last_price * (1 + rng.gauss(0, 0.012)))
            overnight, overnight_price = 0, 0.0
            quantity = max(1, int(rng.uniform(5_000, 150_000) / last_price))
            buy_price = _tick(last_price * rng.uniform(0.985, 1.015))
            if rng.random() < 0.5:
                product = "MIS"
                sell_price = _tick(last_price * rng.uniform(0.985, 1.015))
                sold = quantity if rng.random() < 0.6 else 0
                if rng.random() < 0.3:  # a short intraday trade
                    day_buy, day_sell = (sold, buy_price), (quantity, sell_price)
                else:
                    day_buy, day_sell = (quantity, buy_price), (sold, sell_price)
            else:
                product = "CNC"
                day_buy, day_sell = (quantity, buy_price), (0, 0.0)
        net_row, day_row = _position_rows(
            symbol=symbol,
            exchange=exchange,
            token=token,
            product=product,
            multiplier=multiplier,
            last_price=last_price,
            close_price=close_price,
            overnight=overnight,
            overnight_price=overnight_price,
            day_buy=day_buy,
            day_sell=day_sell,
        )
        net.append(net_row)
        if day_row is not None:
            day.append(day_row)
    return {"net": net, "day": day}


def _segment_margins(
    rng: random.Random, *, enabled: bool, open_rows: list[dict[str, Any]]
) -> dict[str, Any]:
    opening = intraday_payin = span = exposure = option_premium = 0.0
    if enabled:
        for p in open_rows:
            notional = abs(p["quantity"]) * p["last_price"] * p["multiplier"]
            if p["product"] == "MIS":  # intraday leverage: 20% of the notional
                exposure += _money(notional * 0.2)
            elif p["tradingsymbol"].endswith(("CE", "PE")):
                if p["quantity"] > 0:
                    option_premium += p["buy_value"]
                else:
                    span += _money(notional * 0.09)
                    exposure += _money(notional * 0.02)
            else:
                span += _money(notional * 0.08)
                exposure += _money(notional * 0.02)
        span, exposure, option_premium = _money(span), _money(exposure), _money(option_premium)
        # Enough cash for the margins in use, plus a random cushion.
        used = span + exposure + option_premium
        opening = _money(used * rng.uniform(1.1, 2.0) + rng.uniform(5_000, 600_000))
        intraday_payin = _money(rng.uniform(1_000, 50_000)) if rng.random() < 0.15 else 0.0
    m2m_realised = 0.0
    debits = _money(span + exposure + option_premium)
    cash = _money(opening + intraday_payin)
    return {
        "enabled": enabled,
        "net": _num(cash - debits),
        "available": {
            "adhoc_margin": 0,
            "cash": _num(cash),
            "opening_balance": _num(opening),
            "live_balance": _num(cash - debits),
            "collateral": 0,
            "intraday_payin": _num(intraday_payin),
        },
        "utilised": {
            "debits": _num(debits),
            "exposure": _num(exposure),
            "m2m_realised": _num(m2m_realised),
            "m2m_unrealised": 0,
            "option_premium": _num(option_premium),
            "payout": 0,
            "span": _num(span),
            "holding_sales": 0,
            "turnover": 0,
            "liquid_collateral": 0,
            "stock_collateral": 0,
            "delivery": 0,
        },
    }


def _make_margins(rng: random.Random, positions: dict[str, Any]) -> dict[str, Any]:
    open_rows = [p for p in positions["net"] if p["product"] != "CNC" and p["quantity"]]
    equity_rows = [p for p in open_rows if p["exchange"] != "MCX"]
    commodity_rows = [p for p in open_rows if p["exchange"] == "MCX"]
    commodity_enabled = bool(commodity_rows) or rng.random() < 0.7
    return {
        "equity": _segment_margins(rng, enabled=True, open_rows=equity_rows),
        "commodity": _segment_margins(rng, enabled=commodity_enabled, open_rows=commodity_rows),
    }


def _make_mf_holdings(rng: random.Random) -> list[dict[str, Any]]:
    funds = rng.sample(_FUNDS, rng.randint(0, 3))
    rows = []
    for isin, name, typical_nav in funds:
        last_price = round(typical_nav * rng.uniform(0.95, 1.05), 4)
        average_price = round(last_price * rng.uniform(0.7, 1.15), 6)
        quantity = round(rng.uniform(5_000, 300_000) / average_price, 3)
        rows.append(
            {
                "folio": str(rng.randint(10**9, 10**10 - 1)),
                "average_price": average_price,
                "last_price": last_price,
                "last_price_date": "",
                "pledged_quantity": 0,
                "fund": name,
                "tradingsymbol": isin,
                "pnl": (last_price - average_price) * quantity,
                "quantity": quantity,
            }
        )
    return rows


def make_portfolio(seed: int) -> dict[str, Any]:
    """A deterministic, realistic portfolio: the ``data`` of each Kite route.

    Same field names and shapes as zerodha/kiteconnect-mocks; prices on the 0.05 tick, money
    to 2 decimals, computed fields (``pnl``, ``day_change``, margins ``net``...) left with
    their natural float noise, as Kite sends them.
    """
    rng = random.Random(seed)
    base_day = date(2025, 1, 17) + timedelta(days=rng.randint(0, 300))
    holdings = _make_holdings(rng, base_day)
    positions = _make_positions(rng)
    margins = _make_margins(rng, positions)
    mf_holdings = _make_mf_holdings(rng)
    return {
        "holdings": holdings,
        "positions": positions,
        "margins": margins,
        "mf_holdings": mf_holdings,
    }


_FIRST_NAMES = ("Aarav", "Diya", "Ishaan", "Kavya", "Rohan", "Ananya", "Vikram", "Meera")
_LAST_NAMES = ("Sharma", "Iyer", "Patel", "Reddy", "Gupta", "Nair", "Mehta", "Das")


def demo_accounts(n: int, seed: int = 1) -> list[SimAccount]:
    """``n`` deterministic accounts ``DM0001``.. with passwords, TOTP secrets, portfolios."""
    rng = random.Random(seed)
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    accounts = []
    for i in range(1, n + 1):
        user_id = f"DM{i:04d}"
        password = "".join(rng.choice(_ALNUM) for _ in range(12))
        totp_secret = "".join(rng.choice(b32) for _ in range(32))
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        portfolio = make_portfolio(rng.randrange(2**32))
        profile = {
            "user_name": f"{first} {last}",
            "user_shortname": first,
            "email": f"{first.lower()}.{last.lower()}.{i}@example.com",
        }
        accounts.append(SimAccount(user_id, password, totp_secret, portfolio, profile))
    return accounts


# --------------------------------------------------------------------------------------------
# The HTTP server
# --------------------------------------------------------------------------------------------

_WEB_ROUTES: dict[str, str] = {
    "/oms/portfolio/holdings": "holdings",
    "/oms/portfolio/positions": "positions",
    "/oms/user/margins": "margins",
    "/oms/user/margins/equity": "margins/equity",
    "/oms/user/margins/commodity": "margins/commodity",
    "/oms/mf/holdings": "mf_holdings",
    "/oms/user/profile": "profile",
    "/oms/orders": "orders",
    "/oms/trades": "trades",
}
_API_ROUTES: dict[str, str] = {
    path.removeprefix("/oms"): part for path, part in _WEB_ROUTES.items()
}
_POST_ROUTES = ("/api/login", "/api/twofa", "/session/token")
_GET_ROUTES = ("/connect/login", "/connect/finish")


@dataclass
class _Fault:
    remaining: int
    kind: str
    path_prefix: str
    location: str | None = None  # "redirect": where to (default: the request's own URL)
    status: int | None = None  # "redirect": 3xx status (default 307)
    user_id: str | None = None  # only requests about this user (as requests_log names them)


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: a streamed body instead of ``body``: written chunk by chunk, ``chunk_delay`` s apart
    chunks: Iterable[bytes] | None = None
    chunk_delay: float = 0.0
    #: the streamed body's Content-Length (None: Transfer-Encoding chunked)
    length: int | None = None


def _json(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> _Response:
    body = json.dumps(payload).encode("utf-8")
    return _Response(status, body, "application/json", headers or [])


def _ok(data: Any, headers: list[tuple[str, str]] | None = None) -> _Response:
    return _json(200, {"status": "success", "data": data}, headers)


def _error(status: int, error_type: str, message: str) -> _Response:
    return _json(
        status, {"status": "error", "message": message, "error_type": error_type, "data": None}
    )


def _redirect(location: str) -> _Response:
    return _Response(302, b"", "text/html; charset=utf-8", [("Location", location)])


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    cookies: dict[str, str]


def _first_values(parsed: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in parsed.items() if v}


def _parse_cookies(header: str) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            cookies[name] = value.strip().strip('"')
    return cookies


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: KiteSimulator):
        self.sim = sim
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or went away is normal here; stay quiet.
        pass

    def close_open_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.open_connections)
            self.open_connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KiteSimulator/1.0"
    sys_version = ""
    timeout = 300  # close idle keep-alive connections eventually
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on keep-alive connections

    def setup(self) -> None:
        super().setup()
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.open_connections.add(self.connection)

    def finish(self) -> None:
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        form: dict[str, str] = {}
        content_type = self.headers.get("Content-Type", "")
        if raw and content_type.startswith("application/x-www-form-urlencoded"):
            form = _first_values(parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True))
        request = _Request(
            method=self.command,
            path=url.path,
            query=_first_values(parse_qs(url.query, keep_blank_values=True)),
            form=form,
            headers={k.lower(): v for k, v in self.headers.items()},
            cookies=_parse_cookies(self.headers.get("Cookie", "")),
        )
        response = cast(_Server, self.server).sim._respond(request)
        if response.chunks is not None:
            self._stream(response)
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    def _stream(self, response: _Response) -> None:
        """Write a streamed body; stop when the client goes away or the simulator stops."""
        stopping = cast(_Server, self.server).sim._stopping
        self.close_connection = True
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if response.length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(response.length))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        try:
            for chunk in response.chunks or ():
                if response.chunk_delay > 0 and stopping.wait(response.chunk_delay):
                    return
                if stopping.is_set():
                    return
                if response.length is None:
                    chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
                self.wfile.write(chunk)
            if response.length is None:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client gave up (a deadline, a size limit): normal here
            return


_LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>Kite - Zerodha's fast and elegant flagship trading platform</title></head>
<body><form method="post" action="/api/login">
<input name="user_id" placeholder="User ID"><input name="password" type="password">
<button type="submit">Login</button></form>
<!-- api_key={api_key} sess_id={sess_id} -->
</body></html>
"""


class KiteSimulator:
    """A Kite server on 127.0.0.1 for tests and demos (see the module docstring).

    Thread-safe: every piece of state is guarded by one lock; handlers sleep (``latency``,
    ``slow`` faults) outside it.
    """

    def __init__(
        self,
        accounts: Iterable[SimAccount] = (),
        *,
        apps: Iterable[SimApp] = (),
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
    ):
        self.latency = latency
        #: seconds a "slow" fault waits before answering normally
        self.slow_seconds = 5.0
        #: seconds between the bytes of a "drip" answer
        self.drip_seconds = 5.0
        #: size in MB (2**20 bytes) of a "huge" answer's body
        self.huge_mb = 20.0
        #: a "huge" answer without Content-Length (chunked), so only counting can stop it
        self.huge_chunked = False
        self.host = host
        self.port = port
        self.base_url = ""
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))

        self._lock = threading.RLock()
        self._accounts: dict[str, SimAccount] = {}
        self._apps: dict[str, SimApp] = {a.api_key: a for a in apps}
        self._faults: list[_Fault] = []
        # web login state
        self._pending: dict[str, tuple[str, str]] = {}  # kf_session -> (user_id, request_id)
        self._enctokens: dict[str, str] = {}  # valid enctoken -> user_id
        self._twofa_failures: Counter[str] = Counter()
        self._blocked: set[str] = set()
        self._last_totp_step: dict[str, int] = {}
        # Kite Connect state
        self._sess_ids: dict[str, str] = {}  # sess_id -> api_key
        self._request_tokens: dict[str, tuple[str, str, str]] = {}  # -> (user, api_key, enc)
        self._access_tokens: dict[tuple[str, str], str] = {}  # (api_key, token) -> user_id
        self._api_calls: dict[str, deque[float]] = {}
        # every token ever issued -> user_id, to name the user in requests_log
        self._token_owner: dict[str, str] = {}

        #: successful password checks at /api/login, per user_id
        self.login_count: Counter[str] = Counter()
        #: successful 2FA at /api/twofa, per user_id
        self.twofa_count: Counter[str] = Counter()
        #: (method, path, user_id or None) for every request, in arrival order
        self.requests_log: list[tuple[str, str, str | None]] = []

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        for acc in accounts:
            self.add_account(acc)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> KiteSimulator:
        """Listen and serve in a daemon thread; ``base_url`` is set on return."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"kite-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> KiteSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------------------------

    def add_account(self, acc: SimAccount) -> None:
        with self._lock:
            self._accounts[acc.user_id] = acc

    def add_app(self, app: SimApp) -> None:
        with self._lock:
            self._apps[app.api_key] = app

    def portfolio(self, user_id: str) -> dict[str, Any]:
        """The account's live, mutable portfolio dict."""
        with self._lock:
            return self._accounts[user_id].portfolio

    def fail_next(
        self,
        count: int,
        kind: str,
        path_prefix: str = "/",
        *,
        location: str | None = None,
        status: int | None = None,
        user_id: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests whose path starts with ``path_prefix`` with a fault.

        Kinds: ``FAULT_KINDS``. Rules queue up in call order; the first matching rule is used.
        With ``user_id``, only requests about that user match (by form field or token).
        ``redirect`` answers ``status`` (default 307) with ``Location: location`` (default:
        the request's own path and query, so a client that follows it sends it again);
        ``drip`` sends the real answer's headers, then its body one byte every
        ``drip_seconds``; ``huge`` answers a valid success envelope of ``huge_mb`` MB.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count < 0:
            raise ValueError("count must be >= 0")
        if status is not None and not 300 <= status < 400:
            raise ValueError("a redirect status is 3xx")
        if count:
            with self._lock:
                self._faults.append(
                    _Fault(count, kind, path_prefix, location, status, user_id)
                )

    def expire_tokens(self, user_id: str | None = None) -> None:
        """Invalidate enctokens, access tokens and unused request tokens (all, or one user's)."""
        with self._lock:
            for tok, owner in list(self._enctokens.items()):
                if user_id is None or owner == user_id:
                    del self._enctokens[tok]
            for key, owner in list(self._access_tokens.items()):
                if user_id is None or owner == user_id:
                    del self._access_tokens[key]
            for tok, (owner, _k, _e) in list(self._request_tokens.items()):
                if user_id is None or owner == user_id:
                    del self._request_tokens[tok]

    def is_blocked(self, user_id: str) -> bool:
        with self._lock:
            return user_id in self._blocked

    def unblock(self, user_id: str) -> None:
        """What a password reset does: unblock and clear the 2FA failure count."""
        with self._lock:
            self._blocked.discard(user_id)
            self._twofa_failures.pop(user_id, None)

    @property
    def twofa_failures(self) -> dict[str, int]:
        with self._lock:
            return dict(self._twofa_failures)

    # -- request handling ----------------------------------------------------------------------

    def _respond(self, req: _Request) -> _Response:
        with self._lock:
            user_id = self._identify(req)
            self.requests_log.append((req.method, req.path, user_id))
            fault = self._take_fault(req.path, user_id)
        if self.latency > 0:
            self._stopping.wait(self.latency)
        if fault is not None and fault.kind == "slow":
            self._stopping.wait(self.slow_seconds)
        elif fault is not None and fault.kind == "drip":
            answer = self._dispatch_or_error(req)
            return _Response(
                answer.status,
                content_type=answer.content_type,
                headers=answer.headers,
                chunks=(answer.body[i : i + 1] for i in range(len(answer.body))),
                chunk_delay=self.drip_seconds,
                length=len(answer.body),
            )
        elif fault is not None:
            return self._fault_response(fault, req)
        return self._dispatch_or_error(req)

    def _dispatch_or_error(self, req: _Request) -> _Response:
        try:
            return self._dispatch(req)
        except Exception as exc:  # a simulator bug: answer like Kite would, visibly
            return _error(500, "GeneralException", f"simulator error: {exc!r}")

    def _identify(self, req: _Request) -> str | None:
        """The user a request is about (for ``requests_log``), without validating anything."""
        if "user_id" in req.form:
            return req.form["user_id"]
        auth = req.headers.get("authorization", "")
        scheme, _, cred = auth.partition(" ")
        if scheme == "enctoken":
            return self._token_owner.get(cred.strip())
        if scheme == "token":
            return self._token_owner.get(cred.strip().partition(":")[2])
        if "request_token" in req.form:
            owner = self._request_tokens.get(req.form["request_token"])
            return owner[0] if owner else self._token_owner.get(req.form["request_token"])
        if "enctoken" in req.cookies:
            return self._token_owner.get(req.cookies["enctoken"])
        if "kf_session" in req.cookies:
            pending = self._pending.get(req.cookies["kf_session"])
            return pending[0] if pending else None
        return None

    def _take_fault(self, path: str, user_id: str | None) -> _Fault | None:
        for fault in self._faults:
            if path.startswith(fault.path_prefix) and fault.user_id in (None, user_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return copy.copy(fault)
        return None

    def _fault_response(self, fault: _Fault, req: _Request) -> _Response:
        kind = fault.kind
        if kind == "redirect":
            own = req.path + (f"?{urlencode(req.query)}" if req.query else "")
            location = fault.location or own
            return _Response(fault.status or 307, b"", "text/html; charset=utf-8",
                             [("Location", location)])
        if kind == "huge":
            return self._huge_response()
        if kind in _FAULT_ENVELOPES:
            status, error_type, message = _FAULT_ENVELOPES[kind]
            return _error(status, error_type, message)
        if kind == "html":
            body = b"<html><body>Bad gateway</body></html>"
            return _Response(200, body, "text/html; charset=utf-8")
        if kind == "no_error_type":
            return _json(500, {"status": "error", "message": "Something unexpected went wrong"})
        if kind == "garbage":
            body = b'{"status": "success", "data": [{"tradingsymbol": "INF'
            return _Response(200, body, "application/json")
        raise AssertionError(kind)

    def _huge_response(self) -> _Response:
        """``{"status": "success", "data": ["xxx..."]}`` of ``huge_mb`` MB, made as sent."""
        head, tail = b'{"status": "success", "data": ["', b'"]}'
        total = max(int(self.huge_mb * 2**20), len(head) + len(tail))
        padding = total - len(head) - len(tail)

        def chunks() -> Iterable[bytes]:
            yield head
            piece = b"x" * 65536
            left = padding
            while left > 0:
                yield piece[: min(left, len(piece))]
                left -= len(piece)
            yield tail

        return _Response(200, chunks=chunks(), length=None if self.huge_chunked else total)

    def _dispatch(self, req: _Request) -> _Response:
        path = req.path.rstrip("/") or "/"
        web_part = _WEB_ROUTES.get(path)
        api_part = _API_ROUTES.get(path)
        if web_part is not None or api_part is not None or path in _GET_ROUTES:
            if req.method != "GET":
                return _error(405, "InputException", "Method not allowed")
        elif path in _POST_ROUTES:
            if req.method != "POST":
                return _error(405, "InputException", "Method not allowed")
        else:
            return _error(404, "GeneralException", "Route not found")

        if web_part is not None:
            return self._web_data(req, web_part)
        if api_part is not None:
            return self._api_data(req, api_part)
        handlers: dict[str, Callable[[_Request], _Response]] = {
            "/api/login": self._login,
            "/api/twofa": self._twofa,
            "/connect/login": self._connect_login,
            "/connect/finish": self._connect_finish,
            "/session/token": self._session_token,
        }
        return handlers[path](req)

    # -- web login ---------------------------------------------------------------------------

    def _login(self, req: _Request) -> _Response:
        user_id = req.form.get("user_id", "").strip()
        password = req.form.get("password", "")
        with self._lock:
            acc = self._accounts.get(user_id)
            if acc is None:
                return _error(400, "InputException", "Invalid `user_id`.")
            if user_id in self._blocked:
                return _error(403, "UserException", MSG_BLOCKED)
            if not secrets.compare_digest(password.encode(), acc.password.encode()):
                return _error(403, "UserException", "Invalid `password`.")
            self.login_count[user_id] += 1
            kf_session = _rand_alnum(32)
            request_id = _rand_alnum(64)
            self._pending[kf_session] = (user_id, request_id)
            data = {
                "user_id": user_id,
                "request_id": request_id,
                "twofa_type": "totp",
                "twofa_types": ["totp", "app_code"],
                "twofa_status": "active",
                "profile": {
                    "user_name": acc.profile.get("user_name"),
                    "user_shortname": acc.profile.get("user_shortname"),
                    "avatar_url": acc.profile.get("avatar_url"),
                },
            }
        return _ok(data, [("Set-Cookie", f"kf_session={kf_session}; path=/; HttpOnly")])

    def _twofa(self, req: _Request) -> _Response:
        user_id = req.form.get("user_id", "").strip()
        request_id = req.form.get("request_id", "")
        code = req.form.get("twofa_value", "").strip()
        with self._lock:
            pending = self._pending.get(req.cookies.get("kf_session", ""))
            if pending is None or pending != (user_id, request_id):
                return _error(403, "TokenException", MSG_LOGIN_SESSION)
            if req.form.get("twofa_type") != "totp":
                return _error(400, "InputException", "Invalid `twofa_type`.")
            if not (len(code) == 6 and code.isdigit()):
                return _error(400, "InputException", "Invalid `twofa_value`.")
            if user_id in self._blocked:
                return _error(403, "UserException", MSG_BLOCKED)
            acc = self._accounts[user_id]
            step = self._verify_totp(acc.totp_secret, code)
            if step is None or step <= self._last_totp_step.get(user_id, -1):
                self._twofa_failures[user_id] += 1
                if self._twofa_failures[user_id] >= MAX_TWOFA_FAILURES:
                    self._blocked.add(user_id)
                    self._pending = {k: v for k, v in self._pending.items() if v[0] != user_id}
                return _error(403, "TwoFAException", MSG_INVALID_TOTP)
            self._last_totp_step[user_id] = step
            self._twofa_failures.pop(user_id, None)
            del self._pending[req.cookies["kf_session"]]
            # A new web login ends the account's other web sessions.
            for tok, owner in list(self._enctokens.items()):
                if owner == user_id:
                    del self._enctokens[tok]
            enctoken = _new_enctoken()
            self._enctokens[enctoken] = user_id
            self._token_owner[enctoken] = user_id
            self.twofa_count[user_id] += 1
        cookies = [
            ("Set-Cookie", f"enctoken={enctoken}; path=/"),
            ("Set-Cookie", f"public_token={_rand_alnum(32)}; path=/"),
            ("Set-Cookie", f"user_id={user_id}; path=/"),
        ]
        return _ok({"profile": {}}, cookies)

    def _verify_totp(self, secret: str, code: str) -> int | None:
        """The 30 s step the code belongs to (window +-1), or None if it is wrong."""
        totp = pyotp.TOTP(secret)
        now = self.clock()
        if not totp.verify(code, for_time=now, valid_window=1):
            return None
        step = totp.timecode(now)
        for candidate in (step, step - 1, step + 1):
            if secrets.compare_digest(totp.generate_otp(candidate), code):
                return candidate
        return None

    def _web_data(self, req: _Request, part: str) -> _Response:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        with self._lock:
            user_id = self._enctokens.get(token.strip()) if scheme == "enctoken" else None
            if user_id is None:
                return _error(403, "TokenException", MSG_INVALID_SESSION)
            return _ok(self._data_for(user_id, part))

    def _data_for(self, user_id: str, part: str) -> Any:
        acc = self._accounts[user_id]
        pf = acc.portfolio
        if part == "profile":
            return copy.deepcopy(acc.profile)
        if part in ("orders", "trades"):
            return []
        if part == "positions":
            return copy.deepcopy(pf.get("positions", {"net": [], "day": []}))
        if part.startswith("margins"):
            margins = pf.get("margins", {})
            segment = part.partition("/")[2]
            return copy.deepcopy(margins.get(segment, {}) if segment else margins)
        return copy.deepcopy(pf.get(part, []))

    # -- Kite Connect ------------------------------------------------------------------------

    def _connect_login(self, req: _Request) -> _Response:
        api_key = req.query.get("api_key", "")
        with self._lock:
            if api_key not in self._apps:
                return _error(400, "InputException", "Invalid `api_key`.")
            sess_id = req.query.get("sess_id")
            if sess_id:
                if self._sess_ids.get(sess_id) != api_key:
                    return _error(400, "InputException", "Invalid `sess_id`.")
                page = _LOGIN_PAGE.format(api_key=api_key, sess_id=sess_id)
                return _Response(200, page.encode("utf-8"), "text/html; charset=utf-8")
            sess_id = _rand_alnum(32)
            self._sess_ids[sess_id] = api_key
        query = urlencode({"api_key": api_key, "sess_id": sess_id})
        return _redirect(f"{self.base_url}/connect/login?{query}")

    def _connect_finish(self, req: _Request) -> _Response:
        api_key = req.query.get("api_key", "")
        sess_id = req.query.get("sess_id", "")
        enctoken = req.cookies.get("enctoken", "")
        with self._lock:
            app = self._apps.get(api_key)
            if app is None:
                return _error(400, "InputException", "Invalid `api_key`.")
            user_id = self._enctokens.get(enctoken)
            if user_id is None:
                return _error(403, "TokenException", MSG_LOGIN_SESSION)
            if self._sess_ids.get(sess_id) != api_key:
                return _error(400, "InputException", "Invalid `sess_id`.")
            del self._sess_ids[sess_id]
            request_token = _rand_alnum(32)
            self._request_tokens[request_token] = (user_id, api_key, enctoken)
            self._token_owner[request_token] = user_id
        sep = "&" if "?" in app.redirect_url else "?"
        query = urlencode(
            {
                "action": "login",
                "type": "login",
                "status": "success",
                "request_token": request_token,
            }
        )
        return _redirect(f"{app.redirect_url}{sep}{query}")

    def _session_token(self, req: _Request) -> _Response:
        api_key = req.form.get("api_key", "")
        request_token = req.form.get("request_token", "")
        checksum = req.form.get("checksum", "")
        with self._lock:
            app = self._apps.get(api_key)
            if app is None:
                return _error(403, "TokenException", MSG_BAD_API_TOKEN)
            if not request_token or not checksum:
                return _error(400, "InputException", "Missing `request_token` or `checksum`.")
            expected = hashlib.sha256(
                (api_key + request_token + app.api_secret).encode("utf-8")
            ).hexdigest()
            if not secrets.compare_digest(expected, checksum.lower()):
                return _error(403, "TokenException", MSG_BAD_CHECKSUM)
            issued = self._request_tokens.get(request_token)
            if issued is None or issued[1] != api_key:
                return _error(403, "TokenException", MSG_BAD_REQUEST_TOKEN)
            del self._request_tokens[request_token]
            user_id, _key, enctoken = issued
            access_token = _rand_alnum(32)
            self._access_tokens[(api_key, access_token)] = user_id
            self._token_owner[access_token] = user_id
            profile = self._accounts[user_id].profile
            login_time = self.clock().astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")
            data = {
                "user_type": profile.get("user_type", "individual"),
                "email": profile.get("email", ""),
                "user_name": profile.get("user_name", ""),
                "user_shortname": profile.get("user_shortname", ""),
                "broker": profile.get("broker", "ZERODHA"),
                "exchanges": copy.deepcopy(profile.get("exchanges", [])),
                "products": copy.deepcopy(profile.get("products", [])),
                "order_types": copy.deepcopy(profile.get("order_types", [])),
                "avatar_url": profile.get("avatar_url"),
                "user_id": user_id,
                "api_key": api_key,
                "access_token": access_token,
                "public_token": _rand_alnum(32),
                "enctoken": enctoken,
                "refresh_token": "",
                "silo": "",
                "login_time": login_time,
                "meta": {"demat_consent": "physical"},
            }
        return _ok(data)

    def _api_data(self, req: _Request, part: str) -> _Response:
        if req.headers.get("x-kite-version", "").strip() != "3":
            return _error(400, "InputException", "Invalid or missing `X-Kite-Version` header.")
        scheme, _, cred = req.headers.get("authorization", "").partition(" ")
        api_key, _, access_token = cred.strip().partition(":")
        with self._lock:
            user_id = (
                self._access_tokens.get((api_key, access_token)) if scheme == "token" else None
            )
            if user_id is None:
                return _error(403, "TokenException", MSG_BAD_API_TOKEN)
            now = time.monotonic()
            calls = self._api_calls.setdefault(api_key, deque())
            while calls and now - calls[0] >= 1.0:
                calls.popleft()
            if len(calls) >= RATE_LIMIT_PER_SECOND:
                return _error(429, "NetworkException", MSG_TOO_MANY)
            calls.append(now)
            return _ok(self._data_for(user_id, part))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def serve_forever_cli(
    port: int, accounts: list[SimAccount], latency: float, *, apps: Iterable[SimApp] = ()
) -> None:
    """Serve on 127.0.0.1:``port`` until Ctrl-C or SIGTERM, then stop cleanly."""
    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: Any = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    sim = KiteSimulator(accounts, apps=apps, latency=latency, port=port).start()
    try:
        print(f"Kite simulator listening on {sim.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """``python -m snapshotter.simulator``: serve demo accounts for manual runs."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Serve a Kite simulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    parser.add_argument("--accounts", type=int, default=3, help="number of demo accounts")
    parser.add_argument("--seed", type=int, default=1, help="seed of the demo accounts")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    args = parser.parse_args(argv)
    accounts = demo_accounts(args.accounts, seed=args.seed)
    for acc in accounts:  # fake credentials of the demo accounts, for the operator
        print(f"{acc.user_id} password={acc.password} totp={acc.totp_secret}", file=sys.stderr)
    serve_forever_cli(args.port, accounts, args.latency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
