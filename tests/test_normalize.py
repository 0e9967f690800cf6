"""normalize: raw Kite ``data`` payloads -> typed DataFrames, checked row by row.

The four mock payloads below are the ``data`` members of zerodha/kiteconnect-mocks as copied to
../shared/kite-mocks beside the repository (holdings.json, positions.json, margins.json,
mf_holdings.json); they are embedded so that the test runs anywhere, and
``test_embedded_mocks_match_shared_files`` checks the copies when the shared folder is present.
Every expected row is written out by hand.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from snapshotter import normalize, routes
from snapshotter.normalize import (
    TABLE_BY_PAYLOAD,
    PayloadError,
    normalize_all,
    normalize_route,
)

ACCOUNT = "AB1234"
DAY = date(2025, 1, 17)
REPOSITORY = Path(__file__).resolve().parents[1]
#: the team's shared folder sits beside the checkout (``../shared``)
SHARED_MOCKS = REPOSITORY.parent / "shared" / "kite-mocks"
# Kite's naive IST "2025-01-17 00:00:00" as an aware UTC timestamp
AUTHORISED = pd.Timestamp("2025-01-16 18:30:00+00:00")

Normalizer = Callable[[Any, str, date], pd.DataFrame]


def _normalizer(route: routes.Route) -> Normalizer:
    return lambda raw, account, day: normalize_route(route, raw, account, day)


normalize_holdings = _normalizer(routes.HOLDINGS)
normalize_positions = _normalizer(routes.POSITIONS)
normalize_margins = _normalizer(routes.MARGINS)
normalize_mf_holdings = _normalizer(routes.MF_HOLDINGS)

# ---------------------------------------------------------------------------------------------
# The mock payloads (the `data` member of each file)
# ---------------------------------------------------------------------------------------------

MOCK_HOLDINGS: Any = [
    {
        "tradingsymbol": "AARON",
        "exchange": "NSE",
        "instrument_token": 263681,
        "isin": "INE721Z01010",
        "product": "CNC",
        "price": 0,
        "quantity": 1,
        "used_quantity": 0,
        "t1_quantity": 0,
        "realised_quantity": 1,
        "authorised_quantity": 0,
        "authorised_date": "2025-01-17 00:00:00",
        "authorisation": {},
        "opening_quantity": 1,
        "short_quantity": 0,
        "collateral_quantity": 0,
        "collateral_type": "",
        "discrepancy": False,
        "average_price": 161,
        "last_price": 352.95,
        "close_price": 352.35,
        "pnl": 191.95,
        "day_change": 0.5999999999999659,
        "day_change_percentage": 0.17028522775648244,
        "mtf": {
            "quantity": 1000, "used_quantity": 0, "average_price": 100, "value": 100000,
            "initial_margin": 0,
        },
    },
    {
        "tradingsymbol": "SBIN",
        "exchange": "BSE",
        "instrument_token": 128028676,
        "isin": "INE062A01020",
        "product": "CNC",
        "price": 0,
        "quantity": 16,
        "used_quantity": 0,
        "t1_quantity": 0,
        "realised_quantity": 16,
        "authorised_quantity": 0,
        "authorised_date": "2025-01-17 00:00:00",
        "authorisation": {},
        "opening_quantity": 16,
        "short_quantity": 0,
        "collateral_quantity": 0,
        "collateral_type": "",
        "discrepancy": False,
        "average_price": 801.78125,
        "last_price": 762.45,
        "close_price": 766.4,
        "pnl": -629.2999999999993,
        "day_change": -3.949999999999932,
        "day_change_percentage": -0.5153966597077155,
        "mtf": {
            "quantity": 0, "used_quantity": 0, "average_price": 0, "value": 0, "initial_margin": 0,
        },
    },
]


MOCK_POSITIONS: Any = {
    "net": [
        {
            "tradingsymbol": "LEADMINI17DECFUT", "exchange": "MCX", "instrument_token": 53496327,
            "product": "NRML", "quantity": 1, "overnight_quantity": 0, "multiplier": 1000,
            "average_price": 161.05, "close_price": 0, "last_price": 161.05, "value": -161050,
            "pnl": 0, "m2m": 0, "unrealised": 0, "realised": 0, "buy_quantity": 1,
            "buy_price": 161.05, "buy_value": 161050, "buy_m2m": 161050, "sell_quantity": 0,
            "sell_price": 0, "sell_value": 0, "sell_m2m": 0, "day_buy_quantity": 1,
            "day_buy_price": 161.05, "day_buy_value": 161050, "day_sell_quantity": 0,
            "day_sell_price": 0, "day_sell_value": 0,
        },
        {
            "tradingsymbol": "GOLDGUINEA17DECFUT", "exchange": "MCX", "instrument_token": 53505799,
            "product": "NRML", "quantity": 0, "overnight_quantity": 3, "multiplier": 1,
            "average_price": 0, "close_price": 23232, "last_price": 23355, "value": 801,
            "pnl": 801, "m2m": 276, "unrealised": 801, "realised": 0, "buy_quantity": 4,
            "buy_price": 23139.75, "buy_value": 92559, "buy_m2m": 93084, "sell_quantity": 4,
            "sell_price": 23340, "sell_value": 93360, "sell_m2m": 93360, "day_buy_quantity": 1,
            "day_buy_price": 23388, "day_buy_value": 23388, "day_sell_quantity": 4,
            "day_sell_price": 23340, "day_sell_value": 93360,
        },
        {
            "tradingsymbol": "SBIN", "exchange": "NSE", "instrument_token": 779521,
            "product": "CO", "quantity": 0, "overnight_quantity": 0, "multiplier": 1,
            "average_price": 0, "close_price": 0, "last_price": 308.4, "value": -2, "pnl": -2,
            "m2m": -2, "unrealised": -2, "realised": 0, "buy_quantity": 1, "buy_price": 311,
            "buy_value": 311, "buy_m2m": 311, "sell_quantity": 1, "sell_price": 309,
            "sell_value": 309, "sell_m2m": 309, "day_buy_quantity": 1, "day_buy_price": 311,
            "day_buy_value": 311, "day_sell_quantity": 1, "day_sell_price": 309,
            "day_sell_value": 309,
        },
    ],
    "day": [
        {
            "tradingsymbol": "GOLDGUINEA17DECFUT", "exchange": "MCX", "instrument_token": 53505799,
            "product": "NRML", "quantity": -3, "overnight_quantity": 0, "multiplier": 1,
            "average_price": 23340, "close_price": 23232, "last_price": 23355, "value": 69972,
            "pnl": -93, "m2m": -93, "unrealised": -93, "realised": 0, "buy_quantity": 1,
            "buy_price": 23388, "buy_value": 23388, "buy_m2m": 23388, "sell_quantity": 4,
            "sell_price": 23340, "sell_value": 93360, "sell_m2m": 93360, "day_buy_quantity": 1,
            "day_buy_price": 23388, "day_buy_value": 23388, "day_sell_quantity": 4,
            "day_sell_price": 23340, "day_sell_value": 93360,
        },
        {
            "tradingsymbol": "LEADMINI17DECFUT", "exchange": "MCX", "instrument_token": 53496327,
            "product": "NRML", "quantity": 1, "overnight_quantity": 0, "multiplier": 1000,
            "average_price": 161.05, "close_price": 0, "last_price": 161.05, "value": -161050,
            "pnl": 0, "m2m": 0, "unrealised": 0, "realised": 0, "buy_quantity": 1,
            "buy_price": 161.05, "buy_value": 161050, "buy_m2m": 161050, "sell_quantity": 0,
            "sell_price": 0, "sell_value": 0, "sell_m2m": 0, "day_buy_quantity": 1,
            "day_buy_price": 161.05, "day_buy_value": 161050, "day_sell_quantity": 0,
            "day_sell_price": 0, "day_sell_value": 0,
        },
        {
            "tradingsymbol": "SBIN", "exchange": "NSE", "instrument_token": 779521,
            "product": "CO", "quantity": 0, "overnight_quantity": 0, "multiplier": 1,
            "average_price": 0, "close_price": 0, "last_price": 308.4, "value": -2, "pnl": -2,
            "m2m": -2, "unrealised": -2, "realised": 0, "buy_quantity": 1, "buy_price": 311,
            "buy_value": 311, "buy_m2m": 311, "sell_quantity": 1, "sell_price": 309,
            "sell_value": 309, "sell_m2m": 309, "day_buy_quantity": 1, "day_buy_price": 311,
            "day_buy_value": 311, "day_sell_quantity": 1, "day_sell_price": 309,
            "day_sell_value": 309,
        },
    ],
}


MOCK_MARGINS: Any = {
    "equity": {
        "enabled": True,
        "net": 99725.05000000002,
        "available": {
            "adhoc_margin": 0, "cash": 245431.6, "opening_balance": 245431.6,
            "live_balance": 99725.05000000002, "collateral": 0, "intraday_payin": 0,
        },
        "utilised": {
            "debits": 145706.55, "exposure": 38981.25, "m2m_realised": 761.7, "m2m_unrealised": 0,
            "option_premium": 0, "payout": 0, "span": 101989, "holding_sales": 0, "turnover": 0,
            "liquid_collateral": 0, "stock_collateral": 0, "delivery": 0,
        },
    },
    "commodity": {
        "enabled": True,
        "net": 100661.7,
        "available": {
            "adhoc_margin": 0, "cash": 100661.7, "opening_balance": 100661.7,
            "live_balance": 100661.7, "collateral": 0, "intraday_payin": 0,
        },
        "utilised": {
            "debits": 0, "exposure": 0, "m2m_realised": 0, "m2m_unrealised": 0,
            "option_premium": 0, "payout": 0, "span": 0, "holding_sales": 0, "turnover": 0,
            "liquid_collateral": 0, "stock_collateral": 0, "delivery": 0,
        },
    },
}


MOCK_MF_HOLDINGS: Any = [
    {
        "folio": "3108290884", "average_price": 78.43, "last_price": 84.86, "last_price_date": "",
        "pledged_quantity": 0, "fund": "INVESCO INDIA TAX PLAN - DIRECT PLAN",
        "tradingsymbol": "INF205K01NT8", "pnl": 0, "quantity": 382.488,
    },
    {
        "folio": "5102495241", "average_price": 1874.101138, "last_price": 2081.4984,
        "last_price_date": "", "pledged_quantity": 0,
        "fund": "Indiabulls Liquid Fund - Direct Plan", "tradingsymbol": "INF666M01451", "pnl": 0,
        "quantity": 1.334,
    },
    {
        "folio": "9104386836", "average_price": 116.7, "last_price": 101.13, "last_price_date": "",
        "pledged_quantity": 0, "fund": "BOI AXA TAX ADVANTAGE FUND - DIRECT PLAN",
        "tradingsymbol": "INF761K01884", "pnl": 0, "quantity": 257.057,
    },
]


# ---------------------------------------------------------------------------------------------
# Exact column order and dtypes of each table
# ---------------------------------------------------------------------------------------------

HOLDING_DTYPES = {
    "account": "string", "snapshot_date": "object",
    "tradingsymbol": "string", "exchange": "string", "instrument_token": "Int64",
    "isin": "string", "product": "string", "price": "Float64", "quantity": "Int64",
    "used_quantity": "Int64", "t1_quantity": "Int64", "realised_quantity": "Int64",
    "authorised_quantity": "Int64", "authorised_date": "datetime64[us, UTC]",
    "opening_quantity": "Int64", "short_quantity": "Int64", "collateral_quantity": "Int64",
    "collateral_type": "string", "discrepancy": "boolean", "average_price": "Float64",
    "last_price": "Float64", "close_price": "Float64", "pnl": "Float64",
    "day_change": "Float64", "day_change_percentage": "Float64",
    "mtf_quantity": "Int64", "mtf_used_quantity": "Int64", "mtf_average_price": "Float64",
    "mtf_value": "Float64", "mtf_initial_margin": "Float64",
    "extra": "object",
}
POSITION_DTYPES = {
    "account": "string", "snapshot_date": "object", "position_type": "string",
    "tradingsymbol": "string", "exchange": "string", "instrument_token": "Int64",
    "product": "string", "quantity": "Int64", "overnight_quantity": "Int64",
    "multiplier": "Float64", "average_price": "Float64", "close_price": "Float64",
    "last_price": "Float64", "value": "Float64", "pnl": "Float64", "m2m": "Float64",
    "unrealised": "Float64", "realised": "Float64",
    "buy_quantity": "Int64", "buy_price": "Float64", "buy_value": "Float64",
    "buy_m2m": "Float64",
    "sell_quantity": "Int64", "sell_price": "Float64", "sell_value": "Float64",
    "sell_m2m": "Float64",
    "day_buy_quantity": "Int64", "day_buy_price": "Float64", "day_buy_value": "Float64",
    "day_sell_quantity": "Int64", "day_sell_price": "Float64", "day_sell_value": "Float64",
    "extra": "object",
}
FUNDS_DTYPES = {
    "account": "string", "snapshot_date": "object", "segment": "string",
    "enabled": "boolean", "net": "Float64",
    "adhoc_margin": "Float64", "cash": "Float64", "opening_balance": "Float64",
    "live_balance": "Float64", "collateral": "Float64", "intraday_payin": "Float64",
    "debits": "Float64", "exposure": "Float64", "m2m_realised": "Float64",
    "m2m_unrealised": "Float64", "option_premium": "Float64", "payout": "Float64",
    "span": "Float64", "holding_sales": "Float64", "turnover": "Float64",
    "liquid_collateral": "Float64", "stock_collateral": "Float64", "delivery": "Float64",
    "extra": "object",
}
MF_DTYPES = {
    "account": "string", "snapshot_date": "object",
    "folio": "string", "fund": "string", "tradingsymbol": "string",
    "average_price": "Float64", "last_price": "Float64", "last_price_date": "object",
    "pledged_quantity": "Float64", "pnl": "Float64", "quantity": "Float64",
    "extra": "object",
}

# ---------------------------------------------------------------------------------------------
# Expected rows, by hand
# ---------------------------------------------------------------------------------------------

EXPECTED_HOLDINGS = [
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17),
        "tradingsymbol": "AARON", "exchange": "NSE", "instrument_token": 263681,
        "isin": "INE721Z01010", "product": "CNC", "price": 0.0, "quantity": 1,
        "used_quantity": 0, "t1_quantity": 0, "realised_quantity": 1,
        "authorised_quantity": 0, "authorised_date": AUTHORISED,
        "opening_quantity": 1, "short_quantity": 0, "collateral_quantity": 0,
        "collateral_type": None, "discrepancy": False, "average_price": 161.0,
        "last_price": 352.95, "close_price": 352.35, "pnl": 191.95,
        "day_change": 0.6, "day_change_percentage": 0.170285,
        "mtf_quantity": 1000, "mtf_used_quantity": 0, "mtf_average_price": 100.0,
        "mtf_value": 100000.0, "mtf_initial_margin": 0.0,
        "extra": {"authorisation": {}},
    },
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17),
        "tradingsymbol": "SBIN", "exchange": "BSE", "instrument_token": 128028676,
        "isin": "INE062A01020", "product": "CNC", "price": 0.0, "quantity": 16,
        "used_quantity": 0, "t1_quantity": 0, "realised_quantity": 16,
        "authorised_quantity": 0, "authorised_date": AUTHORISED,
        "opening_quantity": 16, "short_quantity": 0, "collateral_quantity": 0,
        "collateral_type": None, "discrepancy": False, "average_price": 801.78125,
        "last_price": 762.45, "close_price": 766.4, "pnl": -629.3,
        "day_change": -3.95, "day_change_percentage": -0.515397,
        "mtf_quantity": 0, "mtf_used_quantity": 0, "mtf_average_price": 0.0,
        "mtf_value": 0.0, "mtf_initial_margin": 0.0,
        "extra": {"authorisation": {}},
    },
]

EXPECTED_POSITIONS = [  # net rows, then day rows, each in payload order
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17), "position_type": "net",
        "tradingsymbol": "LEADMINI17DECFUT", "exchange": "MCX", "instrument_token": 53496327,
        "product": "NRML", "quantity": 1, "overnight_quantity": 0, "multiplier": 1000.0,
        "average_price": 161.05, "close_price": 0.0, "last_price": 161.05, "value": -161050.0,
        "pnl": 0.0, "m2m": 0.0, "unrealised": 0.0, "realised": 0.0,
        "buy_quantity": 1, "buy_price": 161.05, "buy_value": 161050.0, "buy_m2m": 161050.0,
        "sell_quantity": 0, "sell_price": 0.0, "sell_value": 0.0, "sell_m2m": 0.0,
        "day_buy_quantity": 1, "day_buy_price": 161.05, "day_buy_value": 161050.0,
        "day_sell_quantity": 0, "day_sell_price": 0.0, "day_sell_value": 0.0,
        "extra": None,
    },
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17), "position_type": "net",
        "tradingsymbol": "GOLDGUINEA17DECFUT", "exchange": "MCX", "instrument_token": 53505799,
        "product": "NRML", "quantity": 0, "overnight_quantity": 3, "multiplier": 1.0,
        "average_price": 0.0, "close_price": 23232.0, "last_price": 23355.0, "value": 801.0,
        "pnl": 801.0, "m2m": 276.0, "unrealised": 801.0, "realised": 0.0,
        "buy_quantity": 4, "buy_price": 23139.75, "buy_value": 92559.0, "buy_m2m": 93084.0,
        "sell_quantity": 4, "sell_price": 23340.0, "sell_value": 93360.0, "sell_m2m": 93360.0,
        "day_buy_quantity": 1, "day_buy_price": 23388.0, "day_buy_value": 23388.0,
        "day_sell_quantity": 4, "day_sell_price": 23340.0, "day_sell_value": 93360.0,
        "extra": None,
    },
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17), "position_type": "net",
        "tradingsymbol": "SBIN", "exchange": "NSE", "instrument_token": 779521,
        "product": "CO", "quantity": 0, "overnight_quantity": 0, "multiplier": 1.0,
        "average_price": 0.0, "close_price": 0.0, "last_price": 308.4, "value": -2.0,
        "pnl": -2.0, "m2m": -2.0, "unrealised": -2.0, "realised": 0.0,
        "buy_quantity": 1, "buy_price": 311.0, "buy_value": 311.0, "buy_m2m": 311.0,
        "sell_quantity": 1, "sell_price": 309.0, "sell_value": 309.0, "sell_m2m": 309.0,
        "day_buy_quantity": 1, "day_buy_price": 311.0, "day_buy_value": 311.0,
        "day_sell_quantity": 1, "day_sell_price": 309.0, "day_sell_value": 309.0,
        "extra": None,
    },
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17), "position_type": "day",
        "tradingsymbol": "GOLDGUINEA17DECFUT", "exchange": "MCX", "instrument_token": 53505799,
        "product": "NRML", "quantity": -3, "overnight_quantity": 0, "multiplier": 1.0,
        "average_price": 23340.0, "close_price": 23232.0, "last_price": 23355.0,
        "value": 69972.0, "pnl": -93.0, "m2m": -93.0, "unrealised": -93.0, "realised": 0.0,
        "buy_quantity": 1, "buy_price": 23388.0, "buy_value": 23388.0, "buy_m2m": 23388.0,
        "sell_quantity": 4, "sell_price": 23340.0, "sell_value": 93360.0, "sell_m2m": 93360.0,
        "day_buy_quantity": 1, "day_buy_price": 23388.0, "day_buy_value": 23388.0,
        "day_sell_quantity": 4, "day_sell_price": 23340.0, "day_sell_value": 93360.0,
        "extra": None,
    },
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17), "position_type": "day",
        "tradingsymbol": "LEADMINI17DECFUT", "exchange": "MCX", "instrument_token": 53496327,
        "product": "NRML", "quantity": 1, "overnight_quantity": 0, "multiplier": 1000.0,
        "average_price": 161.05, "close_price": 0.0, "last_price": 161.05, "value": -161050.0,
        "pnl": 0.0, "m2m": 0.0, "unrealised": 0.0, "realised": 0.0,
        "buy_quantity": 1, "buy_price": 161.05, "buy_value": 161050.0, "buy_m2m": 161050.0,
        "sell_quantity": 0, "sell_price": 0.0, "sell_value": 0.0, "sell_m2m": 0.0,
        "day_buy_quantity": 1, "day_buy_price": 161.05, "day_buy_value": 161050.0,
        "day_sell_quantity": 0, "day_sell_price": 0.0, "day_sell_value": 0.0,
        "extra": None,
    },
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17), "position_type": "day",
        "tradingsymbol": "SBIN", "exchange": "NSE", "instrument_token": 779521,
        "product": "CO", "quantity": 0, "overnight_quantity": 0, "multiplier": 1.0,
        "average_price": 0.0, "close_price": 0.0, "last_price": 308.4, "value": -2.0,
        "pnl": -2.0, "m2m": -2.0, "unrealised": -2.0, "realised": 0.0,
        "buy_quantity": 1, "buy_price": 311.0, "buy_value": 311.0, "buy_m2m": 311.0,
        "sell_quantity": 1, "sell_price": 309.0, "sell_value": 309.0, "sell_m2m": 309.0,
        "day_buy_quantity": 1, "day_buy_price": 311.0, "day_buy_value": 311.0,
        "day_sell_quantity": 1, "day_sell_price": 309.0, "day_sell_value": 309.0,
        "extra": None,
    },
]

EXPECTED_FUNDS = [  # one row per segment, segments sorted
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17), "segment": "commodity",
        "enabled": True, "net": 100661.7,
        "adhoc_margin": 0.0, "cash": 100661.7, "opening_balance": 100661.7,
        "live_balance": 100661.7, "collateral": 0.0, "intraday_payin": 0.0,
        "debits": 0.0, "exposure": 0.0, "m2m_realised": 0.0, "m2m_unrealised": 0.0,
        "option_premium": 0.0, "payout": 0.0, "span": 0.0, "holding_sales": 0.0,
        "turnover": 0.0, "liquid_collateral": 0.0, "stock_collateral": 0.0, "delivery": 0.0,
        "extra": None,
    },
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17), "segment": "equity",
        "enabled": True, "net": 99725.05,
        "adhoc_margin": 0.0, "cash": 245431.6, "opening_balance": 245431.6,
        "live_balance": 99725.05, "collateral": 0.0, "intraday_payin": 0.0,
        "debits": 145706.55, "exposure": 38981.25, "m2m_realised": 761.7,
        "m2m_unrealised": 0.0, "option_premium": 0.0, "payout": 0.0, "span": 101989.0,
        "holding_sales": 0.0, "turnover": 0.0, "liquid_collateral": 0.0,
        "stock_collateral": 0.0, "delivery": 0.0,
        "extra": None,
    },
]

EXPECTED_MF_HOLDINGS = [
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17),
        "folio": "3108290884", "fund": "INVESCO INDIA TAX PLAN - DIRECT PLAN",
        "tradingsymbol": "INF205K01NT8", "average_price": 78.43, "last_price": 84.86,
        "last_price_date": None, "pledged_quantity": 0.0, "pnl": 0.0, "quantity": 382.488,
        "extra": None,
    },
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17),
        "folio": "5102495241", "fund": "Indiabulls Liquid Fund - Direct Plan",
        "tradingsymbol": "INF666M01451", "average_price": 1874.101138,
        "last_price": 2081.4984, "last_price_date": None, "pledged_quantity": 0.0,
        "pnl": 0.0, "quantity": 1.334,
        "extra": None,
    },
    {
        "account": "AB1234", "snapshot_date": date(2025, 1, 17),
        "folio": "9104386836", "fund": "BOI AXA TAX ADVANTAGE FUND - DIRECT PLAN",
        "tradingsymbol": "INF761K01884", "average_price": 116.7, "last_price": 101.13,
        "last_price_date": None, "pledged_quantity": 0.0, "pnl": 0.0, "quantity": 257.057,
        "extra": None,
    },
]

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """One cell -> a plain Python value (NA/NaT -> None, numpy scalars -> Python scalars)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{col: _plain(frame[col].iloc[i]) for col in frame.columns}
            for i in range(len(frame))]


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {col: str(dtype) for col, dtype in frame.dtypes.items()}


