"""The Kite simulator, exercised over real sockets with ``requests``."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests

from snapshotter.routes import ROUTES
from snapshotter.simulator import (
    FAULT_KINDS,
    KiteSimulator,
    SimAccount,
    SimApp,
    demo_accounts,
    make_portfolio,
)
from tests.conftest import HANG_GUARD

T0 = datetime(2025, 1, 17, 11, 0, 5, tzinfo=UTC)
APP = SimApp("kitefront_key", "s3cret_app", redirect_url="http://127.0.0.1/cb?x=1")
# every route of the product's route table: web path -> the part of the portfolio
DATA_ROUTES = {route.web_path: route.name for route in ROUTES}
API_ROUTES = {route.connect_path: route.name for route in ROUTES}
# every field of a holding in zerodha/kiteconnect-mocks holdings.json
HOLDING_FIELDS = {
    "tradingsymbol",
    "exchange",
    "instrument_token",
    "isin",
    "product",
    "price",
    "quantity",
    "used_quantity",
    "t1_quantity",
    "realised_quantity",
    "authorised_quantity",
    "authorised_date",
    "authorisation",
    "opening_quantity",
    "short_quantity",
    "collateral_quantity",
    "collateral_type",
    "discrepancy",
    "average_price",
    "last_price",
    "close_price",
    "pnl",
    "day_change",
    "day_change_percentage",
    "mtf",
}


class Clock:
    """A settable clock: TOTP codes depend on it, so tests control the 30 s steps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def accounts() -> list[SimAccount]:
    return demo_accounts(3, seed=7)


@pytest.fixture
def sim(accounts: list[SimAccount], clock: Clock) -> Iterator[KiteSimulator]:
    with KiteSimulator(accounts, apps=[APP], clock=clock) as s:
        yield s


def code(acc: SimAccount, clock: Clock, offset: int = 0) -> str:
    totp = pyotp.TOTP(acc.totp_secret)
    return totp.generate_otp(totp.timecode(clock()) + offset)


