"""Seeded portfolios (holdings, positions, margins, MF holdings) shaped like Kite's
published mock responses."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from snapshotter.simulator._instruments import DERIVATIVES, EQUITIES, FUNDS, money, num, tick


def _make_holdings(rng: random.Random, base_day: date) -> list[dict[str, Any]]:
    picks = rng.sample(EQUITIES, rng.randint(5, 12))
    holdings = []
    for symbol, nse_token, bse_code, isin, typical in picks:
        on_bse = rng.random() < 0.2
        last_price = tick(typical * rng.uniform(0.9, 1.1))
        close_price = tick(last_price * (1 + rng.gauss(0, 0.012)))
        # Target a position worth INR 10k-4L; at least one share.
        quantity = max(1, int(rng.uniform(10_000, 400_000) / last_price))
        t1_quantity = rng.randint(1, max(1, quantity // 4)) if rng.random() < 0.15 else 0
        # The average of a few buys at tick prices: a natural, untidy average like Kite's.
        lots = [rng.randint(1, 10) for _ in range(rng.randint(1, 3))]
        lot_prices = [tick(last_price * rng.uniform(0.65, 1.25)) for _ in lots]
        lot_total = sum(lots)
        lot_qty = [q * quantity // lot_total for q in lots]
        lot_qty[0] += quantity - sum(lot_qty)
        cost = sum(q * p for q, p in zip(lot_qty, lot_prices, strict=True))
        average_price = num(round(cost / quantity, 6))
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
                "last_price": num(last_price),
                "close_price": num(close_price),
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
            "average_price": num(average_price),
            "close_price": num(close_price),
            "last_price": num(last_price),
            "value": num(value),
            "pnl": num(pnl),
            "m2m": num(m2m),
            "unrealised": num(pnl),
            "realised": 0,
            "buy_quantity": buy_quantity,
            "buy_price": num(buy_price),
            "buy_value": num(buy_value),
            "buy_m2m": num(buy_m2m),
            "sell_quantity": sell_quantity,
            "sell_price": num(sell_price),
            "sell_value": num(sell_value),
            "sell_m2m": num(sell_m2m),
            "day_buy_quantity": bq,
            "day_buy_price": num(bp if bq else 0),
            "day_buy_value": num(bq * bp * multiplier),
            "day_sell_quantity": sq,
            "day_sell_price": num(sp if sq else 0),
            "day_sell_value": num(sq * sp * multiplier),
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
            symbol, exchange, token, typical, step, multiplier = rng.choice(DERIVATIVES)
            if any(p["tradingsymbol"] == symbol for p in net):
                continue
            product = "NRML"
            last_price = tick(typical * rng.uniform(0.85, 1.15))
            close_price = tick(last_price * (1 + rng.gauss(0, 0.015)))
            lots = step * rng.randint(1, 4)
            kind = rng.choice(("overnight", "overnight_trimmed", "intraday"))
            if kind == "intraday":
                overnight = 0
                overnight_price = 0.0
            else:
                overnight = lots * rng.choice((1, 1, -1))
                overnight_price = tick(close_price * rng.uniform(0.9, 1.1))
            if kind == "overnight":
                day_buy: tuple[int, float] = (0, 0.0)
                day_sell: tuple[int, float] = (0, 0.0)
            elif kind == "overnight_trimmed":
                # Closed part of the carried position today.
                trim = step * rng.randint(0, abs(overnight) // step)
                price = tick(last_price * rng.uniform(0.98, 1.02))
                if overnight > 0:
                    day_buy, day_sell = (0, 0.0), (trim, price)
                else:
                    day_buy, day_sell = (trim, price), (0, 0.0)
            else:
                day_buy = (lots, tick(last_price * rng.uniform(0.97, 1.03)))
                closed = rng.random() < 0.5
                day_sell = (lots if closed else 0, tick(last_price * rng.uniform(0.97, 1.03)))
        else:
            symbol, nse_token, _bse, _isin, typical = rng.choice(EQUITIES)
            if any(p["tradingsymbol"] == symbol for p in net):
                continue
            exchange, token, multiplier = "NSE", nse_token * 256 + 1, 1
            last_price = tick(typical * rng.uniform(0.9, 1.1))
            close_price = tick(last_price * (1 + rng.gauss(0, 0.012)))
            overnight, overnight_price = 0, 0.0
            quantity = max(1, int(rng.uniform(5_000, 150_000) / last_price))
            buy_price = tick(last_price * rng.uniform(0.985, 1.015))
            if rng.random() < 0.5:
                product = "MIS"
                sell_price = tick(last_price * rng.uniform(0.985, 1.015))
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
                exposure += money(notional * 0.2)
            elif p["tradingsymbol"].endswith(("CE", "PE")):
                if p["quantity"] > 0:
                    option_premium += p["buy_value"]
                else:
                    span += money(notional * 0.09)
                    exposure += money(notional * 0.02)
            else:
                span += money(notional * 0.08)
                exposure += money(notional * 0.02)
        span, exposure, option_premium = money(span), money(exposure), money(option_premium)
        # Enough cash for the margins in use, plus a random cushion.
        used = span + exposure + option_premium
        opening = money(used * rng.uniform(1.1, 2.0) + rng.uniform(5_000, 600_000))
        intraday_payin = money(rng.uniform(1_000, 50_000)) if rng.random() < 0.15 else 0.0
    m2m_realised = 0.0
    debits = money(span + exposure + option_premium)
    cash = money(opening + intraday_payin)
    return {
        "enabled": enabled,
        "net": num(cash - debits),
        "available": {
            "adhoc_margin": 0,
            "cash": num(cash),
            "opening_balance": num(opening),
            "live_balance": num(cash - debits),
            "collateral": 0,
            "intraday_payin": num(intraday_payin),
        },
        "utilised": {
            "debits": num(debits),
            "exposure": num(exposure),
            "m2m_realised": num(m2m_realised),
            "m2m_unrealised": 0,
            "option_premium": num(option_premium),
            "payout": 0,
            "span": num(span),
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
    funds = rng.sample(FUNDS, rng.randint(0, 3))
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

