"""A hostile Kite, end to end through `snapshotter run`: redirected logins are never resent
nor sent elsewhere, a dripping answer cannot hang a run, a huge one cannot exhaust memory."""

from __future__ import annotations

import logging
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from snapshotter.cancel import Cancel, Cancelled
from snapshotter.config import AccountConfig, KiteConfig, Secret
from snapshotter.errors import KiteError, KiteProtocolError, TransientKiteError
from snapshotter.kite import http as kite_http
from snapshotter.kite.client import KiteClient
from snapshotter.kite.token_cache import TokenCache
from snapshotter.simulator import KiteSimulator, SimAccount, SimApp
from tests.conftest import (
    HANG_GUARD,
    config_dict,
    run_cli,
    wait_until,
    within_guard,
    write_config,
)

API_KEY, API_SECRET = "hostileapp1", "hostile-app-secret-0a1b2c3d"


class _Recorder(BaseHTTPRequestHandler):
    """Another origin: records every connection and request it gets, answers success."""

    def handle(self) -> None:
        self.server.received.append(("connection", "", {}, b""))  # type: ignore[attr-defined]
        super().handle()

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append(  # type: ignore[attr-defined]
            (self.command, self.path, dict(self.headers), body))
        answer = b'{"status": "success", "data": {"request_id": "r", "access_token": "t"}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = _record

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[tuple[str, list[Any]]]:
    """(origin URL, what it received) of a server that is not Kite."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", \
            server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def _config(sim: KiteSimulator, accounts: list[SimAccount], database_url: str,
            tmp_path: Path, *, connect: bool = False, **kite: Any) -> Path:
    data = config_dict(sim, accounts, database_url, tmp_path / "state")
    data["kite"].update(kite)
    if connect:
        sim.add_app(SimApp(API_KEY, API_SECRET, "http://127.0.0.1:9/redirect"))
        for entry in data["accounts"]:
            entry.update(auth="connect", api_key=API_KEY, api_secret=API_SECRET)
    return write_config(tmp_path / "config.yaml", data)


def _sent(sim: KiteSimulator, user: str, method: str, path: str) -> int:
    return sim.requests_log.count((method, path, user))


def _stored(url: str) -> dict[str, str]:
    """account -> status of its latest attempt in the ledger."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT account, status FROM snapshots ORDER BY taken_at")).all()
    finally:
        engine.dispose()
    return {account: status for account, status in rows}


def _error_lines(result: subprocess.CompletedProcess[str], user: str) -> list[str]:
    """The run's error lines about ``user`` (cut where another thread's log line may have
    been written onto the same line)."""
    assert "Traceback" not in result.stderr
    return re.findall(rf"error: account {user}: .*?(?=\n|\d{{4}}-\d\d-\d\d \d\d:|$)",
                      result.stderr)


def _others_stored(url: str, accounts: list[SimAccount], victim: SimAccount) -> None:
    stored = _stored(url)
    assert stored[victim.user_id] == "failed"
    assert all(stored[a.user_id] == "ok" for a in accounts if a is not victim)


# -- 1. a login is never resent, never sent elsewhere ----------------------------------------


@pytest.mark.parametrize(("path", "status", "what"), [
    ("/api/login", 307, "login"),
    ("/api/login", 308, "login"),
    ("/api/twofa", 307, "2FA"),
])
def test_a_redirected_login_post_is_sent_once_and_never_followed(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str, tmp_path: Path,
        path: str, status: int, what: str) -> None:
    victim = sim_accounts[0]
    sim.fail_next(1000, "redirect", path, status=status, user_id=victim.user_id)
    cfg = _config(sim, sim_accounts, database_url, tmp_path)

    first = run_cli("--config", str(cfg), "run")
    assert first.returncode == 1, first.stderr
    assert _sent(sim, victim.user_id, "POST", path) == 1
    assert _error_lines(first, victim.user_id) == [
        f"error: account {victim.user_id}: Kite answered the {what} request with a redirect "
        f"(HTTP {status}); not following it"]
    _others_stored(database_url, sim_accounts, victim)
    assert sim.twofa_failures == {} and not sim.is_blocked(victim.user_id)

    # The next run logs in again (after a fresh TOTP step), still once per attempt.
    second = run_cli("--config", str(cfg), "run")
    assert second.returncode == 1, second.stderr
    assert _sent(sim, victim.user_id, "POST", "/api/login") == 2
    assert _sent(sim, victim.user_id, "POST", "/api/twofa") == (2 if what == "2FA" else 0)


