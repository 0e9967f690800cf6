"""Kite HTTP client: one route table, the error envelope, retries, login, data calls.

Every Kite URL, header and form field lives in this module: the web login is
unofficial and Zerodha has changed it without notice.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urljoin, urlparse
from zoneinfo import ZoneInfo

import pyotp
import requests

from snapshotter import redact
from snapshotter.cancel import Cancel, Cancelled
from snapshotter.config import AccountConfig, KiteConfig
from snapshotter.errors import (
    InputError,
    KiteError,
    KiteProtocolError,
    LoginRejected,
    PermissionDenied,
    TokenError,
    TransientKiteError,
)
from snapshotter.kite import http as kite_http
from snapshotter.kite.token_cache import CachedSession, TokenCache, credentials_fingerprint
from snapshotter.routes import PROFILE_PATH, ROUTES, WEB_PREFIX

log = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")  # Kite's times and its token expiry are IST

# Data routes (snapshotter/routes.py), relative to {base_url}/oms (web) or {api_root}
# (Kite Connect).
DATA_ROUTES = {route.name: route.connect_path for route in ROUTES}
PROFILE_ROUTE = PROFILE_PATH
WEB_DATA_PREFIX = WEB_PREFIX
WEB_LOGIN = "/api/login"
WEB_TWOFA = "/api/twofa"
CONNECT_LOGIN = "/connect/login"
CONNECT_FINISH = "/connect/finish"
CONNECT_SESSION_TOKEN = "/session/token"
KITE_VERSION = "3"
USER_AGENT = "kite-snapshotter/0.1 (+https://github.com/kite-snapshotter)"
TOTP_STEP = 30
MAX_REDIRECTS = 5  # hops a data GET may follow, within Kite's own origins

Clock = Callable[[], datetime]
CONNECT_RATE = 10  # requests per second per Kite Connect app (HTTP 429 beyond)


class Prompt(Protocol):
    """What `snapshotter login` asks a person (auth: manual)."""

    def secret(self, label: str) -> str: ...

    def text(self, label: str) -> str: ...

    def show(self, message: str) -> None: ...


class RateLimiter:
    """At most ``rate`` calls in any sliding one-second window, shared across threads."""

    def __init__(self, rate: int, window: float = 1.05):
        self.rate = rate
        self.window = window
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                while self._calls and now - self._calls[0] >= self.window:
                    self._calls.popleft()
                if len(self._calls) < self.rate:
                    self._calls.append(now)
                    return
                wait = self.window - (now - self._calls[0])
            time.sleep(max(wait, 0.001))


_app_limiters: dict[str, RateLimiter] = {}
_app_limiters_lock = threading.Lock()


def app_limiter(api_key: str) -> RateLimiter:
    with _app_limiters_lock:
        return _app_limiters.setdefault(api_key, RateLimiter(CONNECT_RATE))

_LOGIN_ERROR_TYPES = {"UserException", "TwoFAException"}
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def _parse_envelope(resp: requests.Response, account: str, *, login: bool = False) -> Any:
    """Kite's ``{"status": ..., "data"|"message"|"error_type"}`` -> data, or a typed error."""
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        kind = "an HTML page" if "html" in resp.headers.get("Content-Type", "").lower() \
            or resp.text.lstrip()[:1] == "<" else "an unparseable body"
        raise TransientKiteError(
            f"Kite answered {kind} instead of JSON (proxy or outage?)",
            account=account, status=status)
    if body.get("status") == "success" and status < 400:
        return body.get("data")
    message = str(body.get("message") or "no message")
    error_type = body.get("error_type") or None
    kwargs: dict[str, Any] = {"account": account, "status": status, "error_type": error_type}
    if error_type in _LOGIN_ERROR_TYPES or (login and error_type is None and status in (400, 403)):
        raise LoginRejected(message, **kwargs)
    if login and error_type == "TokenException":
        # A login step refused (e.g. "The login session has expired"): not a data session
        # to renew, and never a reason to start another login on our own.
        raise KiteProtocolError(message, **kwargs)
    if error_type == "TokenException" or (error_type is None and status == 403):
        raise TokenError(message, **kwargs)
    if status in _TRANSIENT_STATUS or error_type == "NetworkException":
        raise TransientKiteError(message, **kwargs)
    if error_type == "PermissionException":
        raise PermissionDenied(message, **kwargs)
    if error_type == "InputException" or status == 400:
        if login:
            raise LoginRejected(message, **kwargs)
        raise InputError(message, **kwargs)
    raise KiteError(message, **kwargs)


