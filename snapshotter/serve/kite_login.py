"""The daily Kite Connect login from a phone: the dashboard's "Log in to Kite" link, the
page Kite Connect redirects to (``/kite/callback``) and the list of accounts waiting for a
login (``/kite``; ``pending_logins`` for the other pages).

``GET /kite/login/ID`` makes a one-time ``state`` bound to the account (kept in this
process's memory for ``STATE_LIFETIME``) and redirects to Kite's login with
``redirect_params=account=ID&state=...``, which Kite hands back on its redirect. The
callback takes the state once, reads the account's ``api_secret`` from the config file
only then (no page needs it before), and exchanges the ``request_token``
through `snapshotter login`'s own code (kite.auth's Connect login a person completes,
``ManualConnectAuth``) into the same session cache. A refused exchange writes nothing.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from snapshotter import redact
from snapshotter.config import AccountConfig, Config
from snapshotter.errors import ConfigError, KiteError, LoginRejected, SnapshotterError
from snapshotter.kite.auth import CONNECT_LOGIN, KITE_VERSION
from snapshotter.kite.client import KiteClient
from snapshotter.kite.token_cache import CachedSession, TokenCache
from snapshotter.routes import PROFILE_PATH
from snapshotter.serve.database import snapshot
from snapshotter.sessions import IST, utc_now

if TYPE_CHECKING:
    from snapshotter.serve.app import Dashboard

log = logging.getLogger("snapshotter.serve")

STATE_LIFETIME = 15 * 60.0  # seconds a login link's state is accepted
MAX_STATES = 256  # outstanding states kept at most (the oldest are dropped)
SESSION_MODE = "connect"  # the session cache's mode of a Kite Connect access token


def login_accounts(config: Config) -> list[AccountConfig]:
    """The accounts a person can log in from the dashboard: Kite Connect apps (``manual``
    with an ``api_key``, or ``connect``, whose automated login may have failed)."""
    return [a for a in config.accounts if a.api_key and a.auth in ("manual", "connect")]


def _session(config: Config, user_id: str, now: datetime) -> CachedSession | None:
    """The account's cached Kite Connect session when it is still valid."""
    entry = TokenCache(config.state_dir).load(user_id)
    return entry if entry.valid_token(SESSION_MODE, now) else None


def _until(entry: CachedSession) -> str:
    if not entry.expires_at:
        return "until Kite ends it"
    expiry = datetime.fromisoformat(entry.expires_at).astimezone(IST)
    return f"until {expiry:%H:%M} IST on {expiry:%Y-%m-%d}"


def pending_logins(dashboard: Dashboard, conn: sa.Connection,
                   now: datetime | None = None) -> list[tuple[str, str]]:
    """(account, why) for each account that needs the dashboard's "Log in to Kite" today:
    a ``manual`` account with an ``api_key`` and no valid session, a ``connect`` account
    without one whose latest run failed (its automated login, most often) other than by
    Kite rejecting its credentials."""
    now = now or utc_now()
    pending = []
    for acc in login_accounts(dashboard.config):
        try:
            if _session(dashboard.config, acc.user_id, now) is not None:
                continue
        except SnapshotterError as exc:  # the state directory cannot be used safely
            pending.append((acc.user_id, redact.redact(str(exc))))
            continue
        if acc.auth == "manual":
            pending.append((acc.user_id, "no Kite session for today"))
            continue
        # Not after Kite rejected its configured credentials: runs do not try them again,
        # whatever the session cache holds, until the config changes.
        last = conn.execute(sa.text(
            "SELECT status, rejected_credentials FROM snapshots WHERE account = :account "
            "ORDER BY id DESC LIMIT 1"), {"account": acc.user_id}).first()
        if last is not None and last.status == "failed" and last.rejected_credentials is None:
            pending.append((acc.user_id, "its automated login failed; no Kite session"))
    return pending


class _States:
    """One-time login states: state -> (account, monotonic deadline)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._states: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def new(self, account: str) -> str:
        state = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            self._states = {k: v for k, v in self._states.items() if v[1] > now}
            while len(self._states) >= MAX_STATES:
                del self._states[next(iter(self._states))]
            self._states[state] = (account, now + STATE_LIFETIME)
        return state

    def take(self, state: str) -> tuple[str, float] | None:
        """The state's (account, deadline), forgotten as it is read (None: never made or
        already used)."""
        with self._lock:
            return self._states.pop(state, None)


class _Refusal(Exception):
    """A callback that is not taken: one line for the page, and its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


