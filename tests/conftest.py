"""Shared fixtures: databases (SQLite and PostgreSQL), the Kite simulator, config files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts

PG_ADMIN_URL = os.environ.get(
    "SNAPSHOTTER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_available() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def postgres_server() -> str:
    problem = _postgres_available()
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    return PG_ADMIN_URL


def create_pg_database(admin_url: str) -> str:
    name = f"snapshotter_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'snapshots.db'}"
        return
    admin = request.getfixturevalue("postgres_server")
    url = create_pg_database(admin)
    try:
        yield url
    finally:
        drop_pg_database(admin, url)


@pytest.fixture
def sim_accounts() -> list[SimAccount]:
    return demo_accounts(3, seed=7)


@pytest.fixture
def sim(sim_accounts: list[SimAccount]) -> Iterator[KiteSimulator]:
    with KiteSimulator(sim_accounts) as server:
        yield server


def config_dict(sim: KiteSimulator, accounts: list[SimAccount], database_url: str,
                state_dir: Path, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "database": {"url": database_url},
        "kite": {"base_url": sim.base_url, "api_root": sim.base_url, "backoff": 0.01,
                 "timeout": 3},
        "state_dir": str(state_dir),
        "accounts": [{"user_id": a.user_id, "password": a.password,
                      "totp_secret": a.totp_secret} for a in accounts],
    }
    data.update(extra)
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real `snapshotter` command, as a user runs it (in ``cwd``, if given)."""
    return subprocess.run(
        [sys.executable, "-m", "snapshotter", *args], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, cwd=cwd)



def query_rows(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """A test's look at the database a command wrote: the rows of ``sql`` as dicts."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


LOCAL_ONLY = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


@dataclass
class Recorder:
    """A tiny Healthchecks stand-in on 127.0.0.1 that records every request."""

    base_url: str
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    status: int = 200
    event: threading.Event = field(default_factory=threading.Event)

    def wait(self, count: int, timeout: float = 30) -> list[tuple[str, str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            self.event.wait(0.05)
            self.event.clear()
        return list(self.requests)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec: Recorder

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            rec.requests.append((self.command, self.path, body))
            rec.event.set()
            self.send_response(rec.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_GET = do_POST = do_HEAD = _record

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Recorder(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


FAKETIME_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime",
                     "/usr/lib/faketime")


def _faketime_lib() -> str | None:
    for directory in FAKETIME_LIB_DIRS:
        lib = Path(directory) / "libfaketime.so.1"
        if lib.exists():
            return str(lib)
    return None


@pytest.fixture
def faketime_lib() -> str:
    lib = _faketime_lib()
    if lib is None or shutil.which("faketime") is None:
        if IN_CI:
            pytest.fail("libfaketime (Debian package faketime) is required in CI")
        pytest.skip("libfaketime not installed (apt-get install faketime)")
    return lib


class ShiftedClock:
    """The simulator's clock, shifted like the client processes' (for TOTP checks)."""

    def __init__(self, offset: float):
        self.offset = offset

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset, UTC)


def _offset_to(target: datetime) -> int:
    return int(target.timestamp() - time.time())


#: Seconds before a test gives up waiting for something that should happen (a process
#: ending, a request arriving). A hang guard, never a speed claim: every test arranges
#: that the behaviour it rules out would take far longer (hours) than this.
HANG_GUARD = 300.0


def scheduler_clock(monkeypatch: pytest.MonkeyPatch, start: datetime) -> Any:
    """A ManualClock at ``start``, which APScheduler's modules also read as their now (the
    daemon's tests move it instead of waiting)."""
    import apscheduler.executors.base
    import apscheduler.schedulers.base
    import apscheduler.triggers.date
    import apscheduler.triggers.interval

    from snapshotter.sessions import ManualClock

    fake = ManualClock(start)

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            return fake.now.astimezone(tz) if tz else fake.now.replace(tzinfo=None)

    for module in (apscheduler.schedulers.base, apscheduler.executors.base,
                   apscheduler.triggers.date, apscheduler.triggers.interval):
        monkeypatch.setattr(module, "datetime", FakeDatetime)
    return fake


def wait_until(condition: Callable[[], object], what: str,
               alive: subprocess.Popen[str] | None = None) -> None:
    """Poll ``condition`` until it holds (an event seen from outside: a request the
    simulator got, a row a command wrote); fail if ``alive`` exits first or HANG_GUARD
    passes."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if alive is not None and alive.poll() is not None:
            out, err = alive.communicate()
            pytest.fail(f"exited ({alive.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for {what} after {HANG_GUARD:.0f} s")
        time.sleep(0.1)


def within_guard(work: Callable[[], Any]) -> Any:
    """``work()`` on another thread; its result or exception, or a failure after
    HANG_GUARD (the test then ends, not the thread)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", work()))
        except BaseException as exc:  # re-raised on the test's thread
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    if not outcome:
        pytest.fail(f"still running after {HANG_GUARD:.0f} s")
    kind, value = outcome[0]
    if kind == "raised":
        raise value
    return value


# --- the dashboard (`snapshotter serve`) and a real browser ---------------------------

CHROMIUM = os.environ.get("SNAPSHOTTER_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is required in CI (Debian package chromium)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-proxy-server: the dashboard is on 127.0.0.1, whatever proxy the machine has.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--no-proxy-server"])
        try:
            yield PatientBrowser(browser)
        finally:
            browser.close()