def assert_rows(frame: pd.DataFrame, expected: list[dict[str, Any]],
                expected_dtypes: dict[str, str]) -> None:
    """Same columns in the same order, same dtypes, same values of the same Python types."""
    assert list(frame.columns) == list(expected_dtypes)
    assert dtypes(frame) == expected_dtypes
    assert list(frame.index) == list(range(len(expected)))
    actual = records(frame)
    assert actual == expected
    for got_row, want_row in zip(actual, expected, strict=True):
        assert list(got_row) == list(want_row)  # the literal rows are written in column order
        for col, want in want_row.items():
            got = got_row[col]
            if want is not None:
                assert type(got) is type(want), (col, got, want)


def holding(**fields: Any) -> dict[str, Any]:
    """An expected holdings row: every column NA except ``fields``."""
    return {**dict.fromkeys(HOLDING_DTYPES), "account": ACCOUNT, "snapshot_date": DAY, **fields}


def position(**fields: Any) -> dict[str, Any]:
    return {**dict.fromkeys(POSITION_DTYPES), "account": ACCOUNT, "snapshot_date": DAY,
            **fields}


def fund(**fields: Any) -> dict[str, Any]:
    return {**dict.fromkeys(FUNDS_DTYPES), "account": ACCOUNT, "snapshot_date": DAY, **fields}


