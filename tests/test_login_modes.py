"""End to end: auth web, connect and manual, through the `snapshotter` command.

Real sockets against the simulator. TOTP: the simulator rejects a code of a 30 s step it
has already accepted for that user, and the client never reuses a step. So a test that
needs a session made outside the program (to expire it, or to paste a request_token)
logs in as the browser with the *previous* step's code (still inside the verifier's
window); the program's own login then uses the current step, and no test waits 30 s.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
import requests
import sqlalchemy as sa

from snapshotter.kite.auth import connect_token_expiry
from snapshotter.kite.token_cache import TokenCache
from snapshotter.simulator import KiteSimulator, SimAccount, SimApp, demo_accounts
from tests.conftest import HANG_GUARD, config_dict, write_config

API_KEY = "snapapp7kq2m"
API_SECRET = "s3cret-of-the-app-9f8e7d6c5b4a"
WRONG_SECRET = "not-the-app-secret-1a2b3c4d5e"
REDIRECT_URL = "http://127.0.0.1:9/kite/redirect"
API_ROUTES = ("/portfolio/holdings", "/portfolio/positions", "/user/margins", "/mf/holdings")
WEB_ROUTES = tuple(f"/oms{r}" for r in API_ROUTES)


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def sim_accounts() -> list[SimAccount]:
    return demo_accounts(4, seed=7)


@pytest.fixture
def sim(sim_accounts: list[SimAccount]) -> Iterator[KiteSimulator]:
    with KiteSimulator(sim_accounts, apps=[SimApp(API_KEY, API_SECRET, REDIRECT_URL)]) as s:
        yield s


@dataclass
class Hit:
    at: float  # time.monotonic() when the simulator got the request
    method: str
    path: str
    headers: dict[str, str]
    status: int


@pytest.fixture
def traffic(sim: KiteSimulator, monkeypatch: pytest.MonkeyPatch) -> list[Hit]:
    """Every request the simulator answers, with its headers and status."""
    hits: list[Hit] = []
    lock = threading.Lock()
    respond = sim._respond

    def recording(req: Any) -> Any:
        at = time.monotonic()
        resp = respond(req)
        with lock:
            hits.append(Hit(at, req.method, req.path, dict(req.headers), resp.status))
        return resp

    monkeypatch.setattr(sim, "_respond", recording)
    return hits


class _HealthHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.pings.append((self.path, body.decode("utf-8", "replace")))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A healthchecks.io stand-in: (ping URL, [(path, body), ...])."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    server.pings = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ping/job-1", \
            server.pings  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def cli(*args: str, input: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real `snapshotter` command; ``input`` is fed on stdin (a pipe, not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "snapshotter", *args], capture_output=True, text=True,
        timeout=timeout, input=input if input is not None else "",
        env={k: v for k, v in os.environ.items() if not k.startswith("SNAPSHOTTER_")})


def web(acc: SimAccount) -> dict[str, Any]:
    return {"user_id": acc.user_id, "auth": "web", "password": acc.password,
            "totp_secret": acc.totp_secret}


def connect(acc: SimAccount, api_secret: str = API_SECRET) -> dict[str, Any]:
    return {**web(acc), "auth": "connect", "api_key": API_KEY, "api_secret": api_secret}


def manual(acc: SimAccount, *, app: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"user_id": acc.user_id, "auth": "manual"}
    if app:
        entry.update(api_key=API_KEY, api_secret=API_SECRET)
    return entry


def make_config(sim: KiteSimulator, tmp_path: Path, accounts: list[dict[str, Any]],
                database_url: str | None = None, **extra: Any) -> Path:
    data = config_dict(sim, [], database_url or f"sqlite:///{tmp_path / 'snapshots.db'}",
                       tmp_path / "state", **extra)
    data["accounts"] = accounts
    return write_config(tmp_path / "config.yaml", data)


def browser_login(sim: KiteSimulator, acc: SimAccount, session: requests.Session,
                  step_offset: int = -1) -> str:
    """A person's web login; by default with the previous step's (still valid) code."""
    r = session.post(f"{sim.base_url}/api/login",
                     data={"user_id": acc.user_id, "password": acc.password})
    assert r.status_code == 200, r.text
    totp = pyotp.TOTP(acc.totp_secret)
    code = totp.generate_otp(totp.timecode(datetime.now(UTC)) + step_offset)
    r = session.post(f"{sim.base_url}/api/twofa", data={
        "user_id": acc.user_id, "request_id": r.json()["data"]["request_id"],
        "twofa_value": code, "twofa_type": r.json()["data"]["twofa_type"]})
    assert r.status_code == 200, r.text
    return session.cookies["enctoken"]


def browser_connect(sim: KiteSimulator, acc: SimAccount, step_offset: int = -1) -> str:
    """A person going through the Kite Connect login; returns the redirected-to URL."""
    s = requests.Session()
    r = s.get(f"{sim.base_url}/connect/login", params={"v": "3", "api_key": API_KEY},
              allow_redirects=False)
    assert r.status_code == 302, r.text
    sess_id = parse_qs(urlparse(r.headers["Location"]).query)["sess_id"][0]
    browser_login(sim, acc, s, step_offset)
    r = s.get(f"{sim.base_url}/connect/finish",
              params={"v": "3", "api_key": API_KEY, "sess_id": sess_id}, allow_redirects=False)
    assert r.status_code == 302, r.text
    location = r.headers["Location"]
    assert location.startswith(REDIRECT_URL + "?")
    return location


def request_token_of(location: str) -> str:
    return parse_qs(urlparse(location).query)["request_token"][0]


def connect_access_token(sim: KiteSimulator, acc: SimAccount) -> str:
    """What an app's backend does with a request_token (outside the program)."""
    request_token = request_token_of(browser_connect(sim, acc))
    checksum = hashlib.sha256((API_KEY + request_token + API_SECRET).encode()).hexdigest()
    r = requests.post(f"{sim.base_url}/session/token", data={
        "api_key": API_KEY, "request_token": request_token, "checksum": checksum})
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["access_token"])


