"""HTTP under the Kite client: one deadline per whole request, cancellation, capped bodies;
Kite's answer envelope -> data or a typed error; the per-app rate limit of Kite Connect.

requests' ``timeout`` bounds each socket operation, not a request: a server that sends
one byte every few seconds keeps a request alive forever. Here every request gets a
deadline; the process's ``REAPER`` thread polls the requests in flight (``time.sleep``, so
libfaketime works) and shuts down the socket of any request past its deadline or
cancelled, which wakes the thread blocked reading it at once. Bodies are read here, in
chunks, and refused past a size limit. Nothing is retried or redirected at this layer.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager
from urllib3.util.retry import Retry

from snapshotter.cancel import Cancel, Cancelled
from snapshotter.errors import (
    InputError,
    KiteError,
    KiteProtocolError,
    LoginRejected,
    PermissionDenied,
    TokenError,
    TransientKiteError,
)

REAPER_POLL_SECONDS = 0.1
POLL_SECONDS = 0.02  # a rate limiter's wait for a slot
CHUNK_BYTES = 64 * 1024
DEADLINE, CANCELLED = "deadline", "cancelled"


class Watch:
    """One request in flight: its deadline and the connection carrying it."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.reason: str | None = None  # DEADLINE or CANCELLED once aborted
        self._connection: HTTPConnection | None = None
        self._done = False
        self._lock = threading.Lock()

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            if self._done:
                return
            self._connection = connection
            if self.reason is not None:
                self._shutdown()

    def abort(self, reason: str) -> None:
        """Shut the request's socket down (again: it may have been created since)."""
        with self._lock:
            if self._done:
                return
            if self.reason is None:
                self.reason = reason
            self._shutdown()

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._connection = None

    def _shutdown(self) -> None:
        conn = self._connection
        if conn is None:
            return
        for sock in (conn.sock, getattr(conn, "_watched_sock", None),
                     getattr(conn, "_watched_raw_sock", None)):
            if sock is not None:
                # The plain socket call, also on a TLS socket: SSLSocket.shutdown would
                # drop its TLS state under the thread reading it.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Reaper:
    """Every request in flight in the process, and the thread that polls them: it shuts
    down the socket of any request past its deadline or cancelled. The thread runs only
    while requests are in flight."""

    def __init__(self) -> None:
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch) -> None:
        with self._lock:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kite-http-reaper",
                                                daemon=True)
                self._thread.start()

    def discard(self, watch: Watch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            time.sleep(REAPER_POLL_SECONDS)
            with self._lock:
                if not self._watches:
                    self._thread = None
                    return
                watches = list(self._watches)
            now = time.monotonic()
            for watch in watches:
                if watch.reason is not None or now >= watch.deadline:
                    watch.abort(watch.reason or DEADLINE)


REAPER = Reaper()  # the process's: one thread for every client's requests
_current = threading.local()  # the Watch of the request this thread is sending


def _attach(connection: HTTPConnection) -> None:
    watch: Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._watched_raw_sock = sock  # for HTTPS: until TLS wraps it into self.sock
        return sock

    def connect(self) -> None:
        _attach(self)
        super().connect()
        # TLS detached the plain socket; and http.client drops self.sock when the answer
        # says "Connection: close" while its body is still being read through it.
        self._watched_sock = self.sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """HTTPSConnection's TLS, with the watch above (MRO: ours first)."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """Connections the reaper can cut; urllib3 never retries nor redirects."""

    def __init__(self) -> None:
        super().__init__(pool_connections=4, pool_maxsize=8,
                         max_retries=Retry(total=0, redirect=False, raise_on_redirect=False))

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):  # a SOCKS manager keeps its own pools
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


def new_session() -> requests.Session:
    session = requests.Session()
    adapter = WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole: what the client and the envelope parser look at."""

    status_code: int
    headers: Mapping[str, str]  # requests' case-insensitive dict
    content: bytes

    @property
    def encoding(self) -> str | None:
        """The charset the headers declare (requests' rules: JSON is UTF-8)."""
        return requests.utils.get_encoding_from_headers(self.headers)

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding or "utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; a ValueError when it is not."""
        encoding = self.encoding or requests.utils.guess_json_utf(self.content) or "utf-8"
        try:
            return json.loads(self.content.decode(encoding))
        except LookupError as exc:  # a charset Python does not know
            raise ValueError(f"unknown charset {encoding!r}") from exc


def send(session: requests.Session, method: str, url: str, *, timeout: float,
         max_bytes: int, label: str, account: str, cancel: Cancel | None = None,
         **kwargs: Any) -> Answer:
    """One request, never redirected, answered whole within ``timeout`` seconds.

    Returns the answer with its body read. Raises ``Cancelled``,
    ``TransientKiteError`` (deadline, connection trouble) or ``KiteProtocolError``
    (body over ``max_bytes``, a request requests refuses).
    """
    if cancel is not None:
        cancel.check(account)
    watch = Watch(time.monotonic() + timeout)
    handle = cancel.on_cancel(lambda: watch.abort(CANCELLED)) if cancel is not None else 0
    REAPER.add(watch)
    resp: requests.Response | None = None
    body = b""
    failure: BaseException | None = None
    try:
        if cancel is not None:
            cancel.check(account)
        _current.watch = watch
        try:
            resp = session.request(method, url, timeout=(timeout, timeout),
                                   allow_redirects=False, stream=True, **kwargs)
        finally:
            _current.watch = None
        body = _read_body(resp, max_bytes, label, account)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        failure = exc
    except BaseException:
        _end(watch, cancel, handle, resp, reusable=False)
        raise
    # Once cut, even an answer that parsed is incomplete (e.g. headers ended by the cut).
    _end(watch, cancel, handle, resp, reusable=failure is None and watch.reason is None)
    if failure is not None or watch.reason is not None or resp is None:
        raise _failure(watch, failure, timeout, label, account, cancel)
    return Answer(resp.status_code, resp.headers, body)


def _end(watch: Watch, cancel: Cancel | None, handle: int, resp: requests.Response | None,
         *, reusable: bool) -> None:
    watch.finish()
    REAPER.discard(watch)
    if cancel is not None:
        cancel.forget(handle)
    if resp is not None:
        if reusable:
            resp.raw.release_conn()
        else:  # partly read or cut: never reuse the connection
            resp.raw.close()
            resp.close()


def _read_body(resp: requests.Response, max_bytes: int, label: str, account: str) -> bytes:
    too_large = KiteProtocolError(
        f"{label}: answer larger than {max_bytes / 2**20:g} MB (kite.max_response_mb); "
        "not read", account=account)
    length = resp.headers.get("Content-Length", "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    body = bytearray()
    # Decoded bytes are counted: a small gzip body must not inflate past the limit.
    for chunk in resp.raw.stream(CHUNK_BYTES, decode_content=True):
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


def _failure(watch: Watch, exc: BaseException | None, timeout: float, label: str,
             account: str, cancel: Cancel | None) -> KiteError:
    if watch.reason == CANCELLED and cancel is not None:
        return Cancelled(cancel.reason or "cancelled", account=account)
    timed_out = isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError) \
        and not isinstance(exc, requests.ConnectTimeout)
    if watch.reason == DEADLINE or timed_out:
        return TransientKiteError(f"{label}: no complete answer within {timeout:g} s",
                                  account=account)
    if isinstance(exc, requests.RequestException) and not isinstance(
            exc, requests.ConnectionError | requests.Timeout
            | requests.exceptions.ChunkedEncodingError
            | requests.exceptions.ContentDecodingError):
        return KiteProtocolError(f"HTTP request failed ({type(exc).__name__})",
                                 account=account)
    return TransientKiteError(f"cannot reach Kite ({type(exc).__name__})", account=account)


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def origin_text(url: str) -> str:
    """scheme://host[:port] of a URL, never its path or query (they may carry tokens)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


_LOGIN_ERROR_TYPES = {"UserException", "TwoFAException"}
RATE_LIMITED = "Too many requests"  # Kite's words, in either form of its rate-limit answer


def _says_too_many_requests(resp: Answer) -> bool:
    return resp.text.strip().rstrip(".").lower() == RATE_LIMITED.lower()


def is_rate_limited(error: KiteError) -> bool:
    """Kite's rate limit answered (HTTP 429, or HTTP 200 saying "Too many requests")."""
    return error.status == 429 or error.message.lower().startswith(RATE_LIMITED.lower())
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def parse_envelope(resp: Answer, account: str, *, login: bool = False) -> Any:
    """Kite's ``{"status": ..., "data"|"message"|"error_type"}`` -> data, or a typed error."""
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        if _says_too_many_requests(resp):
            # Kite Connect's rate limit, sometimes as HTTP 200 with this text for a body.
            raise TransientKiteError(f"{RATE_LIMITED} (Kite's rate limit, as HTTP {status})",
                                     account=account, status=status)
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


CONNECT_RATE = 10  # requests per second per Kite Connect app (HTTP 429 beyond)
RATE_WINDOW = 1.0  # seconds the limit counts over: a rate-limited call waits at least this


class RateLimiter:
    """At most ``rate`` requests in any sliding window of ``window`` seconds, as the
    server counts them, shared across threads.

    The server counts a request when it arrives, which is some time after it was sent:
    a limiter that spaced the sending alone let a delayed request land in the same
    second as the next ones (HTTP 429 on a busy machine or network). So a request holds
    its slot from before it is sent until ``window`` seconds after its answer came back
    (``release``); the server received it before answering, so the next request that
    slot admits arrives more than ``window`` seconds after it, whatever the delays.
    """

    def __init__(self, rate: int, window: float = 1.05):
        self.rate = rate
        self.window = window
        self._in_flight = 0
        self._ended: deque[float] = deque()  # when each answer came back, oldest first
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for a slot; every ``acquire`` is followed by one ``release``."""
        while True:
            with self._lock:
                now = time.monotonic()
                while self._ended and now - self._ended[0] >= self.window:
                    self._ended.popleft()
                if self._in_flight + len(self._ended) < self.rate:
                    self._in_flight += 1
                    return
                # Polled (no timed thread waits: libfaketime would freeze them).
                wait = self.window - (now - self._ended[0]) if self._ended else POLL_SECONDS
            time.sleep(min(max(wait, 0.001), POLL_SECONDS))

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._ended.append(time.monotonic())

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


class AppLimiters:
    """Kite Connect limits each app (api_key), whatever account uses it: one
    ``RateLimiter`` per app."""

    def __init__(self, rate: int = CONNECT_RATE) -> None:
        self.rate = rate
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def of(self, api_key: str) -> RateLimiter:
        with self._lock:
            return self._limiters.setdefault(api_key, RateLimiter(self.rate))


APP_LIMITERS = AppLimiters()  # the process's: every account of an app shares its limit
