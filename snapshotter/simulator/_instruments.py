"""Internal to the simulator: the instruments its portfolios hold, and Kite's number
conventions (the 0.05 price tick, money to 2 decimals, whole numbers as ints)."""

from __future__ import annotations

# (tradingsymbol, NSE exchange token, BSE scrip code, ISIN, typical price in INR)
# instrument_token is exchange_token * 256 + 1 (NSE) or scrip code * 256 + 4 (BSE),
# as in Kite's instrument dumps (SBIN: 779521 on NSE, 128028676 on BSE).
EQUITIES: tuple[tuple[str, int, int, str, float], ...] = (
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
DERIVATIVES: tuple[tuple[str, str, int, float, int, int], ...] = (
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
FUNDS: tuple[tuple[str, str, float], ...] = (
    ("INF205K01NT8", "INVESCO INDIA TAX PLAN - DIRECT PLAN", 84.86),
    ("INF666M01451", "Indiabulls Liquid Fund - Direct Plan", 2081.4984),
    ("INF761K01884", "BOI AXA TAX ADVANTAGE FUND - DIRECT PLAN", 101.13),
    ("INF879O01027", "PARAG PARIKH FLEXI CAP FUND - DIRECT PLAN", 89.4312),
    ("INF209K01YY7", "Aditya Birla Sun Life Frontline Equity Fund - Direct Plan", 556.39),
    ("INF209K01VY3", "Aditya Birla Sun Life Index Fund - Direct Plan", 241.6988),
    ("INF209K01VA3", "Aditya Birla Sun Life Cash Plus - Direct Plan", 436.5712),
)


def tick(price: float) -> float:
    """Round a price to Kite's 0.05 tick."""
    return round(round(price / 0.05) * 0.05, 2)


def money(value: float) -> float:
    return round(value, 2)


def num(value: float) -> int | float:
    """Kite prints whole numbers as ints (``"average_price": 161``)."""
    return int(value) if float(value).is_integer() else value