class KiteClient:
    """One account's connection to Kite: login (per its auth mode) and data calls."""

    def __init__(
        self,
        account: AccountConfig,
        kite: KiteConfig,
        cache: TokenCache,
        *,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
        prompt: Prompt | None = None,
        cancel: Cancel | None = None,
    ):
        self.account = account
        self.kite = kite
        self.cache = cache
        self.clock = clock
        self.cancel = cancel
        self.sleep = _cancellable(sleep, cancel, account.user_id) if cancel else sleep
        self.prompt = prompt
        self.logins = 0
        self._origins = {kite_http.origin(kite.base_url), kite_http.origin(kite.api_root)}
        self.http = kite_http.new_session()
        self.http.headers.update({"User-Agent": USER_AGENT, "X-Kite-Version": KITE_VERSION})
        redact.register(*account.secrets())
        self._token: str | None = None

    # -- HTTP with retries --------------------------------------------------------------

    def _request(self, method: str, url: str, label: str, *, login: bool = False,
                 retry: bool = True, read_redirect: bool = False, **kwargs: Any) -> Any:
        """Kite's answer to one call, retrying transient failures unless ``retry`` is off.

        With ``read_redirect`` a 3xx answer is returned as the response (its Location is
        read, not followed).
        """
        attempts = 1 + (self.kite.retries if retry else 0)
        for attempt in range(1, attempts + 1):
            try:
                resp = self._exchange(method, url, label, read_redirect=read_redirect, **kwargs)
                if read_redirect and 300 <= resp.status_code < 400:
                    return resp
                return _parse_envelope(resp, self.account.user_id, login=login)
            except Cancelled:
                raise
            except TransientKiteError as exc:
                error: KiteError = exc
            if attempt == attempts:
                raise error
            delay = self.kite.backoff * (2 ** (attempt - 1))
            delay += random.uniform(0, delay)
            log.info("account %s: %s; retry %d/%d in %.1fs", self.account.user_id,
                     redact.redact(str(error.message)), attempt, attempts - 1, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")

    def _exchange(self, method: str, url: str, label: str, *, read_redirect: bool,
                  **kwargs: Any) -> requests.Response:
        """One answer, never from another origin: a POST is never redirected (a resent
        password or TOTP code can lock the account); a GET follows redirects only
        within kite.base_url / kite.api_root."""
        user = self.account.user_id
        for _hop in range(MAX_REDIRECTS + 1):
            if kite_http.origin(url) not in self._origins:
                raise KiteProtocolError(
                    f"{label}: Kite redirected to another site ({kite_http.origin_text(url)}); "
                    "not following it", account=user)
            if self._cache_mode() == "connect" and url.startswith(self.kite.api_root):
                app_limiter(self.account.api_key or "").acquire()
            resp = kite_http.send(
                self.http, method, url, timeout=self.kite.timeout,
                max_bytes=int(self.kite.max_response_mb * 2**20), label=label, account=user,
                cancel=self.cancel, **kwargs)
            if not 300 <= resp.status_code < 400 or read_redirect:
                return resp
            if method != "GET":
                raise KiteProtocolError(
                    f"Kite answered the {label} request with a redirect "
                    f"(HTTP {resp.status_code}); not following it", account=user)
            location = resp.headers.get("Location")
            if not location:
                raise KiteProtocolError(
                    f"{label}: Kite answered HTTP {resp.status_code} without a Location",
                    account=user)
            url = urljoin(url, location)
        raise KiteProtocolError(f"{label}: more than {MAX_REDIRECTS} redirects; not "
                                "following them", account=user)

    # -- session handling ----------------------------------------------------------------

    def _cache_mode(self) -> str:
        return "connect" if self.account.auth == "connect" or (
            self.account.auth == "manual" and self.account.api_key) else "web"

    def _data_url(self, route: str) -> str:
        if self._cache_mode() == "connect":
            return f"{self.kite.api_root}{route}"
        return f"{self.kite.base_url}{WEB_DATA_PREFIX}{route}"

    def _auth_header(self, token: str) -> dict[str, str]:
        if self._cache_mode() == "connect":
            return {"Authorization": f"token {self.account.api_key}:{token}"}
        return {"Authorization": f"enctoken {token}",
                "Referer": f"{self.kite.base_url}/dashboard"}

    def token(self) -> str:
        """A usable token: the cached one, else a fresh login."""
        if self._token:
            return self._token
        entry = self.cache.load(self.account.user_id)
        cached = entry.valid_token(self._cache_mode(), self.clock())
        if cached:
            self._token = cached
            return cached
        return self.login()

    def login(self) -> str:
        """Log in afresh (per the account's auth mode) and cache the token."""
        user = self.account.user_id
        manual = self.account.auth == "manual"
        if manual and self.prompt is None:
            entry = self.cache.load(user)
            if entry.token and entry.mode == self._cache_mode() and entry.expires_at:
                expired = datetime.fromisoformat(entry.expires_at).astimezone(IST)
                raise LoginRejected(
                    f"session expired at {expired:%Y-%m-%d %H:%M} IST: log in again with "
                    f"`snapshotter login --account {user}`", account=user)
            raise LoginRejected(
                f"no valid session: run `snapshotter login --account {user}`", account=user)
        if not manual and self.prompt is None:
            # Scheduled runs never retry rejected credentials; `snapshotter login` (a person
            # at the prompt) is a deliberate try, and its success clears the rejection.
            self._refuse_after_rejection()
        try:
            if manual and self._cache_mode() == "connect":
                token, expires = self._manual_connect_login()
            elif self._cache_mode() == "connect":
                token, expires = self._connect_login()
            else:
                token, expires = self._web_login(), None
        except LoginRejected as exc:
            self._remember_rejection(exc)
            raise
        redact.register(token)
        now = self.clock()
        self.cache.update(user, mode=self._cache_mode(), token=token,
                          created_at=now.isoformat(),
                          expires_at=expires.isoformat() if expires else None,
                          rejected_at=None, rejected_reason=None, rejected_fingerprint=None)
        self._token = token
        self.logins += 1
        log.info("account %s: logged in (%s)", user, self._cache_mode())
        return token

    def _fingerprint(self, entry: CachedSession) -> str:
        a = self.account
        # api_key too (only when set, so web accounts' fingerprints are unchanged): a wrong
        # api_key is rejected like a wrong api_secret, and fixing it must allow a new try.
        app = (a.api_key,) if a.api_key else ()
        return credentials_fingerprint(entry.salt or "", a.password, a.totp_secret,
                                       a.api_secret, *app)

    def _refuse_after_rejection(self) -> None:
        from snapshotter.kite.token_cache import rejection_advice

        entry = self.cache.load(self.account.user_id)
        if entry.rejected_at and entry.rejected_fingerprint == self._fingerprint(entry):
            keys = "password/totp_secret" + (
                "/api_key/api_secret" if self._cache_mode() == "connect" else "")
            advice = rejection_advice(self.account.user_id, keys, entry.rejected_reason)
            raise LoginRejected(
                f"Kite rejected these credentials at {entry.rejected_at} "
                f"({entry.rejected_reason}); not trying again to avoid locking the account: "
                f"{advice}", account=self.account.user_id)

    def _remember_rejection(self, exc: LoginRejected) -> None:
        entry = self.cache.load(self.account.user_id)
        entry.salt = entry.salt or secrets.token_hex(16)
        entry.rejected_at = self.clock().isoformat()
        entry.rejected_reason = exc.message
        entry.rejected_fingerprint = self._fingerprint(entry)
        self.cache.save(self.account.user_id, entry)

    def _totp_code(self) -> str:
        """A fresh TOTP code, waiting for the next 30 s step if this one was already used."""
        secret = self.account.totp_secret
        if not secret:
            raise LoginRejected("no totp_secret configured", account=self.account.user_id)
        totp = pyotp.TOTP(secret)
        entry = self.cache.load(self.account.user_id)
        step = int(self.clock().timestamp()) // TOTP_STEP
        if entry.last_totp_step > step + 2:
            # Recorded under a clock set ahead (e.g. a libfaketime rehearsal): Kite never
            # accepted that code, so it is no reason to wait.
            log.warning("account %s: ignoring a TOTP step recorded in the future",
                        self.account.user_id)
        elif step <= entry.last_totp_step:
            wait = (entry.last_totp_step + 1) * TOTP_STEP - self.clock().timestamp() + 0.5
            log.info("account %s: waiting %.0fs for a fresh TOTP code", self.account.user_id, wait)
            self.sleep(min(max(wait, 0), 2 * TOTP_STEP + 1))
            step = int(self.clock().timestamp()) // TOTP_STEP
            if step <= entry.last_totp_step:  # a frozen or rewound clock: never replay a code
                raise TransientKiteError(
                    "the clock did not advance to a fresh TOTP step; not resending a used code",
                    account=self.account.user_id)
        self.cache.update(self.account.user_id, last_totp_step=step)
        return totp.at(step * TOTP_STEP)

    def _web_login(self) -> str:
        """PROTOCOL.md §1: POST /api/login, then /api/twofa with a TOTP; enctoken cookie."""
        user, base = self.account.user_id, self.kite.base_url
        password: str | None = self.account.password
        if not password and self.prompt is not None:
            password = self.prompt.secret(f"Kite password for {user}: ")
            redact.register(password)
        data = self._request("POST", f"{base}{WEB_LOGIN}", "login", login=True,
                             data={"user_id": user, "password": password})
        if not isinstance(data, dict) or not data.get("request_id"):
            raise KiteProtocolError("login answer has no request_id (did Kite change its login?)",
                                    account=user)
        twofa_type = str(data.get("twofa_type") or "totp")
        if twofa_type not in ("totp", "app_code"):
            raise LoginRejected(
                f"account uses 2FA type {twofa_type!r}; enable external TOTP in Kite",
                account=user)
        if self.account.totp_secret or self.prompt is None:
            code = self._totp_code()
        else:
            code = self.prompt.text(f"6-digit code from your authenticator app for {user}: ")
        redact.register(code)
        # Never retried: a resent code is a replay and may count as a failed 2FA.
        self._request("POST", f"{base}{WEB_TWOFA}", "2FA", login=True, retry=False, data={
            "user_id": user, "request_id": data["request_id"], "twofa_value": code,
            "twofa_type": twofa_type,
        })
        token = self.http.cookies.get("enctoken")
        if not token:
            raise KiteProtocolError("2FA succeeded but no enctoken cookie was set", account=user)
        return token

    def _connect_login(self) -> tuple[str, datetime]:
        """PROTOCOL.md §2: connect/login -> web login -> connect/finish -> session/token."""
        user, base = self.account.user_id, self.kite.base_url
        api_key = self.account.api_key or ""
        resp = self._request("GET", f"{base}{CONNECT_LOGIN}?" + urlencode(
            {"v": KITE_VERSION, "api_key": api_key}), "connect/login", login=True,
            read_redirect=True)
        location = resp.headers.get("Location", "") if isinstance(resp, requests.Response) else ""
        sess_id = parse_qs(urlparse(location).query).get("sess_id", [""])[0]
        if not sess_id:
            raise KiteProtocolError("connect/login gave no sess_id", account=user)
        self._web_login()
        request_token = self._finish_connect(api_key, sess_id)
        return self.exchange_request_token(request_token)

    def _finish_connect(self, api_key: str, sess_id: str) -> str:
        user, base = self.account.user_id, self.kite.base_url
        resp = self._request("GET", f"{base}{CONNECT_FINISH}?" + urlencode(
            {"v": KITE_VERSION, "api_key": api_key, "sess_id": sess_id}),
            "connect/finish", login=True, read_redirect=True)
        location = resp.headers.get("Location", "") if isinstance(resp, requests.Response) else ""
        request_token = parse_qs(urlparse(location).query).get("request_token", [""])[0]
        if not request_token:
            raise KiteProtocolError("connect/finish gave no request_token", account=user)
        return request_token

    def login_url(self) -> str:
        return f"{self.kite.base_url}{CONNECT_LOGIN}?" + urlencode(
            {"v": KITE_VERSION, "api_key": self.account.api_key or ""})

    def _manual_connect_login(self) -> tuple[str, datetime]:
        assert self.prompt is not None
        self.prompt.show(f"Open this URL, log in to Kite, then paste the address you were "
                         f"redirected to (or just its request_token):\n  {self.login_url()}")
        answer = self.prompt.text("Redirected URL or request_token: ").strip()
        token = parse_qs(urlparse(answer).query).get("request_token", [""])[0] or answer
        if not token or "/" in token or "=" in token:
            raise LoginRejected("no request_token in what was pasted",
                                account=self.account.user_id)
        return self.exchange_request_token(token)

    def exchange_request_token(self, request_token: str) -> tuple[str, datetime]:
        """POST /session/token with the sha256 checksum; access token valid till 06:00 IST."""
        api_key, api_secret = self.account.api_key or "", self.account.api_secret or ""
        redact.register(request_token)
        checksum = hashlib.sha256((api_key + request_token + api_secret).encode()).hexdigest()
        try:
            data = self._request("POST", f"{self.kite.api_root}{CONNECT_SESSION_TOKEN}",
                                 "session/token", login=True, retry=False,
                                 data={"api_key": api_key, "request_token": request_token,
                                       "checksum": checksum})
        except KiteProtocolError as exc:
            if exc.error_type != "TokenException":
                raise
            if self.prompt is not None:  # `snapshotter login`: a person pasted it
                hint = ("check api_key and api_secret in the config, and paste a fresh "
                        "request_token: one works once and only for a few minutes")
            else:
                hint = ("check api_key and api_secret in the config; not trying again "
                        "until they change")
            raise LoginRejected(
                f"Kite Connect refused the session ({exc.message}): {hint}",
                account=self.account.user_id, status=exc.status,
                error_type=exc.error_type) from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise KiteProtocolError("session/token gave no access_token",
                                    account=self.account.user_id)
        redact.register(str(token))
        return str(token), connect_token_expiry(self.clock())

    # -- data ----------------------------------------------------------------------------

    def get(self, route: str, label: str | None = None) -> Any:
        token = self.token()
        return self._request("GET", self._data_url(route), label or route,
                             headers=self._auth_header(token))

    def fetch_all(self) -> dict[str, Any]:
        """All data routes concurrently; on an expired session, log in again once.

        A failure after some routes answered carries their data as the exception's
        ``partial_payloads`` (route name -> data).
        """
        try:
            return self._fetch_routes()
        except TokenError as exc:
            answered = getattr(exc, "partial_payloads", None) or {}
            if self.account.auth == "manual":
                self.cache.clear_token(self.account.user_id)
                raise _with_partial(LoginRejected(
                    "session expired or ended by Kite: log in again with `snapshotter login "
                    f"--account {self.account.user_id}`", account=self.account.user_id),
                    answered) from None
        log.info("account %s: session expired, logging in again", self.account.user_id)
        self._token = None
        self.cache.clear_token(self.account.user_id)
        try:
            self.login()
            return self._fetch_routes()
        except KiteError as exc:
            raise _with_partial(
                exc, {**answered, **(getattr(exc, "partial_payloads", None) or {})}) from None

    def check_session(self) -> bool:
        """Does the cached session still work? Never logs in (for auth: manual)."""
        entry = self.cache.load(self.account.user_id)
        token = entry.valid_token(self._cache_mode(), self.clock())
        if not token:
            return False
        self._token = token
        try:
            self._request("GET", self._data_url(PROFILE_ROUTE), "profile",
                          headers=self._auth_header(token))
        except TokenError:
            return False
        return True

    def _fetch_routes(self) -> dict[str, Any]:
        self.token()
        with ThreadPoolExecutor(max_workers=len(DATA_ROUTES),
                                thread_name_prefix=f"kite-{self.account.user_id}") as pool:
            futures = {name: pool.submit(self.get, route, name)
                       for name, route in DATA_ROUTES.items()}
        payloads: dict[str, Any] = {}
        error: BaseException | None = None
        missing: KiteError | None = None
        for name, future in futures.items():
            failure = future.exception()
            if failure is not None:
                error = error or failure
            elif future.result() is None:  # never store an empty snapshot for no answer
                missing = missing or KiteProtocolError(
                    f"{name}: Kite answered success without data", account=self.account.user_id)
            else:
                payloads[name] = future.result()
        error = error or missing
        if error is not None:
            raise _with_partial(error, payloads)
        return payloads

    def close(self) -> None:
        self.http.close()


def _with_partial(error: BaseException, payloads: dict[str, Any]) -> BaseException:
    """``error`` carrying the payloads of the routes that did answer (when any did)."""
    if payloads and isinstance(error, KiteError):
        error.partial_payloads = payloads  # type: ignore[attr-defined]
    return error


def _cancellable(sleep: Callable[[float], None], cancel: Cancel,
                 account: str) -> Callable[[float], None]:
    """``sleep`` that ends early, raising ``Cancelled``, when the run is cancelled."""
    def sleep_unless_cancelled(seconds: float) -> None:
        cancel.check(account)
        if sleep is time.sleep:
            cancel.sleep(seconds, account)
        else:  # an injected clock (tests): sleep, then notice a cancel
            sleep(seconds)
            cancel.check(account)
    return sleep_unless_cancelled


def connect_token_expiry(now: datetime) -> datetime:
    """Kite Connect access tokens expire at 06:00 IST the next morning."""
    local = now.astimezone(IST)
    expiry = local.replace(hour=6, minute=0, second=0, microsecond=0)
    if local >= expiry:
        expiry += timedelta(days=1)
    return expiry
