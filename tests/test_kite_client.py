"""The Kite client against the simulator: login, errors, retries, session reuse, TOTP steps."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from requests.structures import CaseInsensitiveDict

from snapshotter.config import AccountConfig, KiteConfig, Secret
from snapshotter.errors import (
    InputError,
    KiteError,
    LoginRejected,
    PermissionDenied,
    TokenError,
    TransientKiteError,
)
from snapshotter.kite import http as kite_http
from snapshotter.kite.auth import connect_token_expiry
from snapshotter.kite.client import KiteClient
from snapshotter.kite.token_cache import TokenCache
from snapshotter.routes import ROUTES
from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts
from tests.conftest import HANG_GUARD


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 11, 0, 7, tzinfo=UTC)
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def account() -> SimAccount:
    return demo_accounts(1, seed=3)[0]


@pytest.fixture
def server(account: SimAccount, clock: Clock) -> Iterator[KiteSimulator]:
    with KiteSimulator([account], clock=clock) as sim:
        yield sim


def _client(server: KiteSimulator, account: SimAccount, clock: Clock, tmp_path: Path,
            **overrides: str) -> KiteClient:
    acc = AccountConfig(user_id=account.user_id,
                        password=Secret(overrides.get("password", account.password)),
                        totp_secret=Secret(overrides.get("totp_secret", account.totp_secret)))
    kite = KiteConfig(base_url=server.base_url, api_root=server.base_url, timeout=30,
                      retries=3, backoff=0.01)
    return KiteClient(acc, kite, TokenCache(tmp_path), clock=clock, sleep=clock.sleep)


def _response(status: int, body: bytes, content_type: str = "application/json"
              ) -> kite_http.Answer:
    return kite_http.Answer(status, CaseInsensitiveDict({"Content-Type": content_type}), body)


@pytest.mark.parametrize(("status", "body", "error"), [
    (403, {"status": "error", "message": "Invalid session", "error_type": "TokenException"},
     TokenError),
    (403, {"status": "error", "message": "Invalid `password`.", "error_type": "UserException"},
     LoginRejected),
    (403, {"status": "error", "message": "Invalid TOTP", "error_type": "TwoFAException"},
     LoginRejected),
    (400, {"status": "error", "message": "Bad Request", "error_type": "InputException"},
     InputError),
    (403, {"status": "error", "message": "Insufficient permission for that call.",
           "error_type": "PermissionException"}, PermissionDenied),
    (429, {"status": "error", "message": "Too many requests", "error_type": "NetworkException"},
     TransientKiteError),
    (502, {"status": "error", "message": "Bad gateway", "error_type": "NetworkException"},
     TransientKiteError),
    (500, {"status": "error", "message": "Something unexpected went wrong"},
     TransientKiteError),  # error_type missing
    (403, {"status": "error", "message": "Forbidden"}, TokenError),  # error_type missing
    (404, {"status": "error", "message": "Not found", "error_type": "GeneralException"},
     KiteError),
])
def test_error_envelope_becomes_typed_exception(status: int, body: dict[str, str],
                                                error: type[KiteError]) -> None:
    with pytest.raises(error) as info:
        kite_http.parse_envelope(_response(status, json.dumps(body).encode()), "AB1234")
    assert type(info.value) is error
    assert "AB1234" in str(info.value) and body["message"] in str(info.value)


@pytest.mark.parametrize("body", [b"<html><body>Bad gateway</body></html>", b'{"status": "succ',
                                  b"", b"[1, 2]"])
def test_unparseable_bodies_are_transient(body: bytes) -> None:
    with pytest.raises(TransientKiteError, match="instead of JSON"):
        kite_http.parse_envelope(_response(200, body, "text/html"), "AB1234")


def test_login_then_cached_session_reused(server: KiteSimulator, account: SimAccount,
                                          clock: Clock, tmp_path: Path) -> None:
    first = _client(server, account, clock, tmp_path)
    data = first.fetch_all()
    assert set(data) == {"holdings", "positions", "margins", "mf_holdings"}
    assert data["holdings"] == server.portfolio(account.user_id)["holdings"]
    assert server.login_count[account.user_id] == 1
    cache_file = next((tmp_path / "sessions").iterdir())
    assert cache_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "sessions").stat().st_mode & 0o777 == 0o700

    second = _client(server, account, clock, tmp_path)
    assert second.fetch_all()["margins"] == server.portfolio(account.user_id)["margins"]
    assert server.login_count[account.user_id] == 1 and second.logins == 0


def test_wrong_totp_is_not_retried_and_is_remembered(server: KiteSimulator,
                                                     account: SimAccount, clock: Clock,
                                                     tmp_path: Path) -> None:
    wrong = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    client = _client(server, account, clock, tmp_path, totp_secret=wrong)
    with pytest.raises(LoginRejected, match=account.user_id):
        client.fetch_all()
    twofa = [p for _, p, _ in server.requests_log if p == "/api/twofa"]
    assert len(twofa) == 1
    # A second attempt with the same credentials does not reach Kite at all.
    before = len(server.requests_log)
    with pytest.raises(LoginRejected, match="not trying again"):
        _client(server, account, clock, tmp_path, totp_secret=wrong).fetch_all()
    assert len(server.requests_log) == before
    # Fixed credentials are tried again.
    clock.now += timedelta(seconds=60)
    assert _client(server, account, clock, tmp_path).fetch_all()["holdings"]


def test_twofa_is_never_resent_on_a_transient_error(server: KiteSimulator,
                                                    account: SimAccount, clock: Clock,
                                                    tmp_path: Path) -> None:
    server.fail_next(1, "503", "/api/twofa")
    with pytest.raises(TransientKiteError):
        _client(server, account, clock, tmp_path).fetch_all()
    assert len([p for _, p, _ in server.requests_log if p == "/api/twofa"]) == 1
    assert server.twofa_failures.get(account.user_id, 0) == 0


def test_same_totp_step_is_never_submitted_twice(server: KiteSimulator, account: SimAccount,
                                                 clock: Clock, tmp_path: Path) -> None:
    client = _client(server, account, clock, tmp_path)
    client.login()
    client.login()  # e.g. a re-login right after an expired session
    assert len(clock.slept) == 1 and 0 < clock.slept[0] <= 31
    assert server.login_count[account.user_id] == 2
    assert server.twofa_failures.get(account.user_id, 0) == 0


def test_expired_session_relogs_once_then_gives_up(server: KiteSimulator, account: SimAccount,
                                                   clock: Clock, tmp_path: Path) -> None:
    client = _client(server, account, clock, tmp_path)
    client.login()
    server.fail_next(2, "token", "/oms/portfolio/holdings")
    with pytest.raises(TokenError):
        client.fetch_all()
    assert server.login_count[account.user_id] == 2

    server.fail_next(1, "token", "/oms/portfolio/holdings")
    clock.now += timedelta(seconds=60)
    assert client.fetch_all()["holdings"]
    assert server.login_count[account.user_id] == 3


def test_endpoints_of_one_account_are_fetched_concurrently(server: KiteSimulator,
                                                           account: SimAccount, clock: Clock,
                                                           tmp_path: Path) -> None:
    client = _client(server, account, clock, tmp_path)
    client.login()
    # The simulator holds its answers until all four requests are in flight at once.
    server.hold_answers()
    try:
        fetching = ThreadPoolExecutor(max_workers=1).submit(client.fetch_all)
        assert server.wait_in_flight(len(ROUTES), timeout=HANG_GUARD), \
            f"never more than {server.max_in_flight} request(s) in flight at once"
    finally:
        server.release_answers()
    assert set(fetching.result(timeout=HANG_GUARD)) == {route.name for route in ROUTES}
    assert server.max_in_flight == len(ROUTES)


def test_connect_token_expires_at_six_ist_next_morning() -> None:
    evening = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # 17:30 IST
    assert connect_token_expiry(evening) == datetime(2026, 11, 28, 0, 30, tzinfo=UTC)
    early = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)  # 05:30 IST
    assert connect_token_expiry(early) == datetime(2026, 11, 27, 0, 30, tzinfo=UTC)


def test_a_refused_2fa_step_never_starts_another_login(server: KiteSimulator,
                                                       account: SimAccount, clock: Clock,
                                                       tmp_path: Path) -> None:
    """A TokenException from /api/twofa is not an expired data session to renew."""
    server.fail_next(1, "token", "/api/twofa")
    with pytest.raises(KiteError) as info:
        _client(server, account, clock, tmp_path).fetch_all()
    assert not isinstance(info.value, TokenError)
    logins = [p for _, p, _ in server.requests_log if p in ("/api/login", "/api/twofa")]
    assert logins == ["/api/login", "/api/twofa"]


def test_a_totp_step_recorded_in_the_future_does_not_stall(server: KiteSimulator,
                                                          account: SimAccount, clock: Clock,
                                                          tmp_path: Path) -> None:
    step = int(clock.now.timestamp()) // 30
    TokenCache(tmp_path).update(account.user_id, last_totp_step=step + 20_000)
    assert _client(server, account, clock, tmp_path).fetch_all()["holdings"]
    assert clock.slept == []


def test_success_without_data_is_an_error(server: KiteSimulator, account: SimAccount,
                                          clock: Clock, tmp_path: Path) -> None:
    server.portfolio(account.user_id)["holdings"] = None
    with pytest.raises(KiteError, match="holdings: Kite answered success without data"):
        _client(server, account, clock, tmp_path).fetch_all()


@pytest.mark.parametrize("reserver", ["database", "none"])
def test_the_totp_step_is_recorded_before_its_code_is_sent(
        server: KiteSimulator, account: SimAccount, clock: Clock, tmp_path: Path,
        reserver: str) -> None:
    """When Kite receives a 2FA code, its step is already durable: reserved in the
    database (then the session cache is written once, with the session), or, with
    nowhere to reserve it, saved in the session cache."""
    from snapshotter.kite.auth import HELD

    reserved: list[int] = []
    seen_at_twofa: list[tuple[list[int], int]] = []
    respond = server._respond

    def watching(req: Any) -> Any:
        if req.path.endswith("/api/twofa"):
            on_disk = TokenCache(tmp_path).load(account.user_id).last_totp_step
            seen_at_twofa.append((list(reserved), on_disk))
        return respond(req)

    server._respond = watching  # type: ignore[method-assign]
    client = _client(server, account, clock, tmp_path)
    if reserver == "database":
        def reserve(step: int) -> Any:
            reserved.append(step)
            return HELD
        client.reserve_totp_step = reserve
    writes: list[int] = []
    save = client.cache.save

    def counted(user: str, entry: Any) -> None:
        writes.append(entry.last_totp_step)
        save(user, entry)

    client.cache.save = counted  # type: ignore[method-assign]
    client.login()
    step = int(clock().timestamp()) // 30
    [(reserved_then, cached_then)] = seen_at_twofa
    if reserver == "database":
        assert reserved_then == [step] and writes == [step]  # one write, after the 2FA
    else:
        assert cached_then == step and writes == [step, step]
    assert TokenCache(tmp_path).load(account.user_id).last_totp_step == step


@pytest.mark.parametrize("shared_threads", [True, False])
def test_a_fetch_saves_its_new_session_while_its_data_requests_are_in_flight(
        server: KiteSimulator, account: SimAccount, clock: Clock, tmp_path: Path,
        shared_threads: bool) -> None:
    """The session cache write after a login (and its fsync) is not between the 2FA
    answer and the data requests: here the write waits until Kite has received a data
    request, which it could not if the requests waited for the write. Written once,
    with the session, before the fetch returns."""
    data_request_seen = threading.Event()
    respond = server._respond

    def watching(req: Any) -> Any:
        if req.path.startswith("/oms/"):
            data_request_seen.set()
        return respond(req)

    server._respond = watching  # type: ignore[method-assign]
    routes = ThreadPoolExecutor(max_workers=len(ROUTES)) if shared_threads else None
    client = _client(server, account, clock, tmp_path)
    client.route_pool = routes
    save = client.cache.save
    saved_after_a_data_request: list[bool] = []

    def held_until_a_data_request(user: str, entry: Any) -> None:
        if entry.token:  # (not the TOTP step's write before the 2FA: nothing reserved it)
            saved_after_a_data_request.append(data_request_seen.wait(HANG_GUARD))
        save(user, entry)

    client.cache.save = held_until_a_data_request  # type: ignore[method-assign]
    try:
        payloads = client.fetch_all()
    finally:
        if routes is not None:
            routes.shutdown()
    assert set(payloads) == {route.name for route in ROUTES}
    assert saved_after_a_data_request == [True]
    assert TokenCache(tmp_path).load(account.user_id).token == client.token()


def test_a_session_that_cannot_be_saved_fails_the_fetch_as_the_login_did(
        server: KiteSimulator, account: SimAccount, clock: Clock, tmp_path: Path) -> None:
    """A state directory that refuses the session's write fails the account with that
    write's own error, once the data requests sent meanwhile have ended."""
    from snapshotter.private_files import StatePathError

    data_paths: list[str] = []
    respond = server._respond

    def watching(req: Any) -> Any:
        if req.path.startswith("/oms/"):
            data_paths.append(req.path)
        return respond(req)

    server._respond = watching  # type: ignore[method-assign]
    client = _client(server, account, clock, tmp_path)
    save = client.cache.save

    def refused(user: str, entry: Any) -> None:
        if not entry.token:  # the TOTP step's write before the 2FA (nothing reserved it)
            return save(user, entry)
        raise StatePathError(f"{tmp_path}/sessions/{user}.json: cannot write: "
                             "No space left on device")

    client.cache.save = refused  # type: ignore[method-assign]
    with pytest.raises(StatePathError, match="cannot write: No space left on device"):
        client.fetch_all()
    assert len(data_paths) == len(ROUTES)  # sent, answered and waited for