def seed_session(tmp_path: Path, user: str, mode: str, token: str) -> None:
    expires = connect_token_expiry(datetime.now(UTC)).isoformat() if mode == "connect" else None
    TokenCache(tmp_path / "state").update(user, mode=mode, token=token,
                                          created_at=datetime.now(UTC).isoformat(),
                                          expires_at=expires)


def cached(tmp_path: Path, user: str) -> Any:
    return TokenCache(tmp_path / "state").load(user)


def rows(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


def requests_of(sim: KiteSimulator, user: str, path: str | None = None,
                method: str | None = None) -> list[tuple[str, str, str | None]]:
    return [e for e in list(sim.requests_log)
            if e[2] == user and (path is None or e[1] == path)
            and (method is None or e[0] == method)]


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_no_secrets(outputs: list[subprocess.CompletedProcess[str]],
                      accounts: list[SimAccount], *tokens: str | None) -> None:
    """No password, TOTP secret, api_secret or token in what the commands printed."""
    text = "".join(r.stdout + r.stderr for r in outputs)
    assert "Traceback" not in text
    secrets = [s for a in accounts for s in (a.password, a.totp_secret)]
    for secret in [*secrets, API_SECRET, *tokens]:
        assert secret and secret not in text


def next_six_ist(now: datetime) -> datetime:
    ist = now.astimezone(connect_token_expiry(now).tzinfo)
    six = ist.replace(hour=6, minute=0, second=0, microsecond=0)
    return six if ist < six else six + timedelta(days=1)


# -- one config, all three modes -----------------------------------------------------------------


def test_one_config_mixes_web_connect_and_manual(
        sim: KiteSimulator, sim_accounts: list[SimAccount], traffic: list[Hit],
        database_url: str, tmp_path: Path) -> None:
    w, c, mw, mc = sim_accounts
    cfg = str(make_config(sim, tmp_path, [web(w), connect(c), manual(mw), manual(mc, app=True)],
                          database_url))

    # A person logs the manual accounts in: the web one types password and the current
    # code; the Kite Connect one opens the printed URL and pastes where it landed.
    landed = browser_connect(sim, mc, step_offset=0)
    code = pyotp.TOTP(mw.totp_secret).now()
    login = cli("--config", cfg, "login", "--account", mw.user_id, "--account", mc.user_id,
                input=f"{mw.password}\n{code}\n{landed}\n")
    assert login.returncode == 0, login.stderr
    assert f"{mw.user_id}: logged in; session cached until Kite ends it" in login.stdout
    expiry = f"{next_six_ist(datetime.now(UTC)):%Y-%m-%d} 06:00 IST"
    assert f"{mc.user_id}: logged in; session cached until {expiry}" in login.stdout
    assert f"{sim.base_url}/connect/login?v=3&api_key={API_KEY}" in login.stderr
    assert "password" in login.stderr.lower() and "authenticator" in login.stderr
    assert sim.login_count[mw.user_id] == 1 and sim.twofa_count[mw.user_id] == 1
    assert cached(tmp_path, mw.user_id).mode == "web"
    assert cached(tmp_path, mc.user_id).mode == "connect"

    first = cli("--config", cfg, "run")
    assert first.returncode == 0, first.stderr
    ledger = rows(database_url, "SELECT account, status FROM snapshots")
    assert sorted((r["account"], r["status"]) for r in ledger) == sorted(
        (a.user_id, "ok") for a in sim_accounts)
    for acc in sim_accounts:
        assert f"{acc.user_id} " in first.stdout
        n = rows(database_url, "SELECT COUNT(*) AS n FROM holdings WHERE account = :a",
                 a=acc.user_id)[0]["n"]
        assert n == len(acc.portfolio["holdings"]) > 0
        mf = rows(database_url, "SELECT COUNT(*) AS n FROM mf_holdings WHERE account = :a",
                  a=acc.user_id)[0]["n"]
        assert mf == len(acc.portfolio["mf_holdings"])
    # The job logged in the two automated accounts, and never the manual ones.
    assert {u: sim.login_count[u] for u in (w.user_id, c.user_id, mw.user_id)} == {
        w.user_id: 1, c.user_id: 1, mw.user_id: 1}
    assert sim.login_count[mc.user_id] == 1  # the browser's

    # Web accounts read /oms with the enctoken; Kite Connect ones the API root with
    # `token api_key:access_token` and X-Kite-Version: 3.
    for acc, prefix in ((w, "/oms"), (mw, "/oms"), (c, ""), (mc, "")):
        for route in API_ROUTES:
            assert requests_of(sim, acc.user_id, prefix + route, "GET"), (acc.user_id, route)
        other = "" if prefix else "/oms"
        assert not any(requests_of(sim, acc.user_id, other + r) for r in API_ROUTES)
    for acc in (c, mc):
        token = cached(tmp_path, acc.user_id).token
        api_hits = [h for h in traffic if h.path in API_ROUTES
                    and h.headers.get("authorization", "").endswith(f":{token}")]
        assert len(api_hits) == len(API_ROUTES)
        for h in api_hits:
            assert h.headers["authorization"] == f"token {API_KEY}:{token}"
            assert h.headers["x-kite-version"] == "3"
            assert h.status == 200
    for acc in (w, mw):
        token = cached(tmp_path, acc.user_id).token
        web_hits = [h for h in traffic if h.path in WEB_ROUTES
                    and h.headers.get("authorization") == f"enctoken {token}"]
        assert len(web_hits) == len(WEB_ROUTES)
    assert all(h.status < 400 for h in traffic)  # 302s of the Kite Connect login

    # Next run (forced, so nothing is skipped): every mode reuses its cached session.
    logins, twofas = dict(sim.login_count), dict(sim.twofa_count)
    exchanges = len([e for e in sim.requests_log if e[1] == "/session/token"])
    seen = len(sim.requests_log)
    second = cli("--config", cfg, "run", "--force")
    assert second.returncode == 0, second.stderr
    assert dict(sim.login_count) == logins and dict(sim.twofa_count) == twofas
    assert len([e for e in sim.requests_log if e[1] == "/session/token"]) == exchanges
    assert not [e for e in sim.requests_log[seen:]
                if e[1].startswith(("/api/", "/connect/", "/session/"))]
    ok = rows(database_url, "SELECT account FROM snapshots WHERE status = 'ok'")
    assert sorted(r["account"] for r in ok) == sorted(a.user_id for a in sim_accounts)

    tokens = [cached(tmp_path, a.user_id).token for a in sim_accounts]
    assert all(tokens)
    assert_no_secrets([login, first, second], sim_accounts, *tokens)


# -- auth: connect -------------------------------------------------------------------------------


def test_connect_wrong_api_secret_is_rejected_once_and_remembered(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    bad, good = sim_accounts[0], sim_accounts[1]
    cfg = str(make_config(sim, tmp_path, [connect(bad, WRONG_SECRET), connect(good)]))
    result = cli("--config", cfg, "run")
    assert result.returncode == 78, result.stderr
    lines = errors(result)
    assert len(lines) == 1, result.stderr
    assert bad.user_id in lines[0] and "api_secret" in lines[0]
    assert "Invalid checksum" in lines[0] and "totp_secret" not in lines[0]
    assert len(requests_of(sim, bad.user_id, "/session/token", "POST")) == 1  # no retry
    assert sim.login_count[bad.user_id] == 1
    assert f"{good.user_id} " in result.stdout
    ledger = {r["account"]: r for r in rows(f"sqlite:///{tmp_path / 'snapshots.db'}",
                                            "SELECT account, status, error FROM snapshots")}
    assert ledger[bad.user_id]["status"] == "failed"
    assert "api_secret" in ledger[bad.user_id]["error"]
    assert ledger[good.user_id]["status"] == "ok"

    # The next scheduled run does not send the rejected credentials to Kite again.
    seen = len(sim.requests_log)
    again = cli("--config", cfg, "run", "--account", bad.user_id)
    assert again.returncode == 78, again.stderr
    assert len(errors(again)) == 1 and "not trying again" in again.stderr, again.stderr
    assert bad.user_id in errors(again)[0] and "api_secret" in errors(again)[0]
    assert len(sim.requests_log) == seen  # Kite not contacted at all
    assert_no_secrets([result, again], sim_accounts, WRONG_SECRET)


def test_connect_wrong_api_key_is_remembered_until_the_config_changes(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    acc = sim_accounts[0]
    cfg = str(make_config(sim, tmp_path, [{**connect(acc), "api_key": "no-such-app"}]))
    first = cli("--config", cfg, "run")
    assert first.returncode == 78, first.stderr
    assert acc.user_id in errors(first)[0] and "api_key" in errors(first)[0]
    assert sim.login_count[acc.user_id] == 0  # refused before the password was sent
    seen = len(sim.requests_log)
    assert cli("--config", cfg, "run").returncode == 78
    assert len(sim.requests_log) == seen

    make_config(sim, tmp_path, [connect(acc)])  # the user fixes api_key
    fixed = cli("--config", cfg, "run")
    assert fixed.returncode == 0, fixed.stderr
    assert sim.login_count[acc.user_id] == 1
    assert cached(tmp_path, acc.user_id).mode == "connect"
    assert_no_secrets([first, fixed], sim_accounts, cached(tmp_path, acc.user_id).token)


@pytest.mark.parametrize("how", ["expire_tokens", "fail_next_token"])
def test_expired_session_logs_in_again_exactly_once(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path, how: str) -> None:
    w, c = sim_accounts[0], sim_accounts[1]
    cfg = str(make_config(sim, tmp_path, [web(w), connect(c)]))
    # Sessions from an earlier login that Kite then ends (as after a login elsewhere, or
    # after 06:00 IST); the earlier login used the previous TOTP step.
    enctoken = browser_login(sim, w, requests.Session())
    access = connect_access_token(sim, c)
    seed_session(tmp_path, w.user_id, "web", enctoken)
    seed_session(tmp_path, c.user_id, "connect", access)
    if how == "expire_tokens":
        sim.expire_tokens()
    else:
        sim.fail_next(1, "token", "/oms/portfolio/holdings")
        sim.fail_next(1, "token", "/portfolio/holdings")
    logins, twofas = dict(sim.login_count), dict(sim.twofa_count)
    exchanges = len(requests_of(sim, c.user_id, "/session/token"))

    result = cli("--config", cfg, "run")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("session expired, logging in again") == 2
    for acc in (w, c):
        assert sim.login_count[acc.user_id] == logins[acc.user_id] + 1
        assert sim.twofa_count[acc.user_id] == twofas[acc.user_id] + 1
    assert len(requests_of(sim, c.user_id, "/session/token")) == exchanges + 1
    assert cached(tmp_path, w.user_id).token not in (None, enctoken)
    entry = cached(tmp_path, c.user_id)
    assert entry.token not in (None, access) and entry.mode == "connect"
    assert datetime.fromisoformat(entry.expires_at) == next_six_ist(datetime.now(UTC))
    ok = rows(f"sqlite:///{tmp_path / 'snapshots.db'}",
              "SELECT account FROM snapshots WHERE status = 'ok'")
    assert sorted(r["account"] for r in ok) == [w.user_id, c.user_id]
    assert_no_secrets([result], sim_accounts, enctoken, access,
                      cached(tmp_path, w.user_id).token, entry.token)


def test_connect_rate_limit_holds_with_many_accounts_on_one_app(
        sim: KiteSimulator, sim_accounts: list[SimAccount], traffic: list[Hit],
        tmp_path: Path) -> None:
    # Sessions exist already, so the run fires only data calls: 16 at once without a limiter.
    for acc in sim_accounts:
        seed_session(tmp_path, acc.user_id, "connect", connect_access_token(sim, acc))
    traffic.clear()
    logins = dict(sim.login_count)
    cfg = str(make_config(sim, tmp_path, [connect(a) for a in sim_accounts],
                          kite={"base_url": sim.base_url, "api_root": sim.base_url,
                                "retries": 0, "backoff": 0.01, "timeout": 30}))
    # Kite counts a request when it arrives: the first ten arrive late (as on a busy
    # machine or network), so a client that spaced only its sending would see the
    # eleventh land in the same second as them.
    sim.slow_seconds = 0.7
    sim.fail_next(10, "slow", "/")
    result = cli("--config", cfg, "run")
    assert result.returncode == 0, result.stderr  # retries: 0, so a 429 would have failed
    api = sorted(h.at for h in traffic if h.path in API_ROUTES)
    assert len(api) == len(API_ROUTES) * len(sim_accounts) > 10
    assert all(h.status < 400 for h in traffic)  # 302s of the Kite Connect login
    busiest = max(sum(1 for t in api[i:] if t - start < 1.0) for i, start in enumerate(api))
    assert busiest <= 10
    assert dict(sim.login_count) == logins  # the cached sessions were used


# -- auth: manual --------------------------------------------------------------------------------


def test_manual_without_a_valid_session_fails_clearly_and_pings_health(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        health: tuple[str, list[tuple[str, str]]]) -> None:
    missing, expired, auto, stale = sim_accounts
    url, pings = health
    cfg = str(make_config(sim, tmp_path, [manual(missing), manual(expired), web(auto),
                                          manual(stale, app=True)], healthcheck_url=url))
    # `expired` logged in earlier; Kite has since ended that session.
    enctoken = browser_login(sim, expired, requests.Session())
    seed_session(tmp_path, expired.user_id, "web", enctoken)
    sim.expire_tokens(expired.user_id)
    # `stale` has a Kite Connect token past its 06:00 IST expiry.
    TokenCache(tmp_path / "state").update(
        stale.user_id, mode="connect", token="Zq8" * 11,
        expires_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    manual_users = (missing, expired, stale)

    check = cli("--config", cfg, "login", "--check")
    assert check.returncode == 1
    assert f"run `snapshotter login --account {missing.user_id}`" in check.stderr
    assert f"run `snapshotter login --account {expired.user_id}`" in check.stderr
    assert f"run `snapshotter login --account {stale.user_id}`" in check.stderr
    assert len(errors(check)) == 3
    assert [p for p, _ in pings] == ["/ping/job-1/fail"]
    assert all(a.user_id in pings[0][1] for a in manual_users)
    assert auto.user_id not in check.stdout + check.stderr  # only manual accounts are checked

    run = cli("--config", cfg, "run")
    assert run.returncode == 78, run.stderr
    lines = errors(run)
    assert len(lines) == 3, run.stderr
    by_account = {next(a.user_id for a in manual_users if a.user_id in line): line
                  for line in lines}
    assert f"run `snapshotter login --account {missing.user_id}`" in by_account[missing.user_id]
    for acc in (expired, stale):
        assert "log in again" in by_account[acc.user_id]
        assert f"`snapshotter login --account {acc.user_id}`" in by_account[acc.user_id]
    assert " IST: log in again" in by_account[stale.user_id]
    assert f"{auto.user_id} " in run.stdout  # the other account is snapshotted
    # Never a login attempt for a manual account (the only /api/login is the browser's).
    for acc in manual_users:
        assert not requests_of(sim, acc.user_id, "/api/twofa")[1:]
        assert len(requests_of(sim, acc.user_id, "/api/login")) == (acc is expired)
    assert not [e for e in sim.requests_log if e[1].startswith(("/connect/", "/session/"))]
    assert [p for p, _ in pings] == ["/ping/job-1/fail"] * 2
    assert missing.user_id in pings[1][1]
    assert_no_secrets([check, run], sim_accounts, enctoken)


def test_manual_connect_login_from_pasted_url_or_bare_request_token(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        health: tuple[str, list[tuple[str, str]]]) -> None:
    first, second = sim_accounts[0], sim_accounts[1]
    url, pings = health
    cfg = str(make_config(sim, tmp_path, [manual(first, app=True), manual(second, app=True),
                                          web(sim_accounts[2])], healthcheck_url=url))
    landed = browser_connect(sim, first, step_offset=0)
    bare = request_token_of(browser_connect(sim, second, step_offset=0))
    # No --account: every manual account, in config order.
    login = cli("--config", cfg, "login", input=f"{landed}\n{bare}\n")
    assert login.returncode == 0, login.stderr
    assert login.stderr.count(f"{sim.base_url}/connect/login?v=3&api_key={API_KEY}") == 2
    for acc in (first, second):
        assert f"{acc.user_id}: logged in; session cached until" in login.stdout
        entry = cached(tmp_path, acc.user_id)
        assert entry.mode == "connect" and entry.token
        assert datetime.fromisoformat(entry.expires_at) == next_six_ist(datetime.now(UTC))
        assert len(requests_of(sim, acc.user_id, "/session/token", "POST")) == 1
    assert sim_accounts[2].user_id not in login.stdout + login.stderr

    check = cli("--config", cfg, "login", "--check")
    assert check.returncode == 0, check.stderr
    assert check.stdout.count("session valid") == 2
    assert pings == []

    # A bad paste: a clear error, and the working session is kept.
    token = cached(tmp_path, first.user_id).token
    bad = cli("--config", cfg, "login", "--account", first.user_id, input="garbage-token\n")
    assert bad.returncode == 78  # Kite refused it: EX_CONFIG, as for any rejected login
    assert len(errors(bad)) == 1 and errors(bad)[0].count(first.user_id) == 1
    assert "request_token" in errors(bad)[0]
    assert cached(tmp_path, first.user_id).token == token
    tokens = [cached(tmp_path, a.user_id).token for a in (first, second)]
    assert_no_secrets([login, check, bad], sim_accounts, *tokens, request_token_of(landed),
                      bare)


def test_manual_web_login_on_a_pseudo_terminal(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    """getpass reads /dev/tty: the password is not echoed, the code is typed after it."""
    pty = pytest.importorskip("pty")
    acc = sim_accounts[0]
    cfg = str(make_config(sim, tmp_path, [manual(acc)]))
    argv = [sys.executable, "-m", "snapshotter", "--config", cfg, "login", "--account",
            acc.user_id]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPSHOTTER_")}
    try:
        pid, fd = pty.fork()
    except OSError as exc:
        pytest.skip(f"no pseudo-terminal: {exc}")
    if pid == 0:  # the child: exec at once (the parent has threads)
        try:
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    out = bytearray()

    def read_until(marker: bytes, timeout: float = HANG_GUARD) -> bool:
        deadline = time.monotonic() + timeout
        while marker not in out:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return False
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                return False
            if not chunk:
                return False
            out.extend(chunk)
        return True

    try:
        if not read_until(b"password"):
            pytest.fail(f"no password prompt: {bytes(out)!r}")
        if b"GetPassWarning" in out:
            pytest.skip("getpass cannot control the terminal here")
        os.write(fd, acc.password.encode() + b"\n")
        if not read_until(b"authenticator"):
            pytest.fail(f"no code prompt: {bytes(out)!r}")
        os.write(fd, pyotp.TOTP(acc.totp_secret).now().encode() + b"\n")
        read_until(b"\x00-never-")  # everything until the child exits
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert f"{acc.user_id}: logged in" in text
    assert acc.password not in text  # not echoed
    entry = cached(tmp_path, acc.user_id)
    assert entry.mode == "web" and entry.token and entry.token not in text
    assert sim.login_count[acc.user_id] == 1 and sim.twofa_count[acc.user_id] == 1



# -- today's Kite: app_code 2FA, X-Kite-Userid, both rate-limit answers -----------------------


def test_run_echoes_the_2fa_type_and_names_the_user_to_the_web_app(
        sim_accounts: list[SimAccount], database_url: str, tmp_path: Path) -> None:
    """Kite offers `app_code` to accounts with an authenticator today (`totp` to older
    ones) and refuses another type; the web app names the user in X-Kite-Userid."""
    today, older, connected, _ = sim_accounts
    older.twofa_type = "totp"
    with KiteSimulator([today, older, connected],
                       apps=[SimApp(API_KEY, API_SECRET, REDIRECT_URL)]) as sim:
        cfg = str(make_config(sim, tmp_path, [web(today), web(older), connect(connected)],
                              database_url))
        result = cli("--config", cfg, "run")
        assert result.returncode == 0, result.stderr
        for acc in (today, older, connected):
            assert sim.twofa_count[acc.user_id] == 1  # the type echoed was accepted
        assert not sim.twofa_failures
        # Every request to kite.base_url named its user (api_root is the same origin here).
        named = [(path, user, headers.get("x-kite-userid")) for (_m, path, user), (*_, headers)
                 in zip(sim.requests_log, sim.request_headers, strict=True)]
        assert len(named) > 3 * 6
        # (the simulator cannot tell whose a Connect login page request is: the header can)
        assert all(said == (user or connected.user_id) for _path, user, said in named), named
    stored = rows(database_url, "SELECT account, status FROM snapshots")
    assert sorted((r["account"], r["status"]) for r in stored) == sorted(
        (a.user_id, "ok") for a in (today, older, connected))


def test_both_rate_limit_answers_are_retried_a_window_apart(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    """Kite Connect's rate limit answers HTTP 429, or HTTP 200 with "Too many requests"
    as the body: both are transient, retried no sooner than the limit's one-second window
    (kite.backoff is 0.01 s here)."""
    acc = sim_accounts[0]
    cfg = str(make_config(sim, tmp_path, [connect(acc)], database_url))
    sim.fail_next(1, "429", "/portfolio/holdings")
    sim.fail_next(1, "429_as_200", "/portfolio/positions")
    result = cli("--config", cfg, "run")
    assert result.returncode == 0, result.stderr
    assert len(requests_of(sim, acc.user_id, "/portfolio/holdings")) == 2
    assert len(requests_of(sim, acc.user_id, "/portfolio/positions")) == 2
    retries = re.findall(rf"account {acc.user_id}: (Too many requests[^;]*); retry 1/\d+ in "
                         r"([\d.]+)s", result.stderr)
    assert sorted(said for said, _ in retries) == [
        "Too many requests", "Too many requests (Kite's rate limit, as HTTP 200)"]
    assert all(float(delay) >= 1.0 for _, delay in retries)
    stored = rows(database_url, "SELECT account, status FROM snapshots")
    assert stored == [{"account": acc.user_id, "status": "ok"}]
