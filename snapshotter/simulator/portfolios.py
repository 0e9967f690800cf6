"""Simulated Kite accounts: credentials, profiles and seeded portfolios (holdings,
positions, margins, MF holdings) shaped like Kite's published mock responses."""

from __future__ import annotations

import base64
import copy
import random
import secrets
import string
from dataclasses import dataclass, field
from datetime import date, timedelta, timezone
from typing import Any

IST = timezone(timedelta(hours=5, minutes=30), "IST")

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