def test_a_2fa_whose_connection_is_dropped_unanswered_is_not_sent_again(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    """The 2FA request goes on the connection the login's answer kept alive. Kite takes
    the code, then drops that connection without a byte of answer: the code is spent, and
    libcurl would send the request again on a new connection. It is sent once."""
    victim = sim_accounts[0]
    sim.fail_next(1000, "hang_up", "/api/twofa", user_id=victim.user_id)
    cfg = _config(sim, sim_accounts, database_url, tmp_path)

    result = run_cli("--config", str(cfg), "run")
    assert result.returncode == 1, result.stderr
    assert _sent(sim, victim.user_id, "POST", "/api/login") == 1
    assert _sent(sim, victim.user_id, "POST", "/api/twofa") == 1
    [line] = _error_lines(result, victim.user_id)
    assert line.startswith(f"error: account {victim.user_id}: cannot reach Kite ("), line
    _others_stored(database_url, sim_accounts, victim)


@pytest.mark.parametrize(("auth", "path", "method"), [
    ("web", "/api/login", "POST"),
    ("web", "/api/twofa", "POST"),
    ("connect", "/session/token", "POST"),
    ("web", "/oms/portfolio/holdings", "GET"),
    ("connect", "/portfolio/holdings", "GET"),
])
def test_nothing_is_ever_sent_to_another_origin(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str, tmp_path: Path,
        elsewhere: tuple[str, list[Any]], auth: str, path: str, method: str) -> None:
    other, received = elsewhere
    victim, follower = sim_accounts[0], sim_accounts[1]
    sim.fail_next(1000, "redirect", path, status=307, user_id=victim.user_id,
                  location=f"{other}/collect?stolen=leak-me")
    if method == "GET":  # a redirect within Kite's own origin is followed
        sim.fail_next(1, "redirect", path, status=302, user_id=follower.user_id)
    cfg = _config(sim, sim_accounts, database_url, tmp_path, connect=auth == "connect")

    result = run_cli("--config", str(cfg), "run")
    assert result.returncode == 1, result.stderr
    assert received == []
    assert _sent(sim, victim.user_id, method, path) == 1
    [line] = _error_lines(result, victim.user_id)
    assert "leak-me" not in result.stderr + result.stdout and "/collect" not in line
    if method == "GET":
        route = path.rpartition("/")[2]
        assert line == (f"error: account {victim.user_id}: {route}: Kite redirected to another "
                        f"site ({other}); not following it")
        assert _sent(sim, follower.user_id, method, path) == 2
    else:
        assert "with a redirect (HTTP 307); not following it" in line
    _others_stored(database_url, sim_accounts, victim)


def test_a_header_value_with_a_line_break_is_refused_and_nothing_is_sent(
        elsewhere: tuple[str, list[Any]]) -> None:
    """A token with a line break would add a header field of its own to the request."""
    url, received = elsewhere
    session = kite_http.new_session()
    try:
        for value in ("enctoken abc\r\nX-Injected: 1", "enctoken abc\nX-Injected: 1"):
            with pytest.raises(KiteProtocolError, match=r"HTTP request failed \(ValueError\)$"):
                kite_http.send(session, "GET", f"{url}/x", timeout=5, max_bytes=2**20,
                               label="holdings", account="AB1234",
                               headers={"Authorization": value})
        assert received == []
        kite_http.send(session, "GET", f"{url}/x", timeout=5, max_bytes=2**20,
                       label="holdings", account="AB1234", headers={"Authorization": "ok"})
        assert [(method, path) for method, path, _, _ in received] == [
            ("connection", ""), ("GET", "/x")]
        assert "X-Injected" not in received[1][2]
    finally:
        session.close()


# -- 2. deadlines and size limits --------------------------------------------------------------


def test_a_dripping_answer_times_out_and_the_other_accounts_are_stored(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    victim = sim_accounts[0]
    sim.drip_seconds = 0.5  # well inside the per-read timeout: only a whole deadline helps
    sim.fail_next(1000, "drip", "/oms/portfolio/holdings", user_id=victim.user_id)
    cfg = _config(sim, sim_accounts, database_url, tmp_path, timeout=2, retries=1)

    # The answer would drip for half an hour: only the deadline ends the run.
    result = run_cli("--config", str(cfg), "run", timeout=HANG_GUARD)
    assert result.returncode == 1, result.stderr
    assert _error_lines(result, victim.user_id) == [
        f"error: account {victim.user_id}: holdings: no complete answer within 2 s"]
    assert _sent(sim, victim.user_id, "GET", "/oms/portfolio/holdings") == 2  # retries: 1
    _others_stored(database_url, sim_accounts, victim)


def _run_measured(cfg: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """`snapshotter run` and its peak memory (MB), through a wrapper that waits for it."""
    wrapper = ("import resource, subprocess, sys\n"
               "code = subprocess.run(sys.argv[1:]).returncode\n"
               "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
               "print(f'peak-rss-kb {peak}', file=sys.stderr)\n"
               "sys.exit(code)\n")
    result = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "snapshotter", "--config",
         str(cfg), "run"], capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL)
    peak = int(result.stderr.strip().splitlines()[-1].split()[1])
    return result, peak // 1024


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_huge_answer_is_refused_without_reading_it(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str, tmp_path: Path,
        chunked: bool) -> None:
    victim = sim_accounts[0]
    sim.huge_mb, sim.huge_chunked = 64, chunked
    sim.fail_next(1, "huge", "/oms/portfolio/holdings", user_id=victim.user_id)
    cfg = _config(sim, sim_accounts, database_url, tmp_path, max_response_mb=1)

    result, peak = _run_measured(cfg)
    assert result.returncode == 1, result.stderr
    assert _error_lines(result, victim.user_id) == [
        f"error: account {victim.user_id}: holdings: answer larger than 1 MB "
        "(kite.max_response_mb); not read"]
    assert _sent(sim, victim.user_id, "GET", "/oms/portfolio/holdings") == 1  # not retried
    _others_stored(database_url, sim_accounts, victim)

    # The next run (a normal answer) stores the account; the huge one cost no memory.
    normal, normal_peak = _run_measured(cfg)
    assert normal.returncode == 0, normal.stderr
    assert _stored(database_url)[victim.user_id] == "ok"
    assert peak < normal_peak + 32


# -- the client alone: cancellation, partial answers, a server dripping its headers ------------


def _client(base_url: str, account: SimAccount, tmp_path: Path, cancel: Cancel | None = None,
            **kite: Any) -> KiteClient:
    acc = AccountConfig(user_id=account.user_id, password=Secret(account.password),
                        totp_secret=Secret(account.totp_secret))
    settings = {"timeout": 30.0, "retries": 0, "backoff": 0.01, **kite}
    extra = {"cancel": cancel} if cancel is not None else {}
    return KiteClient(acc, KiteConfig(base_url=base_url, api_root=base_url, **settings),
                      TokenCache(tmp_path), clock=lambda: datetime.now(UTC), **extra)


def _cancel_when(cancel: Cancel, condition: Callable[[], object]) -> threading.Thread:
    def when() -> None:
        wait_until(condition, "the moment to cancel")
        cancel.cancel("run deadline")
    thread = threading.Thread(target=when, daemon=True)
    thread.start()
    return thread


def test_cancel_aborts_a_dripping_request_at_once(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    sim.drip_seconds = 5  # for hours, with an hour's timeout: only the cancel ends it
    sim.fail_next(1, "drip", "/oms/portfolio/holdings")
    cancel = Cancel()
    client = _client(sim.base_url, sim_accounts[0], tmp_path, cancel, timeout=3600)
    fetch, answered_routes = client.get, []

    def get(route: str, label: str | None = None) -> Any:
        data = fetch(route, label)
        answered_routes.append(label)
        return data

    client.get = get  # type: ignore[method-assign]
    holdings = ("GET", "/oms/portfolio/holdings", sim_accounts[0].user_id)
    canceller = _cancel_when(
        cancel, lambda: len(answered_routes) == 3 and holdings in sim.requests_log)
    with pytest.raises(Cancelled, match="run deadline") as caught:
        within_guard(client.fetch_all)
    canceller.join()
    answered = caught.value.partial_payloads  # type: ignore[attr-defined]
    assert set(answered) == {"positions", "margins", "mf_holdings"}
    assert answered["margins"] == sim.portfolio(sim_accounts[0].user_id)["margins"]
    with pytest.raises(Cancelled):  # nothing new is sent once cancelled
        client.get("/portfolio/positions")
    assert sim.requests_log.count(("GET", "/oms/portfolio/positions",
                                   sim_accounts[0].user_id)) == 1


def test_cancel_ends_a_retry_backoff(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    sim.fail_next(10, "503", "/oms/portfolio/holdings")
    cancel = Cancel()
    client = _client(sim.base_url, sim_accounts[0], tmp_path, cancel, retries=3,
                     backoff=3600)  # hours of backoff: only the cancel ends it
    backing_off = _LogSeen("retry 1/3 in")
    logger = logging.getLogger("snapshotter.kite.client")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(backing_off)
    try:
        canceller = _cancel_when(cancel, backing_off.seen.is_set)
        with pytest.raises(Cancelled):
            within_guard(client.fetch_all)
        canceller.join()
    finally:
        logger.removeHandler(backing_off)
        logger.setLevel(level)
    assert sim.requests_log.count(("GET", "/oms/portfolio/holdings",
                                   sim_accounts[0].user_id)) == 1  # never retried


class _LogSeen(logging.Handler):
    """Notes when a log line containing ``text`` is emitted (from any thread)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()



def test_a_failed_fetch_carries_the_routes_that_answered(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    sim.fail_next(1, "500", "/oms/mf/holdings")
    client = _client(sim.base_url, sim_accounts[0], tmp_path)
    with pytest.raises(KiteError, match="Something unexpected") as caught:
        client.fetch_all()
    portfolio = sim.portfolio(sim_accounts[0].user_id)
    assert caught.value.partial_payloads == {  # type: ignore[attr-defined]
        name: portfolio[name] for name in ("holdings", "positions", "margins")}


def _drip(conn: socket.socket, head: bytes, byte: bytes, stop: threading.Event) -> None:
    """Send ``head``, then one ``byte`` every 0.3 s; ends by itself after two minutes (a
    test that does not cut it fails, never hangs)."""
    conn.sendall(head)
    for _ in range(400):
        if stop.is_set():
            return
        try:
            conn.sendall(byte)
        except OSError:
            return
        time.sleep(0.3)


def test_headers_dripping_past_the_deadline_time_out(
        sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    """A server that sends its status line, then one header byte every 0.3 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            _drip(conn, b"HTTP/1.1 200 OK\r\n", b"X", stop)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    client = _client(f"http://127.0.0.1:{listener.getsockname()[1]}", sim_accounts[0],
                     tmp_path, timeout=1)
    try:
        with pytest.raises(TransientKiteError, match="login: no complete answer within 1 s"):
            client.fetch_all()
    finally:
        stop.set()
        thread.join(timeout=HANG_GUARD)
        listener.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_tls_answer_dripping_after_connection_close_times_out(tmp_path: Path) -> None:
    """Over TLS, with "Connection: close" (http.client then lets go of the socket while
    the body is still read through it), the deadline still cuts the request."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            conn.recv(65536)
            _drip(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\nConnection: close\r\n\r\n", b" ", stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    session = kite_http.new_session()
    try:
        with pytest.raises(TransientKiteError, match="holdings: no complete answer within 1 s"):
            kite_http.send(session, "GET", f"https://127.0.0.1:{listener.getsockname()[1]}/x",
                           timeout=1, max_bytes=2**20, label="holdings", account="AB1234",
                           verify=str(cert))
    finally:
        stop.set()
        thread.join(timeout=HANG_GUARD)
        listener.close()
        session.close()


# -- the transport's edges: answers that are not HTTP, trailers, Ctrl-C ------------------------


def _raw_server(answer: Callable[[socket.socket], None]) -> tuple[str, threading.Event]:
    """A server that hands each connection, its request read, to ``answer``; (URL, set once
    a request has arrived)."""
    listener = socket.create_server(("127.0.0.1", 0))
    arrived = threading.Event()

    def serve() -> None:
        with listener:
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    arrived.set()
                    answer(conn)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", arrived


def _get(url: str, session: kite_http.KiteSession, timeout: float = 5) -> kite_http.Answer:
    return kite_http.send(session, "GET", f"{url}/oms/portfolio/holdings", timeout=timeout,
                          max_bytes=2**20, label="holdings", account="AB1234")


@pytest.mark.parametrize("reply", [b"garbage\r\n\r\n", b"<html>Bad gateway</html>"])
def test_an_answer_without_a_status_line_is_transient(reply: bytes) -> None:
    """Not an HTTP answer (a broken proxy, a captive portal): Kite's trouble, retried like
    any outage, never "a request that cannot be sent"."""
    url, _ = _raw_server(lambda conn: conn.sendall(reply))
    session = kite_http.new_session()
    try:
        with pytest.raises(TransientKiteError, match=r"cannot reach Kite \(not an HTTP answer\)"):
            _get(url, session)
    finally:
        session.close()


def test_a_chunked_answers_trailer_is_neither_a_header_nor_a_cookie() -> None:
    body = b'{"status": "success", "data": []}'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTrailer: Set-Cookie\r\n"
              b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
              + b"%x\r\n%s\r\n0\r\n" % (len(body), body)
              + b"Set-Cookie: enctoken=planted; Path=/\r\nX-Late: 1\r\n\r\n")
    url, _ = _raw_server(lambda conn: conn.sendall(answer))
    session = kite_http.new_session()
    try:
        resp = _get(url, session)
    finally:
        session.close()
    assert resp.status_code == 200 and resp.json() == {"status": "success", "data": []}
    assert "X-Late" not in resp.headers and "Set-Cookie" not in resp.headers
    assert session.cookies.get("enctoken") is None


def test_ctrl_c_ends_a_stalled_request_on_the_main_thread() -> None:
    """`snapshotter login` waits on the main thread: Ctrl-C there ends a request Kite does
    not answer, not the request's deadline (libcurl's waits go on after a signal; only a
    Python call during the transfer lets the interrupt through)."""
    import os
    import signal

    assert threading.current_thread() is threading.main_thread()
    release = threading.Event()
    url, arrived = _raw_server(lambda conn: release.wait(HANG_GUARD))

    def interrupt() -> None:
        if arrived.wait(HANG_GUARD):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    session = kite_http.new_session()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            _get(url, session, timeout=HANG_GUARD)
        # the hang guard, not a speed limit: without the fix this ends at the deadline
        assert time.monotonic() - started < HANG_GUARD
    finally:
        release.set()
        session.close()
