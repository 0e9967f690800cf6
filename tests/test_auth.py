"""Login modes as classes (kite.auth), the one fingerprint of rejected credentials shared
by the session cache and the ledger, and a login that reads the session cache once."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
import sqlalchemy as sa

from snapshotter.config import AccountConfig, KiteConfig, Secret
from snapshotter.errors import LoginRejected
from snapshotter.kite.auth import (
    Auth,
    ConnectAuth,
    ManualConnectAuth,
    ManualWebAuth,
    WebAuth,
    auth_for,
    credentials_fingerprint,
)
from snapshotter.kite.client import KiteClient
from snapshotter.kite.token_cache import CachedSession, TokenCache
from snapshotter.pipeline.logins import manual_accounts
from snapshotter.simulator import KiteSimulator, SimAccount, SimApp, demo_accounts
from tests.conftest import (
    LOCAL_ONLY,
    ShiftedClock,
    _offset_to,
    config_dict,
    run_cli,
    write_config,
)
from tests.test_kite_client import Clock
from tests.test_login_modes import rows

API_KEY = "snapapp7kq2m"
API_SECRET = "s3cret-of-the-app-9f8e7d6c5b4a"


def _execute(url: str, sql: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _logins_sent(sim: KiteSimulator, user: str) -> int:
    return len([p for _, p, u in sim.requests_log
                if u == user and p in ("/api/login", "/api/twofa")])


def _account(auth: str = "web", api_key: str | None = None, **changes: str) -> AccountConfig:
    values = {"password": "pw-1", "totp_secret": "JBSWY3DPEHPK3PXP", "api_secret": None,
              **changes}
    return AccountConfig(
        user_id="AB1234", auth=auth, api_key=api_key,
        password=Secret(values["password"]) if values["password"] else None,
        totp_secret=Secret(values["totp_secret"]) if values["totp_secret"] else None,
        api_secret=Secret(values["api_secret"]) if values["api_secret"] else None)


# -- the factory --------------------------------------------------------------------------------


@pytest.mark.parametrize(("auth", "api_key", "kind", "session_mode", "needs_person"), [
    ("web", None, WebAuth, "web", False),
    ("connect", API_KEY, ConnectAuth, "connect", False),
    ("manual", None, ManualWebAuth, "web", True),
    ("manual", API_KEY, ManualConnectAuth, "connect", True),
])
def test_each_login_mode_is_one_class_chosen_from_the_config(
        auth: str, api_key: str | None, kind: type[Auth], session_mode: str,
        needs_person: bool) -> None:
    account = _account(auth, api_key)
    mode = auth_for(account)
    assert type(mode) is kind
    assert mode.session_mode == session_mode and mode.needs_person is needs_person
    assert ("api_secret" in mode.rejection_keys) is (session_mode == "connect")
    headers = mode.headers(KiteConfig(base_url="https://kite.example"), "tok")
    assert headers["Authorization"] == (f"token {API_KEY}:tok" if session_mode == "connect"
                                        else "enctoken tok")
    assert manual_accounts([account]) == ([account] if needs_person else [])


# -- one fingerprint ------------------------------------------------------------------------------


def test_the_fingerprint_changes_with_any_credential_and_hides_them() -> None:
    base = credentials_fingerprint(_account("connect", API_KEY, api_secret=API_SECRET))
    assert base is not None and len(base) == 64
    for changed in (_account("connect", API_KEY, api_secret=API_SECRET, password="pw-2"),
                    _account("connect", API_KEY, api_secret=API_SECRET,
                             totp_secret="JBSWY3DPEHPK3PXQ"),
                    _account("connect", API_KEY, api_secret="another-secret"),
                    _account("connect", "anotherkey", api_secret=API_SECRET)):
        assert credentials_fingerprint(changed) not in (None, base)
    assert credentials_fingerprint(
        _account("connect", API_KEY, api_secret=API_SECRET)) == base
    # A person types a manual account's credentials; a password alone is guessable.
    assert credentials_fingerprint(_account("manual")) is None
    assert credentials_fingerprint(_account(totp_secret="")) is None


def test_the_fingerprint_is_the_ledgers_digest_of_before() -> None:
    """Rejections the ledger recorded before still match (replicas rely on them)."""
    account = _account()
    before = hashlib.sha256(b"kite-snapshotter:AB1234")
    for value in ("pw-1", "JBSWY3DPEHPK3PXP", "", ""):
        before.update(b"\0" + value.encode())
    assert credentials_fingerprint(account) == before.hexdigest()


def test_the_cache_marker_and_the_ledger_hold_one_fingerprint(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    bad = sim_accounts[0]
    state = tmp_path / "state"
    data = config_dict(sim, [bad], database_url, state)
    data["accounts"][0]["password"] = "not-the-password"
    cfg = write_config(tmp_path / "config.yaml", data)
    first = run_cli("--config", str(cfg), "run")
    assert first.returncode == 78, first.stderr
    marker_file = state / "sessions" / f"{bad.user_id}.json"
    marker = json.loads(marker_file.read_text(encoding="utf-8"))
    ledger = rows(database_url, "SELECT rejected_credentials FROM snapshots")
    assert [r["rejected_credentials"] for r in ledger] == [marker["rejected_fingerprint"]]
    assert marker["rejected_fingerprint"] and marker["salt"] is None
    for secret in ("not-the-password", bad.totp_secret):
        assert secret not in marker_file.read_text(encoding="utf-8")

    # The cache's copy alone refuses the same credentials, and records them as rejected
    # in the ledger again, with the same fingerprint.
    _execute(database_url, "UPDATE snapshots SET rejected_credentials = NULL")
    sent = _logins_sent(sim, bad.user_id)
    again = run_cli("--config", str(cfg), "run")
    assert again.returncode == 78 and "not trying again" in again.stderr, again.stderr
    assert _logins_sent(sim, bad.user_id) == sent
    ledger = rows(database_url, "SELECT rejected_credentials FROM snapshots "
                   "WHERE rejected_credentials IS NOT NULL")
    assert [r["rejected_credentials"] for r in ledger] == [marker["rejected_fingerprint"]]


def _old_marker(state: Path, user: str, password: str, totp_secret: str) -> None:
    """A rejection remembered by the code before the one fingerprint: a digest salted
    with a random salt of its own file, over password, totp_secret, api_secret."""
    salt = secrets.token_hex(16)
    digest = hashlib.sha256(salt.encode())
    for value in (password, totp_secret, ""):
        digest.update(b"\0" + value.encode())
    TokenCache(state)  # the private directories
    path = state / "sessions" / f"{user}.json"
    path.write_text(json.dumps({
        "mode": "web", "token": None, "created_at": None, "expires_at": None,
        "last_totp_step": 0, "rejected_at": "2026-01-02T10:00:00+05:30",
        "rejected_reason": "Invalid `password`.", "rejected_fingerprint": digest.hexdigest(),
        "salt": salt}), encoding="utf-8")
    path.chmod(0o600)


@pytest.mark.parametrize("since", ["unchanged", "fixed"])
def test_a_marker_from_before_the_one_fingerprint_still_refuses_the_same_credentials(
        since: str, sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    """Documented choice: an old marker is read with its own salt, so it refuses exactly
    the credentials it refused before (not fewer), and lets fixed ones log in."""
    acc = sim_accounts[0]
    state = tmp_path / "state"
    rejected_password = acc.password if since == "unchanged" else "the-old-password"
    _old_marker(state, acc.user_id, rejected_password, acc.totp_secret)
    cfg = write_config(tmp_path / "config.yaml", config_dict(sim, [acc], database_url, state))
    result = run_cli("--config", str(cfg), "run")
    assert "Traceback" not in result.stderr
    if since == "unchanged":
        assert result.returncode == 78, result.stderr
        assert "not trying again" in result.stderr
        assert _logins_sent(sim, acc.user_id) == 0
        return
    assert result.returncode == 0, result.stderr
    assert _logins_sent(sim, acc.user_id) == 2
    entry = TokenCache(state).load(acc.user_id)
    assert entry.token and entry.rejected_at is None and entry.salt is None


# -- the session cache is read once per login ---------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(sim_accounts: list[SimAccount], clock: Clock) -> Iterator[KiteSimulator]:
    """One account, on the test's clock, with a Kite Connect app."""
    with KiteSimulator(sim_accounts[:1], clock=clock, apps=[SimApp(API_KEY, API_SECRET)]
                       ) as sim:
        yield sim


