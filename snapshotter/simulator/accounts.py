"""Simulated Kite accounts and Kite Connect apps: credentials and profiles, with a seeded
portfolio each (``demo_accounts``)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

from snapshotter.simulator._tokens import ALNUM
from snapshotter.simulator.portfolios import make_portfolio

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
    """A Kite Connect app (for the ``connect`` login mode). ``market_data``: a paid plan
    with historical data (the Personal plan, the default, gets ``PermissionException``)."""

    api_key: str
    api_secret: str
    redirect_url: str = "http://127.0.0.1/redirect"
    market_data: bool = False


#: the 2FA type ``/api/login`` names for an account -> the types it lists as available.
#: Today an account with an authenticator is offered ``app_code`` (and SMS); ``totp`` is
#: what accounts with Kite's older "external TOTP" setting still get
#: (docs/kite-protocol.md section 1).
TWOFA_TYPES: dict[str, tuple[str, ...]] = {
    "app_code": ("app_code", "sms"),
    "totp": ("totp", "app_code"),
}


@dataclass
class SimAccount:
    """One Zerodha account known to the simulator.

    ``portfolio`` holds exactly the ``data`` of each route: ``holdings`` (list), ``positions``
    (``{"net": [...], "day": [...]}``), ``margins`` (``{"equity": {...}, "commodity": {...}}``)
    and ``mf_holdings`` (list). Tests may mutate it; every answer is a deep copy.
    ``twofa_type``: what ``/api/login`` answers (``TWOFA_TYPES``); the 6-digit code of
    either is the account's TOTP.
    """

    user_id: str
    password: str
    totp_secret: str
    portfolio: dict[str, Any]
    profile: dict[str, Any] = field(default_factory=dict)
    twofa_type: str = "app_code"

    def __post_init__(self) -> None:
        if self.twofa_type not in TWOFA_TYPES:
            raise ValueError(f"twofa_type must be one of {sorted(TWOFA_TYPES)}, "
                             f"got {self.twofa_type!r}")
        self.profile = {**copy.deepcopy(_DEFAULT_PROFILE), **self.profile}
        self.profile["user_id"] = self.user_id
        if not self.profile["user_name"]:
            self.profile["user_name"] = f"Sim User {self.user_id}"
        if not self.profile["user_shortname"]:
            self.profile["user_shortname"] = str(self.profile["user_name"]).split()[0]
        if not self.profile["email"]:
            self.profile["email"] = f"{self.user_id.lower()}@example.com"


_FIRST_NAMES = ("Aarav", "Diya", "Ishaan", "Kavya", "Rohan", "Ananya", "Vikram", "Meera")
_LAST_NAMES = ("Sharma", "Iyer", "Patel", "Reddy", "Gupta", "Nair", "Mehta", "Das")


def demo_accounts(n: int, seed: int = 1) -> list[SimAccount]:
    """``n`` deterministic accounts ``DM0001``.. with passwords, TOTP secrets, portfolios."""
    rng = random.Random(seed)
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    accounts = []
    for i in range(1, n + 1):
        user_id = f"DM{i:04d}"
        password = "".join(rng.choice(ALNUM) for _ in range(12))
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


def demo_apps(accounts: list[SimAccount], *, market_data: bool = False) -> dict[str, SimApp]:
    """A Kite Connect app per account (as each Zerodha user creates their own Personal
    app), deterministic from the user id: ``{user_id: app}``."""
    apps = {}
    for acc in accounts:
        rng = random.Random(f"app-{acc.user_id}")
        api_key = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))
        api_secret = "".join(rng.choice(ALNUM) for _ in range(32))
        apps[acc.user_id] = SimApp(api_key, api_secret, market_data=market_data)
    return apps