def mf(**fields: Any) -> dict[str, Any]:
    return {**dict.fromkeys(MF_DTYPES), "account": ACCOUNT, "snapshot_date": DAY, **fields}


# ---------------------------------------------------------------------------------------------
# The mock payloads, row by row
# ---------------------------------------------------------------------------------------------


def test_column_specs_match_the_expected_tables() -> None:
    """The DB schema is generated from these specs: any drift must be deliberate."""
    assert ["account", "snapshot_date", *routes.HOLDINGS.columns, "extra"] == list(HOLDING_DTYPES)
    assert ["account", "snapshot_date", *routes.POSITIONS.columns, "extra"] == list(POSITION_DTYPES)
    assert ["account", "snapshot_date", *routes.MARGINS.columns, "extra"] == list(FUNDS_DTYPES)
    assert ["account", "snapshot_date", *routes.MF_HOLDINGS.columns, "extra"] == list(MF_DTYPES)


def test_holdings_mock() -> None:
    frame = normalize_holdings(MOCK_HOLDINGS, ACCOUNT, DAY)
    assert_rows(frame, EXPECTED_HOLDINGS, HOLDING_DTYPES)
    assert str(frame["authorised_date"].iloc[0].tz) == "UTC"


def test_positions_mock() -> None:
    assert_rows(normalize_positions(MOCK_POSITIONS, ACCOUNT, DAY), EXPECTED_POSITIONS,
                POSITION_DTYPES)