class CountedCache(TokenCache):
    """The session cache, counting reads and noting what each write happened after."""

    def __init__(self, directory: Path, server: KiteSimulator):
        super().__init__(directory)
        self.server = server
        self.loads = 0
        self.saves: list[tuple[int, bool]] = []  # (2FA requests sent so far, has a token)

    def load(self, user_id: str) -> CachedSession:
        self.loads += 1
        return super().load(user_id)

    def save(self, user_id: str, entry: CachedSession) -> None:
        sent = len([p for _, p, _ in self.server.requests_log if p == "/api/twofa"])
        self.saves.append((sent, entry.token is not None))
        super().save(user_id, entry)


def _client(server: KiteSimulator, acc: SimAccount, clock: Clock, cache: TokenCache,
            auth: str = "web", **overrides: str) -> KiteClient:
    account = AccountConfig(
        user_id=acc.user_id, password=Secret(acc.password),
        totp_secret=Secret(overrides.get("totp_secret", acc.totp_secret)), auth=auth,
        api_key=API_KEY if auth == "connect" else None,
        api_secret=Secret(API_SECRET) if auth == "connect" else None)
    kite = KiteConfig(base_url=server.base_url, api_root=server.base_url, timeout=2,
                      retries=1, backoff=0.01)
    return KiteClient(account, kite, cache, clock=clock, sleep=clock.sleep)