def test_a_session_held_for_the_data_requests_is_saved_when_an_error_follows_the_login(
        server: KiteSimulator, account: SimAccount, clock: Clock, tmp_path: Path) -> None:
    client = _client(server, account, clock, tmp_path)
    log_in = client.login

    def login_then_an_error(entry: Any = None) -> str:
        log_in(entry)
        raise RuntimeError("after the login")

    client.login = login_then_an_error  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="after the login"):
        client.fetch_all()
    assert TokenCache(tmp_path).load(account.user_id).token


class _ForwardProxy(http.server.BaseHTTPRequestHandler):
    """A plain HTTP forward proxy: absolute-form requests, relayed to their origin."""

    seen: list[str]

    def _relay(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "proxy-connection", "connection")}
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
        try:
            upstream.request(self.command, target.path + (f"?{target.query}" if target.query
                                                          else ""), body or None, headers)
            answer = upstream.getresponse()
            content = answer.read()
            self.send_response_only(answer.status)  # the origin's Date, not ours
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(content)
        finally:
            upstream.close()

    do_GET = do_POST = _relay

    def log_message(self, *args: Any) -> None:
        pass


def test_requests_go_through_the_proxy_the_environment_names(
        server: KiteSimulator, account: SimAccount, clock: Clock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY from the environment, as requests reads it (once per origin, now):
    the login and every data route go through the proxy, and the fetch works."""
    seen: list[str] = []
    handler = type("Proxy", (_ForwardProxy,), {"seen": seen})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setattr(kite_http, "_ENVIRONMENT", {})
        client = _client(server, account, clock, tmp_path)
        try:
            payloads = client.fetch_all()
        finally:
            client.close()
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert set(payloads) == {route.name for route in ROUTES}
    paths = [line.split(" ", 1)[1].removeprefix(server.base_url) for line in seen]
    assert paths[:2] == ["/api/login", "/api/twofa"]
    assert sorted(paths[2:]) == sorted(route.web_path for route in ROUTES)