class _Redirected:
    """`snapshotter login`'s prompt, answered with the request_token Kite redirected the
    browser with (the person completed the login there)."""

    def __init__(self, request_token: str):
        self.request_token = request_token

    def secret(self, label: str) -> str:
        raise LoginRejected("the dashboard finishes Kite Connect logins only")

    def text(self, label: str) -> str:
        return self.request_token

    def show(self, message: str) -> None:
        pass


class _Deferred(TokenCache):
    """The session cache as the login writes it, held back until Kite's profile says whose
    session it is (``commit``): a refused request_token writes nothing (a stale or
    replayed link says nothing of the credentials), and a ``connect`` account keeps the
    rejection of its configured credentials that a run remembered (a person's login in a
    browser does not prove them right)."""

    def __init__(self, config: Config, account: AccountConfig):
        super().__init__(config.state_dir)
        self.keep_rejection = account.auth != "manual"
        self.session: CachedSession | None = None

    def save(self, user_id: str, entry: CachedSession) -> None:
        if entry.rejected_at is None and entry.token:
            self.session = replace(entry)

    def commit(self, user_id: str) -> CachedSession:
        assert self.session is not None
        entry = self.session
        if self.keep_rejection:
            before = self.load(user_id)
            entry.rejected_at, entry.rejected_reason = before.rejected_at, before.rejected_reason
            entry.rejected_fingerprint, entry.salt = before.rejected_fingerprint, before.salt
        super().save(user_id, entry)
        return entry


def _with_api_secret(config: Config, acc: AccountConfig) -> AccountConfig:
    """The account with its api_secret read from the config file now (no page needs it
    before); a refusal naming the key when it cannot be read."""
    index = config.accounts.index(acc)
    key = f"accounts[{index}].api_secret"
    if config.path is None:
        fresh = acc
    else:
        from snapshotter.config import load_config

        try:
            fresh = load_config(str(config.path), secrets=False,
                                secrets_of=acc.user_id).account(acc.user_id)
        except ConfigError as exc:
            lines = [p for p in exc.problems if key in p] or exc.problems[:1]
            raise _Refusal(f"cannot read the api_secret of {acc.user_id}: "
                           f"{redact.redact(lines[0])}", 500) from None
    if not fresh.api_secret:
        raise _Refusal(f"account {acc.user_id} has no api_secret in the config ({key}, or "
                       f"{key}_file): it is needed to finish a Kite Connect login", 500)
    redact.register(fresh.api_secret)
    return replace(acc, api_secret=fresh.api_secret)


def exchange(config: Config, acc: AccountConfig, request_token: str,
             clock: Callable[[], datetime] = utc_now) -> CachedSession:
    """Exchange Kite's request_token for the account's session and cache it, through
    `snapshotter login`'s Connect login (the checksum, ``/session/token``, the cache
    entry); the cached entry. Raises KiteError when Kite refuses or cannot be reached, and
    _Refusal when the api_secret cannot be read or the session is another user's."""
    redact.register(request_token)
    account = _with_api_secret(config, acc)
    cache = _Deferred(config, account)
    person = replace(account, auth="manual")  # kite.auth: ManualConnectAuth
    client = KiteClient(person, config.kite, cache, clock=clock,
                        prompt=_Redirected(request_token))
    try:
        client.login(cache.load(acc.user_id))
        # Whoever logged in at Kite's page owns the token: one app may serve several
        # accounts, and the phone may remember another user id.
        profile = client.get(PROFILE_PATH, "profile")
    finally:
        client.close()
    owner = str(profile.get("user_id") or "").upper() if isinstance(profile, dict) else ""
    if owner != acc.user_id:
        raise _Refusal(f"Kite logged in {owner or 'another user'}, not {acc.user_id}: nothing "
                       f"was cached; start again and log in to Kite as {acc.user_id}")
    entry = cache.commit(acc.user_id)
    log.info("account %s: logged in to Kite from the dashboard", acc.user_id)
    return entry