@pytest.mark.parametrize("auth", ["web", "connect"])
def test_a_login_reads_the_session_cache_once_and_saves_the_totp_step_first(
        auth: str, server: KiteSimulator, sim_accounts: list[SimAccount], clock: Clock,
        tmp_path: Path) -> None:
    one = sim_accounts[0]
    cache = CountedCache(tmp_path, server)
    client = _client(server, one, clock, cache, auth)
    assert client.fetch_all()["holdings"]
    assert cache.loads == 1
    # The TOTP step is on disk before the 2FA request goes out; then the session.
    assert cache.saves == [(0, False), (1, True)]

    # Kite ends the session: the same client logs in again without reading the cache.
    server.fail_next(1, "token", "/portfolio/holdings" if auth == "connect"
                     else "/oms/portfolio/holdings")
    clock.now += timedelta(seconds=60)
    assert client.fetch_all()["holdings"] and client.logins == 2
    assert cache.loads == 1
    assert cache.saves[2:] == [(1, False), (1, False), (2, True)]

    # A later run reuses the session: one read, nothing written.
    later = CountedCache(tmp_path, server)
    assert _client(server, one, clock, later, auth).fetch_all()["holdings"]
    assert later.loads == 1 and later.saves == []


def test_a_rejected_login_reads_once_and_writes_the_step_then_the_rejection(
        server: KiteSimulator, sim_accounts: list[SimAccount], clock: Clock,
        tmp_path: Path) -> None:
    one = sim_accounts[0]
    cache = CountedCache(tmp_path, server)
    client = _client(server, one, clock, cache, totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    with pytest.raises(LoginRejected, match="Invalid TOTP"):
        client.fetch_all()
    assert cache.loads == 1 and cache.saves == [(0, False), (1, False)]
    entry = TokenCache(tmp_path).load(one.user_id)
    assert entry.rejected_fingerprint == credentials_fingerprint(client.account)


# -- no 2FA code from a wrong clock -------------------------------------------------------------


def _faketime(lib: str, offset: int) -> dict[str, str]:
    return {**LOCAL_ONLY, "LD_PRELOAD": lib, "FAKETIME": f"{offset:+d}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "0"}


@pytest.mark.parametrize(("offset", "tolerance", "refused"), [
    (3600, None, True),  # a rehearsal under libfaketime, against Kite by mistake
    (-45, None, True),   # a clock a minute and a half of TOTP steps behind
    (5, None, False),    # within the default 10 s: the code is sent, and accepted
    (5, 2, True),        # kite.clock_tolerance is honoured
])
def test_a_clock_off_kites_sends_no_2fa_code_and_is_not_a_rejection(
        faketime_lib: str, sim: KiteSimulator, sim_accounts: list[SimAccount],
        database_url: str, tmp_path: Path, offset: int, tolerance: int | None,
        refused: bool) -> None:
    """The run's clock shifted (libfaketime), the simulator's not: the clock is compared
    with the Date of Kite's login answer before a TOTP code is made."""
    acc = sim_accounts[0]
    state = tmp_path / "state"
    data = config_dict(sim, [acc], database_url, state)
    if tolerance is not None:
        data["kite"]["clock_tolerance"] = tolerance
    cfg = str(write_config(tmp_path / "config.yaml", data))
    shifted = run_cli("--config", cfg, "run", env=_faketime(faketime_lib, offset))
    assert "Traceback" not in shifted.stderr
    assert ("POST", "/api/login", acc.user_id) in sim.requests_log
    if not refused:
        assert shifted.returncode == 0, shifted.stderr
        assert sim.twofa_count[acc.user_id] == 1
        return
    assert shifted.returncode == 1, shifted.stderr  # a failure to retry, not 78
    errors = [line for line in shifted.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, shifted.stderr
    said = re.fullmatch(rf"error: account {acc.user_id}: the clock is (\d+) s off Kite's; "
                        r"no 2FA code sent \(.*\)", errors[0])
    assert said and abs(int(said[1]) - abs(offset)) <= 2, errors[0]
    assert not [e for e in sim.requests_log if e[1] == "/api/twofa"]  # no code spent
    assert not sim.twofa_failures
    entry = TokenCache(state).load(acc.user_id)
    assert entry.rejected_at is None and entry.last_totp_step == 0
    ledger = rows(database_url, "SELECT status, rejected_credentials FROM snapshots")
    assert ledger == [{"status": "failed", "rejected_credentials": None}]

    # Nothing was remembered as a rejection: with the clock right, the next run logs in.
    fixed = run_cli("--config", cfg, "run", env=LOCAL_ONLY)
    assert fixed.returncode == 0, fixed.stderr
    assert sim.twofa_count[acc.user_id] == 1 and not sim.twofa_failures


# -- a rejection names the config key Kite refused ------------------------------------------------


def _wrong(field: str, acc: SimAccount, other: SimAccount) -> dict[str, Any]:
    entry: dict[str, Any] = {"user_id": acc.user_id, "password": acc.password,
                             "totp_secret": acc.totp_secret}
    if field in ("api_key", "api_secret"):
        entry.update(auth="connect", api_key=API_KEY, api_secret=API_SECRET)
    wrong = {"user_id": "ZZ9999", "password": "not-the-password",
             "totp_secret": other.totp_secret, "api_key": "nosuchapp1",
             "api_secret": "not-the-app-secret-7a6b5c"}
    entry[field] = wrong[field]
    return entry


@pytest.mark.parametrize(("field", "advice"), [
    ("user_id", "fix user_id in the config"),
    ("password", "fix password in the config"),
    ("totp_secret", "fix totp_secret in the config"),
    ("api_key", "fix api_key in the config"),
    ("api_secret", "check api_secret in the config"),
])
def test_a_rejection_names_the_config_key_kite_refused(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path, field: str, advice: str) -> None:
    acc, other = sim_accounts[0], sim_accounts[1]
    sim.add_app(SimApp(API_KEY, API_SECRET))
    data = config_dict(sim, [], database_url, tmp_path / "state")
    data["accounts"] = [_wrong(field, acc, other)]
    user = data["accounts"][0]["user_id"]
    cfg = str(write_config(tmp_path / "config.yaml", data))
    first = run_cli("--config", cfg, "run", env=LOCAL_ONLY)
    assert first.returncode == 78, first.stderr
    [line] = [x for x in first.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: account {user}: ") and advice in line, line
    assert "password/totp_secret" not in line
    [stored] = rows(database_url, "SELECT error FROM snapshots")
    assert advice in stored["error"]
    # The next run remembers the rejection, contacts no one, and names the same key.
    seen = len(sim.requests_log)
    again = run_cli("--config", cfg, "run", env=LOCAL_ONLY)
    assert again.returncode == 78, again.stderr
    [line] = [x for x in again.stderr.splitlines() if x.startswith("error:")]
    assert "not trying again" in line and advice.replace("check", "fix") in line, line
    assert len(sim.requests_log) == seen


def test_the_docs_rehearsal_recipe_runs_against_the_simulator(
        faketime_lib: str, tmp_path: Path) -> None:
    """docs/operations.md's libfaketime rehearsal, as written (on a free port): the
    simulator shares the shifted clock, so every account logs in and is stored."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    recipe = doc.split("To rehearse a schedule", 1)[1].split("```sh", 1)[1]
    recipe = recipe.split("```", 1)[0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert "--port 18765" in recipe
    bin_dir = str(Path(sys.executable).parent)
    done = subprocess.run(["sh", "-c", recipe.replace("18765", str(port))],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env={**os.environ, **LOCAL_ONLY,
                               "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("2026-11-27: ok, final") == 3, done.stdout
    assert "clock is" not in done.stderr
# -- a refused code whose TOTP step this process did not hold -----------------------------------


def test_login_without_the_database_takes_a_refused_code_as_transient(
        faketime_lib: str, tmp_path: Path) -> None:
    """`snapshotter login` when the database cannot be opened has nowhere to reserve the
    TOTP step: another login (here the user's browser) sent that step's code first, Kite
    refuses the same code, and that is no rejection of the credentials (measured before:
    exit 78, remembered, every run refused until the next `login`). The code is tried
    once more with the next step and the login succeeds."""
    start = datetime(2026, 11, 27, 11, 30, 1, tzinfo=UTC)  # a step's second second
    offset = _offset_to(start)
    acc = demo_accounts(1, seed=64)[0]
    with KiteSimulator([acc], clock=ShiftedClock(offset)) as sim:
        # The browser: password, then the code of the current step.
        browser = requests.Session()
        login = browser.post(f"{sim.base_url}/api/login", timeout=5,
                             data={"user_id": acc.user_id, "password": acc.password})
        request_id = login.json()["data"]["request_id"]
        code = pyotp.TOTP(acc.totp_secret).at(ShiftedClock(offset)())
        assert browser.post(f"{sim.base_url}/api/twofa", timeout=5, data={
            "user_id": acc.user_id, "request_id": request_id, "twofa_value": code,
            "twofa_type": login.json()["data"]["twofa_type"]}).ok
        cfg = write_config(tmp_path / "config.yaml", config_dict(
            sim, [acc], f"sqlite:///{tmp_path / 'no-such-dir' / 'snapshots.db'}",
            tmp_path / "state"))
        result = run_cli("--config", str(cfg), "login", "--account", acc.user_id, env={
            **LOCAL_ONLY, "LD_PRELOAD": faketime_lib, "FAKETIME": f"{offset:+d}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "0"})
        twofas = sim.twofa_count[acc.user_id]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "logging in without it" in result.stderr
    assert "could not be reserved" in result.stderr, result.stderr
    assert f"{acc.user_id}: logged in" in result.stdout
    assert twofas == 2  # the browser's and the retried one
    entry = TokenCache(tmp_path / "state").load(acc.user_id)
    assert entry.token and entry.rejected_at is None