def test_margins_mock() -> None:
    assert_rows(normalize_margins(MOCK_MARGINS, ACCOUNT, DAY), EXPECTED_FUNDS, FUNDS_DTYPES)


def test_mf_holdings_mock() -> None:
    assert_rows(normalize_mf_holdings(MOCK_MF_HOLDINGS, ACCOUNT, DAY), EXPECTED_MF_HOLDINGS,
                MF_DTYPES)


@pytest.mark.parametrize("name, embedded", [
    ("holdings", MOCK_HOLDINGS), ("positions", MOCK_POSITIONS),
    ("margins", MOCK_MARGINS), ("mf_holdings", MOCK_MF_HOLDINGS),
])
def test_embedded_mocks_match_shared_files(name: str, embedded: Any) -> None:
    path = SHARED_MOCKS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} not present (the shared folder beside the repository)")
    assert json.loads(path.read_text())["data"] == embedded


# ---------------------------------------------------------------------------------------------
# Missing, unknown and empty
# ---------------------------------------------------------------------------------------------


def test_missing_fields_are_na() -> None:
    assert_rows(normalize_holdings([{"tradingsymbol": "X"}], ACCOUNT, DAY),
                [holding(tradingsymbol="X")], HOLDING_DTYPES)
    assert_rows(normalize_positions({"net": [{"tradingsymbol": "X"}]}, ACCOUNT, DAY),
                [position(position_type="net", tradingsymbol="X")], POSITION_DTYPES)
    assert_rows(normalize_margins({"equity": {}}, ACCOUNT, DAY),
                [fund(segment="equity")], FUNDS_DTYPES)
    assert_rows(normalize_mf_holdings([{"tradingsymbol": "X"}], ACCOUNT, DAY),
                [mf(tradingsymbol="X")], MF_DTYPES)


