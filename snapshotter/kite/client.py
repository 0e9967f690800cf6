"""Kite HTTP client: the data route table, retries, redirects within Kite, the data calls.

Logins are kite.auth's (one class per login mode); every data URL and header lives here.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

from snapshotter import redact
from snapshotter.cancel import Cancel, Cancelled
from snapshotter.config import AccountConfig, KiteConfig
from snapshotter.errors import KiteError, KiteProtocolError, TokenError, TransientKiteError
from snapshotter.kite import http as kite_http
from snapshotter.kite.auth import KITE_VERSION, Prompt, ReserveTotpStep, auth_for
from snapshotter.kite.token_cache import CachedSession, TokenCache
from snapshotter.routes import (
    HISTORICAL_MAX_DAYS,
    HISTORICAL_PATH,
    PROFILE_PATH,
    ROUTES,
    WEB_PREFIX,
)

log = logging.getLogger(__name__)

USER_AGENT = "kite-snapshotter/0.1 (+https://github.com/kite-snapshotter)"
MAX_REDIRECTS = 5  # hops a data GET may follow, within Kite's own origins
# Sent with every request to kite.base_url, as the web app and its clients do
# (docs/kite-protocol.md section 1).
USER_ID_HEADER = "X-Kite-Userid"

Clock = Callable[[], datetime]


class KiteClient:
    """One account's connection to Kite: login (per its auth mode) and data calls.

    The session cache is read once per client (the first token or login) and the loaded
    entry is passed along; the login saves it (kite.auth)."""

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
        reserve_totp_step: ReserveTotpStep | None = None,
        route_pool: Executor | None = None,
        shared_connections: kite_http.Connections | None = None,
    ):
        self.account = account
        self.kite = kite
        self.cache = cache
        self.clock = clock
        self.cancel = cancel
        self.sleep = _cancellable(sleep, cancel, account.user_id) if cancel else sleep
        self.prompt = prompt
        self.reserve_totp_step = reserve_totp_step
        #: threads for the data routes, shared by a run's clients (else a pool per fetch)
        self.route_pool = route_pool
        self.auth = auth_for(account)
        self.logins = 0
        # Kite's latest ``Date`` header and this clock when it came (kite_clock_offset)
        self._kite_date: tuple[str, datetime] | None = None
        self._web_origin = kite_http.origin(kite.base_url)
        self._origins = {self._web_origin, kite_http.origin(kite.api_root)}
        self.http = kite_http.new_session(shared_connections)
        self.http.headers.update({"User-Agent": USER_AGENT, "X-Kite-Version": KITE_VERSION})
        redact.register(*account.secrets())
        self._token: str | None = None
        self._entry: CachedSession | None = None
        # A fetch's login leaves its session's save for when the data requests are sent
        # (the write and its fsync are then not between the 2FA answer and them).
        self._holding_save = False
        self._held_session: CachedSession | None = None

    # -- HTTP with retries --------------------------------------------------------------

    def request(self, method: str, url: str, label: str, *, login: bool = False,
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
                return kite_http.parse_envelope(resp, self.account.user_id, login=login)
            except Cancelled:
                raise
            except TransientKiteError as exc:
                error: KiteError = exc
            if attempt == attempts:
                raise error
            delay = self.kite.backoff * (2 ** (attempt - 1))
            delay += random.uniform(0, delay)
            if kite_http.is_rate_limited(error):  # no sooner than the limit's window
                delay = max(delay, kite_http.RATE_WINDOW + random.uniform(0, 0.25))
            log.info("account %s: %s; retry %d/%d in %.1fs", self.account.user_id,
                     redact.redact(str(error.message)), attempt, attempts - 1, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")

    def _exchange(self, method: str, url: str, label: str, *, read_redirect: bool,
                  **kwargs: Any) -> kite_http.Answer:
        """One answer, never from another origin: a POST is never redirected (a resent
        password or TOTP code can lock the account); a GET follows redirects only
        within kite.base_url / kite.api_root."""
        user = self.account.user_id
        given_headers = kwargs.pop("headers", None) or {}
        for _hop in range(MAX_REDIRECTS + 1):
            url_origin = kite_http.origin(url)
            if url_origin not in self._origins:
                raise KiteProtocolError(
                    f"{label}: Kite redirected to another site ({kite_http.origin_text(url)}); "
                    "not following it", account=user)
            headers = dict(given_headers)
            if url_origin == self._web_origin:
                headers[USER_ID_HEADER] = user
            with self.auth.request_slot(self.kite, url):
                resp = kite_http.send(
                    self.http, method, url, timeout=self.kite.timeout,
                    max_bytes=int(self.kite.max_response_mb * 2**20), label=label,
                    account=user, cancel=self.cancel, headers=headers, **kwargs)
            self._kite_date = (resp.headers.get("Date") or "", self.clock())
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

    @property
    def kite_clock_offset(self) -> float | None:
        """Seconds this clock is ahead of Kite's (negative: behind), by the ``Date`` of
        Kite's latest answer (whole seconds, so the offset is known to about a second);
        None before any answer or when it had no usable Date."""
        if self._kite_date is None:
            return None
        date_header, received_at = self._kite_date
        try:
            sent = parsedate_to_datetime(date_header)
        except (TypeError, ValueError, IndexError):
            return None
        if sent.tzinfo is None:  # "-0000": UTC, with no claim about the sender's zone
            sent = sent.replace(tzinfo=UTC)
        return (received_at - sent).total_seconds()

    # -- session handling ----------------------------------------------------------------

    def _data_url(self, path: str) -> str:
        """The URL of a data path (snapshotter/routes.py): under {api_root} (Kite
        Connect) or {base_url}/oms (web)."""
        if self.auth.connect_api:
            return f"{self.kite.api_root}{path}"
        return f"{self.kite.base_url}{WEB_PREFIX}{path}"

    def _session_entry(self) -> CachedSession:
        """The account's session cache entry, read once."""
        if self._entry is None:
            self._entry = self.cache.load(self.account.user_id)
        return self._entry

    def token(self) -> str:
        """A usable token: the cached one, else a fresh login."""
        if self._token:
            return self._token
        cached = self._session_entry().valid_token(self.auth.session_mode, self.clock())
        if cached:
            self._token = cached
            return cached
        return self.login()

    def login(self, entry: CachedSession | None = None) -> str:
        """Log in afresh (per the account's auth mode) and cache the token; ``entry``: the
        account's session cache entry when the caller has read it (updated in place)."""
        if entry is not None:
            self._entry = entry
        token = self.auth.log_in(self, self._session_entry())
        self._token = token
        self.logins += 1
        return token

    def keep_session(self, entry: CachedSession) -> None:
        """Save a new session (kite.auth's login): now, or held by ``_fetch_routes``."""
        if self._holding_save:
            self._held_session = entry
        else:
            self.cache.save(self.account.user_id, entry)

    def _save_held_session(self) -> Exception | None:
        """Save the session a login held back; what the save raised, if it failed."""
        entry, self._held_session = self._held_session, None
        if entry is None:
            return None
        try:
            self.cache.save(self.account.user_id, entry)
        except Exception as exc:  # raised once the data requests have ended
            return exc
        return None

    def _forget_token(self) -> None:
        self._token = None
        entry = self._session_entry()
        entry.token = entry.created_at = entry.expires_at = None
        self.cache.save(self.account.user_id, entry)

    # -- data ----------------------------------------------------------------------------

    def get(self, route: str, label: str | None = None) -> Any:
        token = self.token()
        return self.request("GET", self._data_url(route), label or route,
                            headers=self.auth.headers(self.kite, token))

    def fetch_all(self) -> dict[str, Any]:
        """All data routes concurrently; on an expired session, log in again once.

        A failure after some routes answered carries their data as the exception's
        ``partial_payloads`` (route name -> data).
        """
        try:
            return self._fetch_routes()
        except TokenError as exc:
            answered = getattr(exc, "partial_payloads", None) or {}
        self._forget_token()
        ended = self.auth.session_ended()
        if ended is not None:
            raise _with_partial(ended, answered) from None
        log.info("account %s: session expired, logging in again", self.account.user_id)
        try:
            self.login()
            return self._fetch_routes()
        except KiteError as exc:
            raise _with_partial(
                exc, {**answered, **(getattr(exc, "partial_payloads", None) or {})}) from None

    def check_session(self) -> bool:
        """Does the cached session still work? Never logs in (for auth: manual)."""
        token = self._session_entry().valid_token(self.auth.session_mode, self.clock())
        if not token:
            return False
        self._token = token
        try:
            self.request("GET", self._data_url(PROFILE_PATH), "profile",
                         headers=self.auth.headers(self.kite, token))
        except TokenError:
            return False
        return True

    def _fetch_routes(self) -> dict[str, Any]:
        """Every data route at once. A login on the way saves its session while the
        data requests are in flight; a save that fails fails the fetch (as the login
        would have), once they have ended."""
        self._holding_save = True
        try:
            self.token()
        except BaseException:  # an error after the login: its session is saved anyway
            self._holding_save = False
            self._save_held_session()
            raise
        self._holding_save = False
        pool = self.route_pool or ThreadPoolExecutor(
            max_workers=len(ROUTES), thread_name_prefix=f"kite-{self.account.user_id}")
        try:
            try:
                futures = {route.name: pool.submit(self.get, route.connect_path, route.name)
                           for route in ROUTES}
            finally:
                not_saved = self._save_held_session()
            wait(futures.values())
        finally:
            if pool is not self.route_pool:
                pool.shutdown(wait=True)
        if not_saved is not None:
            raise not_saved
        payloads: dict[str, Any] = {}
        error: BaseException | None = None
        missing: KiteError | None = None
        for name, future in futures.items():
            if future.cancelled():  # the run's route threads shut down before it started
                error = error or Cancelled(self.cancel.reason if self.cancel and
                                           self.cancel.reason else "cancelled",
                                           account=self.account.user_id)
                continue
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

    def historical(self, instrument_token: int, start: date, end: date,
                   interval: str = "day") -> list[Any]:
        """The raw candles of one instrument from ``start`` to ``end`` (inclusive), in
        requests of at most Kite's span for the interval; on an expired session, logs in
        again once (as ``fetch_all``) and goes on from the chunk that was refused."""
        candles: list[Any] = []
        relogged = False
        for lo, hi in date_chunks(start, end, HISTORICAL_MAX_DAYS[interval]):
            path = HISTORICAL_PATH.format(instrument_token=instrument_token, interval=interval)
            route = f"{path}?from={lo.isoformat()}&to={hi.isoformat()}"
            label = f"historical {instrument_token} {interval} {lo}..{hi}"
            while True:
                try:
                    data = self.get(route, label)
                    break
                except TokenError:
                    if relogged:
                        raise
                self._forget_token()
                ended = self.auth.session_ended()
                if ended is not None:
                    raise ended from None
                log.info("account %s: session expired, logging in again", self.account.user_id)
                self.login()
                relogged = True
            if not isinstance(data, dict) or not isinstance(data.get("candles"), list):
                raise KiteProtocolError(f"{label}: the answer has no list of candles",
                                        account=self.account.user_id)
            candles.extend(data["candles"])
        return candles

    def close(self) -> None:
        self.http.close()


def date_chunks(start: date, end: date, max_days: int) -> list[tuple[date, date]]:
    """``start``..``end`` (inclusive) cut into consecutive ranges of at most ``max_days``
    days each (inclusive), oldest first; none when ``start`` is after ``end``."""
    chunks = []
    while start <= end:
        hi = min(end, start + timedelta(days=max_days - 1))
        chunks.append((start, hi))
        start = hi + timedelta(days=1)
    return chunks


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