def _kite_said(exc: KiteError) -> str:
    """What Kite said, without the advice for a person at `snapshotter login`'s prompt."""
    text = redact.redact(exc.message)
    head = "Kite Connect refused the session ("
    if text.startswith(head) and "): " in text:
        return text[len(head):text.index("): ")]
    return text


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    config = dashboard.config
    states = _States()

    def account_for_login(user_id: str) -> AccountConfig:
        acc = next((a for a in config.accounts if a.user_id == user_id.strip().upper()), None)
        if acc is None:
            raise _Refusal(f"no account {user_id.strip().upper()[:20]} in the config", 404)
        if acc not in login_accounts(config):
            raise _Refusal(
                f"account {acc.user_id} does not log in through a Kite Connect app (auth: "
                f"{acc.auth}{'' if acc.api_key else ', no api_key'}): the dashboard logs in "
                "only manual or connect accounts with an api_key")
        return acc

    def refused(request: Request, refusal: _Refusal) -> Response:
        return dashboard.page(request, "kite_result.html", status_code=refusal.status,
                              title="Kite login refused", ok=False, message=refusal.message)

    def callback_url(request: Request) -> str:
        base = config.serve.url or str(request.base_url).rstrip("/")
        return f"{base}/kite/callback"

    async def kite_page(request: Request) -> Response:
        now = utc_now()
        with snapshot(dashboard.engine) as conn:
            pending = dict(pending_logins(dashboard, conn, now))
        rows = []
        for acc in login_accounts(config):
            entry = None if acc.user_id in pending else _session(config, acc.user_id, now)
            state = f"logged in {_until(entry)}" if entry else \
                pending.get(acc.user_id, "no Kite session")
            rows.append({"account": acc.user_id, "auth": acc.auth, "state": state,
                         "pending": acc.user_id in pending})
        return dashboard.page(request, "kite.html", title="Kite login", accounts=rows,
                              callback=callback_url(request))

    async def start_login(request: Request) -> Response:
        try:
            acc = account_for_login(request.path_params["account"])
        except _Refusal as refusal:
            return refused(request, refusal)
        state = states.new(acc.user_id)
        url = f"{config.kite.base_url}{CONNECT_LOGIN}?" + urlencode({
            "v": KITE_VERSION, "api_key": acc.api_key or "",
            "redirect_params": urlencode({"account": acc.user_id, "state": state})})
        return RedirectResponse(url, status_code=303)

    async def callback(request: Request) -> Response:
        query = request.query_params
        try:
            taken = states.take(query.get("state", ""))
            acc = account_for_login(query.get("account", ""))
            if taken is None or taken[0] != acc.user_id or taken[1] < time.monotonic():
                raise _Refusal(
                    f"this login of {acc.user_id} was not started here, has expired or was "
                    "already used: nothing was cached; start again from the dashboard's "
                    "Kite login page")
            if query.get("status") != "success" or query.get("action", "login") != "login":
                raise _Refusal(f"Kite did not complete the login of {acc.user_id}: nothing "
                               "was cached; start again from the dashboard")
            request_token = query.get("request_token", "")
            if not request_token:
                raise _Refusal(f"Kite's redirect for {acc.user_id} carries no request_token: "
                               "nothing was cached")
            try:
                await run_in_threadpool(exchange, config, acc, request_token)
            except LoginRejected as exc:
                raise _Refusal(
                    f"Kite refused the login of {acc.user_id} ({_kite_said(exc)}): nothing "
                    "was cached. A login works once and only for a few minutes: start again "
                    "from the dashboard; if it keeps failing, check the account's api_key "
                    "and api_secret in the config") from None
            except KiteError as exc:
                raise _Refusal(f"could not finish the login of {acc.user_id}: "
                               f"{_kite_said(exc)}; nothing was cached", 502) from None
            except SnapshotterError as exc:  # e.g. the state directory cannot be written
                raise _Refusal(f"could not cache the session of {acc.user_id}: "
                               f"{redact.redact(str(exc))}", 500) from None
        except _Refusal as refusal:
            log.warning("Kite login callback refused: %s", refusal.message)
            return refused(request, refusal)
        # A clean address: the request_token leaves the address bar and the history.
        return RedirectResponse(f"/kite/logged-in/{acc.user_id}", status_code=303)

    async def logged_in(request: Request) -> Response:
        try:
            acc = account_for_login(request.path_params["account"])
        except _Refusal as refusal:
            return refused(request, refusal)
        entry = _session(config, acc.user_id, utc_now())
        if entry is None:
            return dashboard.page(request, "kite_result.html", title="Kite login", ok=False,
                                  message=f"{acc.user_id} has no Kite session cached")
        return dashboard.page(
            request, "kite_result.html", title="Logged in to Kite", ok=True,
            message=f"Logged in to Kite as {acc.user_id}; today's runs use this session "
                    f"(valid {_until(entry)}).")

    return [
        Route("/kite", kite_page, name="kite"),
        Route("/kite/login/{account}", start_login, name="kite_login"),
        Route("/kite/callback", callback, name="kite_callback"),
        Route("/kite/logged-in/{account}", logged_in, name="kite_logged_in"),
    ]