def test_explicit_nulls_and_blank_strings_are_na() -> None:
    record = {"tradingsymbol": "X", "isin": "", "collateral_type": "   ", "quantity": None,
              "price": "", "discrepancy": None, "authorised_date": "", "mtf": None}
    assert_rows(normalize_holdings([record], ACCOUNT, DAY), [holding(tradingsymbol="X")],
                HOLDING_DTYPES)
    assert_rows(normalize_mf_holdings([{"folio": "1", "last_price_date": None}], ACCOUNT, DAY),
                [mf(folio="1")], MF_DTYPES)


def test_unknown_field_and_unknown_mtf_key_go_to_extra() -> None:
    record = {
        "tradingsymbol": "X", "quantity": 3,
        "new_field": {"a": [1, 2]},
        "mtf": {"quantity": 5, "value": 10.5, "new_key": "x"},
    }
    assert_rows(normalize_holdings([record], ACCOUNT, DAY), [holding(
        tradingsymbol="X", quantity=3, mtf_quantity=5, mtf_value=10.5,
        extra={"new_field": {"a": [1, 2]}, "mtf": {"new_key": "x"}},
    )], HOLDING_DTYPES)


def test_unknown_mtf_shape_goes_to_extra() -> None:
    assert_rows(normalize_holdings([{"tradingsymbol": "X", "mtf": "n/a"}], ACCOUNT, DAY),
                [holding(tradingsymbol="X", extra={"mtf": "n/a"})], HOLDING_DTYPES)