def wrong_code(acc: SimAccount, clock: Clock) -> str:
    valid = {code(acc, clock, o) for o in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def login(
    sim: KiteSimulator, session: requests.Session, acc: SimAccount, password: str | None = None
) -> requests.Response:
    return session.post(
        f"{sim.base_url}/api/login",
        data={"user_id": acc.user_id, "password": acc.password if password is None else password},
    )


def twofa(
    sim: KiteSimulator, session: requests.Session, acc: SimAccount, request_id: str, value: str
) -> requests.Response:
    """The 2FA step, echoing the type the login answer named (``acc.twofa_type``)."""
    return session.post(
        f"{sim.base_url}/api/twofa",
        data={
            "user_id": acc.user_id,
            "request_id": request_id,
            "twofa_value": value,
            "twofa_type": acc.twofa_type,
        },
    )


def web_login(
    sim: KiteSimulator, acc: SimAccount, clock: Clock, session: requests.Session | None = None
) -> tuple[requests.Session, str]:
    s = session or requests.Session()
    r = login(sim, s, acc)
    assert r.status_code == 200, r.text
    r = twofa(sim, s, acc, r.json()["data"]["request_id"], code(acc, clock))
    assert r.status_code == 200, r.text
    clock.advance(30)  # the next login needs a fresh TOTP step
    return s, s.cookies["enctoken"]


def assert_kite_error(r: requests.Response, status: int, error_type: str, message: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "error"
    assert body["error_type"] == error_type
    assert body["message"] == message


def oms(sim: KiteSimulator, path: str, enctoken: str) -> requests.Response:
    return requests.get(sim.base_url + path, headers={"Authorization": f"enctoken {enctoken}"})


# -- web login ------------------------------------------------------------------------------


def test_web_login_and_every_data_route(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[0]
    s = requests.Session()
    r = login(sim, s, acc)
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["user_id"] == acc.user_id
    assert data["twofa_type"] == "app_code"
    assert data["twofa_types"] == ["app_code", "sms"]
    assert data["profile"]["user_name"] == acc.profile["user_name"]
    assert "kf_session" in s.cookies
    assert "HttpOnly" in r.headers["Set-Cookie"]

    r = twofa(sim, s, acc, data["request_id"], code(acc, clock))
    assert r.status_code == 200
    assert r.json() == {"status": "success", "data": {"profile": {}}}
    enctoken = s.cookies["enctoken"]
    assert len(enctoken) >= 40
    assert s.cookies["user_id"] == acc.user_id
    assert s.cookies["public_token"]
    assert sim.login_count[acc.user_id] == 1
    assert sim.twofa_count[acc.user_id] == 1

    for path, part in DATA_ROUTES.items():
        r = oms(sim, path, enctoken)
        assert r.status_code == 200, path
        assert r.json() == {"status": "success", "data": acc.portfolio[part]}
    profile = oms(sim, "/oms/user/profile", enctoken).json()["data"]
    assert profile["user_id"] == acc.user_id
    for path in ("/oms/orders", "/oms/trades"):
        assert oms(sim, path, enctoken).json()["data"] == []
    assert (
        oms(sim, "/oms/user/margins/equity", enctoken).json()["data"]
        == acc.portfolio["margins"]["equity"]
    )
    assert ("GET", "/oms/portfolio/holdings", acc.user_id) in sim.requests_log
    assert ("POST", "/api/login", acc.user_id) in sim.requests_log


def test_answers_are_copies_of_the_live_portfolio(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[1]
    _, enctoken = web_login(sim, acc, clock)
    sim.portfolio(acc.user_id)["holdings"] = [{"tradingsymbol": "SBIN", "quantity": 1}]
    r = oms(sim, "/oms/portfolio/holdings", enctoken)
    assert r.json()["data"] == [{"tradingsymbol": "SBIN", "quantity": 1}]


def test_unknown_user_and_wrong_password(sim: KiteSimulator, accounts: list[SimAccount]) -> None:
    s = requests.Session()
    r = s.post(f"{sim.base_url}/api/login", data={"user_id": "ZZ9999", "password": "x"})
    assert_kite_error(r, 400, "InputException", "Invalid `user_id`.")
    r = login(sim, s, accounts[0], password="wrong")
    assert_kite_error(r, 403, "UserException", "Invalid `password`.")
    assert sim.login_count[accounts[0].user_id] == 0
    assert "kf_session" not in s.cookies


def test_wrong_totp_is_rejected(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[0]
    s = requests.Session()
    request_id = login(sim, s, acc).json()["data"]["request_id"]
    r = twofa(sim, s, acc, request_id, wrong_code(acc, clock))
    assert_kite_error(r, 403, "TwoFAException", "Invalid TOTP")
    assert "enctoken" not in s.cookies
    assert sim.twofa_failures[acc.user_id] == 1
    # The same login attempt may go on with the right code.
    assert twofa(sim, s, acc, request_id, code(acc, clock)).status_code == 200
    assert sim.twofa_failures.get(acc.user_id, 0) == 0


def test_totp_within_one_step_window_is_accepted(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[0]
    s = requests.Session()
    request_id = login(sim, s, acc).json()["data"]["request_id"]
    assert twofa(sim, s, acc, request_id, code(acc, clock, -1)).status_code == 200


def test_totp_replay_is_rejected(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[0]
    used = code(acc, clock)
    s1 = requests.Session()
    assert twofa(sim, s1, acc, login(sim, s1, acc).json()["data"]["request_id"], used).ok
    clock.advance(10)  # same 30 s step (still within the window in any case)
    s2 = requests.Session()
    r = twofa(sim, s2, acc, login(sim, s2, acc).json()["data"]["request_id"], used)
    assert_kite_error(r, 403, "TwoFAException", "Invalid TOTP")
    assert sim.twofa_failures[acc.user_id] == 1
    clock.advance(30)
    r = twofa(sim, s2, acc, login(sim, s2, acc).json()["data"]["request_id"], code(acc, clock))
    assert r.status_code == 200


def test_twofa_needs_the_login_cookie_and_request_id(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[0]
    s = requests.Session()
    request_id = login(sim, s, acc).json()["data"]["request_id"]
    msg = "The login session has expired or doesn't exist. Please try again."
    r = twofa(sim, requests.Session(), acc, request_id, code(acc, clock))
    assert_kite_error(r, 403, "TokenException", msg)
    r = twofa(sim, s, acc, "not-the-request-id", code(acc, clock))
    assert_kite_error(r, 403, "TokenException", msg)
    for hard_coded in ("totp", "sms"):
        r = s.post(
            f"{sim.base_url}/api/twofa",
            data={
                "user_id": acc.user_id,
                "request_id": request_id,
                "twofa_value": code(acc, clock),
                "twofa_type": hard_coded,
            },
        )
        assert_kite_error(r, 400, "InputException", "The requested 2FA type is not available")
    assert sim.twofa_count[acc.user_id] == 0
    assert sim.twofa_failures.get(acc.user_id, 0) == 0  # the code was never looked at


def test_an_older_totp_account_is_offered_totp(clock: Clock) -> None:
    """Accounts set up with Kite's older "external TOTP" are offered ``totp`` (and the
    app code); a client that sends no type gets the one offered."""
    [acc] = demo_accounts(1, seed=3)
    old = SimAccount(acc.user_id, acc.password, acc.totp_secret, acc.portfolio,
                     twofa_type="totp")
    with KiteSimulator([old], clock=clock) as sim:
        s = requests.Session()
        data = login(sim, s, old).json()["data"]
        assert (data["twofa_type"], data["twofa_types"]) == ("totp", ["totp", "app_code"])
        assert twofa(sim, s, old, data["request_id"], code(old, clock)).status_code == 200
        clock.advance(30)
        s = requests.Session()
        request_id = login(sim, s, old).json()["data"]["request_id"]
        r = s.post(f"{sim.base_url}/api/twofa", data={
            "user_id": old.user_id, "request_id": request_id,
            "twofa_value": code(old, clock)})
        assert r.status_code == 200, r.text
    with pytest.raises(ValueError, match="twofa_type"):
        SimAccount("XX0001", "pw", acc.totp_secret, {}, twofa_type="sms")


def test_the_date_header_comes_from_the_simulators_clock(
    sim: KiteSimulator, clock: Clock
) -> None:
    """Kite's answers carry its servers' time; clients compare their clock with it."""
    r = requests.post(f"{sim.base_url}/api/login", data={"user_id": "x", "password": "y"})
    assert r.headers["Date"] == "Fri, 17 Jan 2025 11:00:05 GMT"  # T0
    clock.advance(3600.4)
    r = requests.get(f"{sim.base_url}/oms/user/profile")
    assert r.headers["Date"] == "Fri, 17 Jan 2025 12:00:05 GMT"


def test_the_userid_header_is_recorded(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[0]
    s = requests.Session()
    s.headers["X-Kite-Userid"] = acc.user_id
    twofa(sim, s, acc, login(sim, s, acc).json()["data"]["request_id"], code(acc, clock))
    assert [(m, p, h.get("x-kite-userid")) for m, p, h in sim.request_headers] == [
        ("POST", "/api/login", acc.user_id), ("POST", "/api/twofa", acc.user_id)]


def test_account_blocked_after_five_failures(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[2]
    s = requests.Session()
    request_id = login(sim, s, acc).json()["data"]["request_id"]
    for _ in range(4):
        r = twofa(sim, s, acc, request_id, wrong_code(acc, clock))
        assert_kite_error(r, 403, "TwoFAException", "Invalid TOTP")
    assert not sim.is_blocked(acc.user_id)
    r = twofa(sim, s, acc, request_id, wrong_code(acc, clock))
    assert_kite_error(r, 403, "TwoFAException", "Invalid TOTP")
    assert sim.is_blocked(acc.user_id)

    r = login(sim, requests.Session(), acc)
    assert r.status_code == 403
    assert r.json()["error_type"] == "UserException"
    assert r.json()["message"].startswith("Your account is blocked")
    # Other accounts are unaffected; a password reset (unblock) lets the account back in.
    web_login(sim, accounts[0], clock)
    sim.unblock(acc.user_id)
    web_login(sim, acc, clock)


def test_expired_and_invalid_tokens(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    a, b = accounts[0], accounts[1]
    _, tok_a = web_login(sim, a, clock)
    _, tok_b = web_login(sim, b, clock)
    sim.expire_tokens(a.user_id)
    r = oms(sim, "/oms/portfolio/holdings", tok_a)
    assert_kite_error(r, 403, "TokenException", "Invalid session")
    assert ("GET", "/oms/portfolio/holdings", a.user_id) in sim.requests_log
    assert oms(sim, "/oms/portfolio/holdings", tok_b).status_code == 200
    sim.expire_tokens()
    assert oms(sim, "/oms/portfolio/holdings", tok_b).status_code == 403
    assert requests.get(sim.base_url + "/oms/user/profile").status_code == 403
    r = requests.get(sim.base_url + "/oms/user/profile", headers={"Authorization": "token a:b"})
    assert_kite_error(r, 403, "TokenException", "Invalid session")


def test_new_web_login_ends_previous_session(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[0]
    _, first = web_login(sim, acc, clock)
    _, second = web_login(sim, acc, clock)
    assert first != second
    assert oms(sim, "/oms/user/profile", first).status_code == 403
    assert oms(sim, "/oms/user/profile", second).status_code == 200
    assert sim.login_count[acc.user_id] == 2


def test_unknown_route_and_wrong_method(sim: KiteSimulator) -> None:
    r = requests.get(sim.base_url + "/oms/nope")
    assert_kite_error(r, 404, "GeneralException", "Route not found")
    r = requests.get(sim.base_url + "/api/login")
    assert r.status_code == 405
    assert r.json()["status"] == "error"


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [
        ("500", 500, "GeneralException"),
        ("502", 502, "NetworkException"),
        ("503", 503, "NetworkException"),
        ("504", 504, "NetworkException"),
        ("429", 429, "NetworkException"),
    ],
)
def test_envelope_faults(
    sim: KiteSimulator,
    accounts: list[SimAccount],
    clock: Clock,
    kind: str,
    status: int,
    error_type: str,
) -> None:
    _, tok = web_login(sim, accounts[0], clock)
    sim.fail_next(2, kind, "/oms/portfolio")
    # Other paths are unaffected, and faults come before auth checks.
    assert oms(sim, "/oms/user/profile", tok).status_code == 200
    for _ in range(2):
        r = oms(sim, "/oms/portfolio/holdings", "bogus")
        assert r.status_code == status
        body = r.json()
        assert body["status"] == "error"
        assert body["error_type"] == error_type
        assert body["message"]
    assert oms(sim, "/oms/portfolio/holdings", tok).status_code == 200
    if kind == "429":
        assert r.json()["message"] == "Too many requests"


def test_html_fault(sim: KiteSimulator) -> None:
    sim.fail_next(1, "html")
    r = requests.post(sim.base_url + "/api/login", data={"user_id": "x", "password": "y"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.text == "<html><body>Bad gateway</body></html>"


def test_no_error_type_fault(sim: KiteSimulator) -> None:
    sim.fail_next(1, "no_error_type")
    r = requests.get(sim.base_url + "/oms/portfolio/holdings")
    assert r.status_code == 500
    body = r.json()
    assert body["status"] == "error"
    assert body["message"]
    assert "error_type" not in body


def test_garbage_fault(sim: KiteSimulator) -> None:
    sim.fail_next(1, "garbage")
    r = requests.get(sim.base_url + "/oms/portfolio/holdings")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)


def test_slow_fault_times_out_then_answers_normally(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    _, tok = web_login(sim, accounts[0], clock)
    headers = {"Authorization": f"enctoken {tok}"}
    sim.fail_next(1, "slow")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(sim.base_url + "/oms/user/profile", headers=headers, timeout=0.5)
    sim.slow_seconds = 0.3
    sim.fail_next(1, "slow")
    start = time.monotonic()
    r = requests.get(sim.base_url + "/oms/user/profile", headers=headers, timeout=5)
    assert r.status_code == 200
    assert time.monotonic() - start >= 0.3


def test_redirect_fault_points_back_or_elsewhere_for_one_user(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    victim, other = accounts[0], accounts[1]
    sim.fail_next(1, "redirect", "/api/login", user_id=victim.user_id)
    s = requests.Session()
    r = login(sim, s, other)  # another user's login is not affected
    assert r.status_code == 200
    r = s.post(f"{sim.base_url}/api/login?x=1",
               data={"user_id": victim.user_id, "password": victim.password},
               allow_redirects=False)
    assert (r.status_code, r.headers["Location"]) == (307, "/api/login?x=1")
    sim.fail_next(1, "redirect", "/oms/", location="http://127.0.0.1:9/x", status=302)
    r = requests.get(sim.base_url + "/oms/user/profile", allow_redirects=False)
    assert (r.status_code, r.headers["Location"]) == (302, "http://127.0.0.1:9/x")
    with pytest.raises(ValueError):
        sim.fail_next(1, "redirect", status=200)


def test_drip_fault_sends_the_real_answer_byte_by_byte(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    _, tok = web_login(sim, accounts[0], clock)
    expected = oms(sim, "/oms/user/margins", tok).content
    sim.drip_seconds = 0.2
    sim.fail_next(1, "drip", "/oms/user/margins")
    start = time.monotonic()
    with requests.get(
        sim.base_url + "/oms/user/margins",
        headers={"Authorization": f"enctoken {tok}"},
        stream=True,
        timeout=HANG_GUARD,
    ) as r:
        assert r.headers["Content-Length"] == str(len(expected))
        assert r.raw.read(3) == expected[:3]
    assert time.monotonic() - start >= 0.6  # three bytes, each after 0.2 s


@pytest.mark.parametrize("chunked", [False, True])
def test_huge_fault_is_a_valid_envelope_of_the_given_size(
    sim: KiteSimulator, chunked: bool
) -> None:
    sim.huge_mb, sim.huge_chunked = 0.5, chunked
    sim.fail_next(1, "huge", "/oms/portfolio/holdings")
    r = requests.get(sim.base_url + "/oms/portfolio/holdings")
    assert len(r.content) == 2**19
    assert ("Content-Length" in r.headers) is not chunked
    assert r.json()["status"] == "success"


def test_a_dripping_answer_ends_when_the_simulator_stops(accounts: list[SimAccount]) -> None:
    sim = KiteSimulator(accounts).start()
    sim.drip_seconds = 3600  # only the stop can end it (a read timeout is another error)
    sim.fail_next(1, "drip", "/oms/")
    with requests.get(sim.base_url + "/oms/user/profile", stream=True, timeout=60) as r:
        sim.stop()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            next(r.iter_content(10))


def test_fail_next_rejects_unknown_kind(sim: KiteSimulator) -> None:
    with pytest.raises(ValueError):
        sim.fail_next(1, "418")
    assert set(FAULT_KINDS) == {
        "500", "502", "503", "504", "429", "429_as_200", "token", "html", "no_error_type",
        "garbage", "slow", "redirect", "drip", "huge", "hang_up",
    }  # fmt: skip


# -- Kite Connect -----------------------------------------------------------------------------


def checksum(api_key: str, request_token: str, secret: str) -> str:
    return hashlib.sha256((api_key + request_token + secret).encode()).hexdigest()


def connect_request_token(
    sim: KiteSimulator, acc: SimAccount, clock: Clock, app: SimApp = APP
) -> tuple[str, requests.Session]:
    s = requests.Session()
    r = s.get(f"{sim.base_url}/connect/login", params={"v": "3", "api_key": app.api_key}, timeout=5)
    # requests followed the 302 to the login page
    assert r.status_code == 200
    assert r.history and r.history[0].status_code == 302
    assert r.headers["Content-Type"].startswith("text/html")
    sess_id = parse_qs(urlsplit(r.url).query)["sess_id"][0]
    web_login(sim, acc, clock, session=s)
    r = s.get(
        f"{sim.base_url}/connect/finish",
        params={"v": "3", "api_key": app.api_key, "sess_id": sess_id},
        allow_redirects=False,
    )
    assert r.status_code == 302, r.text
    location = r.headers["Location"]
    assert location.startswith(app.redirect_url + "&")
    query = parse_qs(urlsplit(location).query)
    assert query["status"] == ["success"]
    assert query["action"] == ["login"]
    return query["request_token"][0], s


def api(sim: KiteSimulator, path: str, access_token: str, api_key: str = APP.api_key) -> Any:
    return requests.get(
        sim.base_url + path,
        headers={"Authorization": f"token {api_key}:{access_token}", "X-Kite-Version": "3"},
    )


def test_connect_flow_end_to_end(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    acc = accounts[1]
    request_token, _ = connect_request_token(sim, acc, clock)
    url = f"{sim.base_url}/session/token"
    form = {"api_key": APP.api_key, "request_token": request_token}

    r = requests.post(url, data={**form, "checksum": checksum(APP.api_key, request_token, "no")})
    assert_kite_error(r, 403, "TokenException", "Invalid checksum")

    good = {**form, "checksum": checksum(APP.api_key, request_token, APP.api_secret)}
    r = requests.post(url, data=good)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["user_id"] == acc.user_id
    assert data["api_key"] == APP.api_key
    assert data["access_token"] and data["public_token"] and data["enctoken"]
    assert data["login_time"] == "2025-01-17 16:30:35"  # T0 + 30 s, in IST
    assert set(data) >= {"user_type", "email", "user_name", "exchanges", "products", "meta"}

    r = requests.post(url, data=good)  # request_token is single-use
    assert_kite_error(r, 403, "TokenException", "Token is invalid or has expired.")
    unknown = {"api_key": APP.api_key, "request_token": "nope"}
    unknown["checksum"] = checksum(APP.api_key, "nope", APP.api_secret)
    assert_kite_error(
        requests.post(url, data=unknown), 403, "TokenException", "Token is invalid or has expired."
    )

    access_token = data["access_token"]
    for path, part in API_ROUTES.items():
        r = api(sim, path, access_token)
        assert r.status_code == 200, path
        assert r.json()["data"] == acc.portfolio[part]
    assert api(sim, "/user/profile", access_token).json()["data"]["user_id"] == acc.user_id
    assert ("GET", "/portfolio/holdings", acc.user_id) in sim.requests_log

    r = requests.get(
        sim.base_url + "/portfolio/holdings",
        headers={"Authorization": f"token {APP.api_key}:{access_token}"},
    )
    assert_kite_error(r, 400, "InputException", r.json()["message"])
    r = api(sim, "/portfolio/holdings", "wrong")
    assert_kite_error(r, 403, "TokenException", "Incorrect `api_key` or `access_token`.")
    sim.expire_tokens(acc.user_id)
    r = api(sim, "/portfolio/holdings", access_token)
    assert_kite_error(r, 403, "TokenException", "Incorrect `api_key` or `access_token`.")


def test_connect_errors(sim: KiteSimulator, accounts: list[SimAccount], clock: Clock) -> None:
    r = requests.get(f"{sim.base_url}/connect/login", params={"v": "3", "api_key": "nokey"})
    assert_kite_error(r, 400, "InputException", "Invalid `api_key`.")
    r = requests.get(
        f"{sim.base_url}/connect/login",
        params={"v": "3", "api_key": APP.api_key},
        allow_redirects=False,
    )
    assert r.status_code == 302
    assert r.headers["Location"].startswith(f"{sim.base_url}/connect/login?api_key=")
    sess_id = parse_qs(urlsplit(r.headers["Location"]).query)["sess_id"][0]
    # /connect/finish without a logged-in session
    r = requests.get(
        f"{sim.base_url}/connect/finish",
        params={"v": "3", "api_key": APP.api_key, "sess_id": sess_id},
        allow_redirects=False,
    )
    assert r.status_code == 403
    # ... and with one but an unknown sess_id
    s, _ = web_login(sim, accounts[0], clock)
    r = s.get(
        f"{sim.base_url}/connect/finish",
        params={"v": "3", "api_key": APP.api_key, "sess_id": "bogus"},
        allow_redirects=False,
    )
    assert_kite_error(r, 400, "InputException", "Invalid `sess_id`.")


def test_request_token_is_bound_to_its_app(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    other = SimApp("other_key", "other_secret")
    sim.add_app(other)
    request_token, _ = connect_request_token(sim, accounts[0], clock)
    r = requests.post(
        f"{sim.base_url}/session/token",
        data={
            "api_key": other.api_key,
            "request_token": request_token,
            "checksum": checksum(other.api_key, request_token, other.api_secret),
        },
    )
    assert_kite_error(r, 403, "TokenException", "Token is invalid or has expired.")


def test_api_rate_limit(sim: KiteSimulator, accounts: list[SimAccount], clock: Clock) -> None:
    request_token, _ = connect_request_token(sim, accounts[0], clock)
    r = requests.post(
        f"{sim.base_url}/session/token",
        data={
            "api_key": APP.api_key,
            "request_token": request_token,
            "checksum": checksum(APP.api_key, request_token, APP.api_secret),
        },
    )
    access_token = r.json()["data"]["access_token"]
    with requests.Session() as s:
        s.headers.update(
            {"Authorization": f"token {APP.api_key}:{access_token}", "X-Kite-Version": "3"}
        )
        # The limit counts by the simulator's clock, which holds still here: one instant.
        answers = [s.get(sim.base_url + "/portfolio/holdings") for _ in range(14)]
        assert [r.status_code for r in answers[:10]] == [200] * 10
        assert all(r.json()["status"] == "success" for r in answers[:10])
        # Past the limit Kite answers HTTP 429, and now and then HTTP 200 with "Too many
        # requests" as the body (every second refusal here: rate_limited_200_every).
        for r in answers[10::2]:
            assert_kite_error(r, 429, "NetworkException", "Too many requests")
        for r in answers[11::2]:
            assert r.status_code == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            assert r.text == "Too many requests"
        clock.advance(0.99)
        assert s.get(sim.base_url + "/user/margins").status_code == 429
        clock.advance(0.01)  # a second after the first ten
        assert s.get(sim.base_url + "/portfolio/holdings").status_code == 200
        sim.rate_limited_200_every = 0
        statuses = [s.get(sim.base_url + "/user/margins").status_code for _ in range(12)]
        assert statuses == [200] * 9 + [429] * 3
    # web (enctoken) routes are not rate limited
    _, tok = web_login(sim, accounts[1], clock)
    assert all(oms(sim, "/oms/user/profile", tok).ok for _ in range(15))



def test_an_enctoken_is_refused_on_the_kite_connect_routes(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    """Since mid-2024 Kite takes a web session's enctoken on /oms/... only."""
    _, tok = web_login(sim, accounts[0], clock)
    headers = {"Authorization": f"enctoken {tok}", "X-Kite-Version": "3"}
    for path in (*API_ROUTES, "/user/profile", "/instruments/historical/256265/day"):
        r = requests.get(sim.base_url + path, headers=headers,
                         params={"from": "2025-01-01", "to": "2025-01-10"})
        assert_kite_error(r, 400, "InputException", "Bad Request")
    assert oms(sim, "/oms/portfolio/holdings", tok).status_code == 200

# -- latency and concurrency ------------------------------------------------------------------


def test_latency_is_honoured(sim: KiteSimulator) -> None:
    sim.latency = 0.3
    start = time.monotonic()
    r = requests.get(sim.base_url + "/oms/user/profile")
    assert r.status_code == 403
    assert time.monotonic() - start >= 0.3


def test_concurrent_requests_are_served_in_parallel(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    _, tok = web_login(sim, accounts[0], clock)

    def fetch(_: int) -> int:
        return oms(sim, "/oms/portfolio/holdings", tok).status_code

    # Answers are held until all 40 requests are in flight at once.
    sim.hold_answers()
    with ThreadPoolExecutor(max_workers=40) as pool:
        try:
            results = pool.map(fetch, range(40))
            assert sim.wait_in_flight(40, timeout=HANG_GUARD), sim.max_in_flight
        finally:
            sim.release_answers()
        statuses = list(results)
    assert statuses == [200] * 40
    assert sim.max_in_flight == 40


def test_keep_alive_serves_many_requests_on_one_connection(
    sim: KiteSimulator, accounts: list[SimAccount], clock: Clock
) -> None:
    _, tok = web_login(sim, accounts[0], clock)
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        for path in [*DATA_ROUTES, "/oms/nope", *DATA_ROUTES]:
            conn.request("GET", path, headers={"Authorization": f"enctoken {tok}"})
            resp = conn.getresponse()
            body = resp.read()
            assert int(resp.headers["Content-Length"]) == len(body)
            assert resp.status in (200, 404)
            assert not resp.will_close
    finally:
        conn.close()


def test_stop_closes_connections(accounts: list[SimAccount]) -> None:
    sim = KiteSimulator(accounts).start()
    s = requests.Session()
    assert s.get(sim.base_url + "/oms/orders").status_code == 403
    sim.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        s.get(sim.base_url + "/oms/orders", timeout=2)
    sim.stop()  # idempotent


# -- portfolios -------------------------------------------------------------------------------


def test_make_portfolio_is_deterministic_and_consistent() -> None:
    assert make_portfolio(5) == make_portfolio(5)
    assert make_portfolio(5) != make_portfolio(6)
    t1_seen = False
    for seed in range(60):
        p = make_portfolio(seed)
        assert set(p) == {"holdings", "positions", "margins", "mf_holdings"}
        assert 5 <= len(p["holdings"]) <= 12
        for h in p["holdings"]:
            assert set(h) == HOLDING_FIELDS
            assert h["exchange"] in ("NSE", "BSE")
            assert h["pnl"] == (h["last_price"] - h["average_price"]) * h["quantity"]
            assert h["day_change"] == h["last_price"] - h["close_price"]
            assert round(h["last_price"] * 20) == pytest.approx(h["last_price"] * 20)
            assert h["mtf"].keys() == {
                "quantity", "used_quantity", "average_price", "value", "initial_margin",
            }  # fmt: skip
            t1_seen = t1_seen or h["t1_quantity"] > 0
        assert len(p["positions"]["net"]) <= 3
        for row in p["positions"]["net"] + p["positions"]["day"]:
            expected = (row["sell_value"] - row["buy_value"]) + row["quantity"] * row[
                "last_price"
            ] * row["multiplier"]
            assert row["pnl"] == pytest.approx(expected)
            assert row["quantity"] == row["buy_quantity"] - row["sell_quantity"]
        for segment in ("equity", "commodity"):
            m = p["margins"][segment]
            avail, used = m["available"], m["utilised"]
            assert m["net"] == pytest.approx(
                avail["opening_balance"] + avail["intraday_payin"] - used["debits"]
            )
            assert m["net"] >= 0
        assert len(p["mf_holdings"]) <= 3
        for mf in p["mf_holdings"]:
            assert mf["tradingsymbol"].startswith("INF")
            assert isinstance(mf["folio"], str)
    assert t1_seen


def test_demo_accounts_are_deterministic() -> None:
    a, b = demo_accounts(3, seed=2), demo_accounts(3, seed=2)
    assert [x.user_id for x in a] == ["DM0001", "DM0002", "DM0003"]
    assert [(x.password, x.totp_secret, x.portfolio) for x in a] == [
        (x.password, x.totp_secret, x.portfolio) for x in b
    ]
    assert demo_accounts(1, seed=3)[0].totp_secret != a[0].totp_secret
    for acc in a:
        pyotp.TOTP(acc.totp_secret).now()  # a valid base32 secret
        assert acc.profile["user_id"] == acc.user_id
        assert acc.profile["broker"] == "ZERODHA"


# -- command line -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_forever_cli_stops_on_sigterm() -> None:
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "snapshotter", "simulate", "--port", str(port), "--accounts", "1"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == f"Kite simulator listening on http://127.0.0.1:{port}"
        r = requests.post(
            f"http://127.0.0.1:{port}/api/login", data={"user_id": "DM0001", "password": "x"}
        )
        assert r.status_code == 403
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