class PatientBrowser:
    """The browser, whose pages and contexts wait up to HANG_GUARD (Playwright's own 30 s
    default is a speed claim a busy 2-core machine breaks); the rest as Playwright's."""

    def __init__(self, browser: Any):
        self._browser = browser

    def new_page(self, **options: Any) -> Any:
        page = self._browser.new_page(**options)
        page.set_default_timeout(HANG_GUARD * 1000)
        page.set_default_navigation_timeout(HANG_GUARD * 1000)
        return page

    def new_context(self, **options: Any) -> Any:
        context = self._browser.new_context(**options)
        context.set_default_timeout(HANG_GUARD * 1000)
        context.set_default_navigation_timeout(HANG_GUARD * 1000)
        return context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)


@dataclass
class Served:
    """A running `snapshotter serve`: its base URL and the lines it printed."""

    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def serving(config: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`snapshotter --config CONFIG serve --port 0 ARGS` until the block ends; the URL it
    printed. Its output (stdout and stderr) is collected in ``lines``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "snapshotter", "--config", str(config), "serve", "--port", "0",
         *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    served = Served(url="", process=process)
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            served.lines.append(line)
            if line.startswith("dashboard on "):
                served.url = line.split()[2].rstrip("/")
                started.set()
        started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(started.is_set, "the dashboard to start", alive=None)
        if not served.url:
            process.wait()
            pytest.fail(f"serve exited ({process.returncode}):\n{served.output()}")
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            process.kill()
        reader.join(HANG_GUARD)


def page_problems(page: Any) -> list[str]:
    """What goes wrong on ``page`` from now on: console errors, failed requests and answers
    >= 400 (the list fills as they happen). The browser abandoning its favicon fetch when a
    test moves on to the next page is not a failure of ours."""
    problems: list[str] = []

    def failed(request: Any) -> None:
        if request.url.endswith("/favicon.svg") and request.failure == "net::ERR_ABORTED":
            return
        problems.append(f"failed: {request.url} ({request.failure})")

    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", failed)
    page.on("response", lambda r: problems.append(f"{r.status}: {r.url}")
            if r.status >= 400 else None)
    return problems


def local_get(url: str, **kwargs: Any) -> Any:
    """requests.get without the machine's proxy (the dashboard is on 127.0.0.1)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    return session.get(url, timeout=HANG_GUARD, **kwargs)