def test_unknown_position_and_mf_fields_go_to_extra() -> None:
    raw = {"net": [], "day": [{"tradingsymbol": "X", "new_field": 1, "position_type": "odd"}]}
    assert_rows(normalize_positions(raw, ACCOUNT, DAY), [position(
        position_type="day", tradingsymbol="X",
        extra={"new_field": 1, "position_type": "odd"},
    )], POSITION_DTYPES)
    assert_rows(normalize_mf_holdings([{"folio": "1", "xirr": 0.12}], ACCOUNT, DAY),
                [mf(folio="1", extra={"xirr": 0.12})], MF_DTYPES)


def test_unknown_margins_leaves_go_to_extra_under_their_parent() -> None:
    raw = {"equity": {
        "enabled": False, "net": 1,
        "available": {"cash": 2.5, "new_thing": 7},
        "utilised": {"debits": 1.5, "other_new": [1]},
        "new_top": "x",
    }}
    assert_rows(normalize_margins(raw, ACCOUNT, DAY), [fund(
        segment="equity", enabled=False, net=1.0, cash=2.5, debits=1.5,
        extra={"new_top": "x", "available": {"new_thing": 7}, "utilised": {"other_new": [1]}},
    )], FUNDS_DTYPES)


def test_unknown_margins_segment_gets_its_own_row() -> None:
    raw = {"mf": {"net": 3}, "equity": {"net": 1}}
    assert_rows(normalize_margins(raw, ACCOUNT, DAY),
                [fund(segment="equity", net=1.0), fund(segment="mf", net=3.0)], FUNDS_DTYPES)


@pytest.mark.parametrize("normalizer, raw, expected_dtypes", [
    (normalize_holdings, None, HOLDING_DTYPES),
    (normalize_holdings, [], HOLDING_DTYPES),
    (normalize_positions, None, POSITION_DTYPES),
    (normalize_positions, {}, POSITION_DTYPES),
    (normalize_positions, {"net": [], "day": []}, POSITION_DTYPES),
    (normalize_positions, {"net": None, "day": None}, POSITION_DTYPES),
    (normalize_margins, None, FUNDS_DTYPES),
    (normalize_margins, {}, FUNDS_DTYPES),
    (normalize_mf_holdings, None, MF_DTYPES),
    (normalize_mf_holdings, [], MF_DTYPES),
])
def test_empty_payloads_give_empty_frames(normalizer: Normalizer, raw: Any,
                                          expected_dtypes: dict[str, str]) -> None:
    assert_rows(normalizer(raw, ACCOUNT, DAY), [], expected_dtypes)


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------


def test_ints_and_floats_mixed() -> None:
    raw = [
        {"tradingsymbol": "A", "price": 0, "quantity": 5, "average_price": 161,
         "pnl": "-2.5", "mtf_ignored": 1},
        {"tradingsymbol": "B", "price": 0.0, "quantity": 5.0, "average_price": 161.0,
         "pnl": 0.1 + 0.2},
        {"tradingsymbol": "C", "price": "0", "quantity": " 7 ", "average_price": "1e2",
         "pnl": -1e-9},
    ]
    assert_rows(normalize_holdings(raw, ACCOUNT, DAY), [
        holding(tradingsymbol="A", price=0.0, quantity=5, average_price=161.0, pnl=-2.5,
                extra={"mtf_ignored": 1}),
        holding(tradingsymbol="B", price=0.0, quantity=5, average_price=161.0, pnl=0.3),
        holding(tradingsymbol="C", price=0.0, quantity=7, average_price=100.0, pnl=0.0),
    ], HOLDING_DTYPES)


def test_rounding_leaves_no_negative_zero() -> None:
    frame = normalize_margins({"equity": {"utilised": {"payout": -0.0, "span": -1e-9}}},
                              ACCOUNT, DAY)
    for col in ("payout", "span"):
        value = frame[col].iloc[0]
        assert value == 0.0 and math.copysign(1.0, value) == 1.0, col


def test_rounding_keeps_six_decimals() -> None:
    frame = normalize_mf_holdings([{"quantity": 1.23456749, "last_price": 2081.4984004}],
                                  ACCOUNT, DAY)
    assert records(frame)[0]["quantity"] == 1.234567
    assert records(frame)[0]["last_price"] == 2081.4984


def test_big_integers_keep_every_digit() -> None:
    raw = [{"instrument_token": 2**53 + 1}, {"instrument_token": 2**63 - 1}, {},
           {"instrument_token": -(2**63)}]
    frame = normalize_holdings(raw, ACCOUNT, DAY)
    assert [_plain(v) for v in frame["instrument_token"]] == [
        9007199254740993, 9223372036854775807, None, -9223372036854775808]


@pytest.mark.parametrize("value", ["ten", "", "1_000", "nan", [1], {"a": 1}, True, "0x10"])
def test_non_numeric_quantity_raises_naming_the_field(value: Any) -> None:
    if value == "":
        # a blank is "no value", not an error
        frame = normalize_holdings([{"quantity": value}], ACCOUNT, DAY)
        assert frame["quantity"].isna().all()
        return
    with pytest.raises(PayloadError, match=r"field quantity: not a number: "):
        normalize_holdings([{"tradingsymbol": "X", "quantity": value}], ACCOUNT, DAY)


def test_non_numeric_float_raises_naming_the_field() -> None:
    with pytest.raises(PayloadError, match=r"field last_price: not a number: 'abc'"):
        normalize_positions({"net": [{"last_price": "abc"}]}, ACCOUNT, DAY)
    with pytest.raises(PayloadError, match=r"field cash: not a number"):
        normalize_margins({"equity": {"available": {"cash": "lots"}}}, ACCOUNT, DAY)
    with pytest.raises(PayloadError, match=r"field quantity: not a number"):
        normalize_mf_holdings([{"quantity": False}], ACCOUNT, DAY)


@pytest.mark.parametrize("value", [1.5, "2.25", 0.1])
def test_non_integral_quantity_raises(value: Any) -> None:
    with pytest.raises(PayloadError, match=r"field quantity: expected a whole number"):
        normalize_holdings([{"quantity": 1}, {"quantity": value}], ACCOUNT, DAY)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1e20])
def test_integer_out_of_range_raises(value: Any) -> None:
    with pytest.raises(PayloadError, match=r"field instrument_token: out of the 64-bit"):
        normalize_holdings([{"instrument_token": value}], ACCOUNT, DAY)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_raise(value: float) -> None:
    with pytest.raises(PayloadError, match=r"field price: not a finite number"):
        normalize_holdings([{"price": value}], ACCOUNT, DAY)


def test_booleans() -> None:
    raw = [{"discrepancy": v} for v in (True, False, 1, 0, "true", "False", "1", "0", "")]
    frame = normalize_holdings(raw, ACCOUNT, DAY)
    assert [_plain(v) for v in frame["discrepancy"]] == [
        True, False, True, False, True, False, True, False, None]
    for bad in (2, "yes", float("nan")):
        with pytest.raises(PayloadError, match=r"field discrepancy: not a boolean"):
            normalize_holdings([{"discrepancy": bad}], ACCOUNT, DAY)


def test_strings_are_kept_as_text() -> None:
    frame = normalize_mf_holdings([{"folio": 3108290884, "fund": " Fund "}], ACCOUNT, DAY)
    assert records(frame)[0]["folio"] == "3108290884"
    assert records(frame)[0]["fund"] == " Fund "


# ---------------------------------------------------------------------------------------------
# Timestamps and dates
# ---------------------------------------------------------------------------------------------


def test_timestamps_are_ist_in_utc_out() -> None:
    raw = [{"authorised_date": v} for v in (
        "2025-01-17 00:00:00",  # Kite's naive IST
        "2025-01-17T00:00:00",
        "2025-01-17",
        "2025-01-17 05:30:00+05:30",  # an explicit zone is honoured
        "2025-01-16T18:30:00Z",
        "2025-06-30 15:30:45",
    )]
    frame = normalize_holdings(raw, ACCOUNT, DAY)
    assert dtypes(frame)["authorised_date"] == "datetime64[us, UTC]"
    assert [_plain(v) for v in frame["authorised_date"]] == [
        AUTHORISED, AUTHORISED, AUTHORISED,
        pd.Timestamp("2025-01-17 00:00:00+00:00"), AUTHORISED,
        pd.Timestamp("2025-06-30 10:00:45+00:00"),
    ]


@pytest.mark.parametrize("value", ["garbage", "17/01/2025 00:00:00", 1737052200, True,
                                   "0001-01-01 00:00:00"])
def test_bad_timestamps_raise_instead_of_becoming_na(value: Any) -> None:
    with pytest.raises(PayloadError, match=r"field authorised_date: "):
        normalize_holdings([{"authorised_date": value}], ACCOUNT, DAY)


def test_all_na_timestamp_column_keeps_its_dtype() -> None:
    frame = normalize_holdings([{"authorised_date": None}, {}], ACCOUNT, DAY)
    assert dtypes(frame)["authorised_date"] == "datetime64[us, UTC]"
    assert frame["authorised_date"].isna().all()


def test_dates() -> None:
    raw = [{"last_price_date": v} for v in ("2017-11-23", "2017-11-23 00:00:00", "", None)]
    frame = normalize_mf_holdings(raw, ACCOUNT, DAY)
    assert [_plain(v) for v in frame["last_price_date"]] == [
        date(2017, 11, 23), date(2017, 11, 23), None, None]


@pytest.mark.parametrize("value", ["soon", "02-01-2025", "23/11/2017", 20250117, 1.5])
def test_bad_dates_raise_instead_of_being_guessed(value: Any) -> None:
    with pytest.raises(PayloadError, match=r"field last_price_date: not a date"):
        normalize_mf_holdings([{"last_price_date": value}], ACCOUNT, DAY)


# ---------------------------------------------------------------------------------------------
# Payload shapes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalizer, raw, message", [
    (normalize_holdings, {"tradingsymbol": "X"}, "holdings: expected a list of objects"),
    (normalize_holdings, [None], "holdings: expected a list of objects"),
    (normalize_holdings, "[]", "holdings: expected a list of objects"),
    (normalize_positions, [], "positions: expected an object with net and day"),
    (normalize_positions, {"net": {}}, "positions.net: expected a list of objects"),
    (normalize_margins, [], "margins: expected an object keyed by segment"),
    (normalize_margins, {"equity": 5}, "margins.equity: expected an object"),
    (normalize_margins, {"equity": {"available": 5}}, "margins.equity.available: expected"),
    (normalize_mf_holdings, {}, "mf_holdings: expected a list of objects"),
])
def test_wrong_shapes_raise(normalizer: Normalizer, raw: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        normalizer(raw, ACCOUNT, DAY)


# ---------------------------------------------------------------------------------------------
# normalize_all
# ---------------------------------------------------------------------------------------------


def test_normalize_all_maps_payload_names_to_tables() -> None:
    assert TABLE_BY_PAYLOAD == {"holdings": "holdings", "positions": "positions",
                                "margins": "funds", "mf_holdings": "mf_holdings"}
    payloads = {"holdings": MOCK_HOLDINGS, "positions": MOCK_POSITIONS,
                "margins": MOCK_MARGINS, "mf_holdings": MOCK_MF_HOLDINGS,
                "profile": {"user_id": "AB1234"}}  # not a table: ignored
    frames = normalize_all(payloads, ACCOUNT, DAY)
    assert list(frames) == ["holdings", "positions", "funds", "mf_holdings"]
    assert_rows(frames["holdings"], EXPECTED_HOLDINGS, HOLDING_DTYPES)
    assert_rows(frames["positions"], EXPECTED_POSITIONS, POSITION_DTYPES)
    assert_rows(frames["funds"], EXPECTED_FUNDS, FUNDS_DTYPES)
    assert_rows(frames["mf_holdings"], EXPECTED_MF_HOLDINGS, MF_DTYPES)


def test_normalize_all_missing_payloads_give_empty_tables() -> None:
    frames = normalize_all({"margins": MOCK_MARGINS}, ACCOUNT, DAY)
    assert_rows(frames["funds"], EXPECTED_FUNDS, FUNDS_DTYPES)
    assert_rows(frames["holdings"], [], HOLDING_DTYPES)
    assert_rows(frames["positions"], [], POSITION_DTYPES)
    assert_rows(frames["mf_holdings"], [], MF_DTYPES)


@pytest.mark.parametrize("payloads, message", [
    ({"holdings": [{"quantity": "ten"}]}, "holdings: field quantity: not a number: 'ten'"),
    ({"holdings": {}}, "holdings: expected a list of objects, got dict"),
    ({"positions": {"day": 3}}, "positions.day: expected a list of objects, got int"),
    ({"margins": {"equity": {"net": "x"}}}, "margins: field net: not a number: 'x'"),
    ({"mf_holdings": [{"last_price_date": "?"}]},
     "mf_holdings: field last_price_date: not a date: '?'"),
])
def test_normalize_all_names_the_payload_once(payloads: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        normalize_all(payloads, ACCOUNT, DAY)
    assert str(caught.value) == message


# ---------------------------------------------------------------------------------------------
# Purity
# ---------------------------------------------------------------------------------------------

_ODD_HOLDING = {"tradingsymbol": "X", "new": {"deep": [1, {"x": 2}]},
                "mtf": {"quantity": 1, "new_key": {"y": [3]}}, "authorisation": {}}


@pytest.mark.parametrize("normalizer, raw", [
    (normalize_holdings, MOCK_HOLDINGS),
    (normalize_holdings, [_ODD_HOLDING]),
    (normalize_positions, MOCK_POSITIONS),
    (normalize_positions, {"net": [{"position_type": "x", "new": [1]}], "day": []}),
    (normalize_margins, MOCK_MARGINS),
    (normalize_margins, {"equity": {"available": {"new_thing": {"a": 1}}, "new": [2]}}),
    (normalize_mf_holdings, MOCK_MF_HOLDINGS),
])
def test_normalizers_do_not_mutate_their_input(normalizer: Normalizer, raw: Any) -> None:
    before = copy.deepcopy(raw)
    normalizer(raw, ACCOUNT, DAY)
    normalizer(raw, ACCOUNT, DAY)
    assert raw == before


def test_normalize_all_does_not_mutate_its_input() -> None:
    payloads = {"holdings": MOCK_HOLDINGS, "positions": MOCK_POSITIONS,
                "margins": MOCK_MARGINS, "mf_holdings": MOCK_MF_HOLDINGS}
    before = copy.deepcopy(payloads)
    normalize_all(payloads, ACCOUNT, DAY)
    assert payloads == before


def test_extra_does_not_share_objects_with_the_payload() -> None:
    raw = [copy.deepcopy(_ODD_HOLDING)]
    before = copy.deepcopy(raw)
    extra = normalize_holdings(raw, ACCOUNT, DAY)["extra"].iloc[0]
    extra["new"]["deep"].append("changed")
    extra["mtf"]["new_key"]["y"].append("changed")
    extra["authorisation"]["z"] = 1
    assert raw == before


def test_normalizers_are_deterministic() -> None:
    first = normalize_all({"holdings": MOCK_HOLDINGS, "margins": MOCK_MARGINS}, ACCOUNT, DAY)
    second = normalize_all({"holdings": MOCK_HOLDINGS, "margins": MOCK_MARGINS}, ACCOUNT, DAY)
    for table in first:
        pd.testing.assert_frame_equal(first[table], second[table])


def test_public_names_are_kept() -> None:
    for name in ("normalize_route", "normalize_snapshot", "normalize_all", "TABLE_BY_PAYLOAD",
                 "NATURAL_KEYS", "PayloadError"):
        assert hasattr(normalize, name), name
    assert issubclass(PayloadError, ValueError)
