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
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

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

    def __init__(self, maxsize: int = 8) -> None:
        super().__init__(pool_connections=4, pool_maxsize=maxsize,
                         max_retries=Retry(total=0, redirect=False, raise_on_redirect=False))

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):  # a SOCKS manager keeps its own pools
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


class KiteSession:
    """One account's HTTP state: the headers every request carries, its cookies (Kite's
    web login sets the enctoken as one) and its kept-alive connections.

    Requests go straight to urllib3 (``send``), through the pools of a requests
    adapter (proxies, TLS settings): requests' own per-request work (preparing,
    merging settings, hooks, its Response) cost more CPU than the rest of a run."""

    def __init__(self, shared: WatchedAdapter | None = None) -> None:
        self.headers: dict[str, str] = dict(_DEFAULT_HEADERS)
        self.cookies = requests.cookies.RequestsCookieJar()
        self.adapter = WatchedAdapter()
        #: connections a run's accounts share for their GETs (data calls); a login's
        #: POSTs always go on this account's own, fresh connections: a kept-alive
        #: connection the server has dropped fails the request, and a 2FA request is
        #: never sent twice
        self.shared = shared
        # The Cookie header per address (scheme, host, path), until an answer sets a
        # cookie: the jar's matching rules cost more than the rest of a request.
        self._cookie_headers: dict[str, str | None] = {}
        self._root_cookies_only = True
        self._pools: dict[tuple[str, str, bool], tuple[Any, dict[str, str]]] = {}

    def cookie_header(self, request: _Outgoing) -> str | None:
        address = request.url.partition("?")[0].partition("#")[0]
        if self._root_cookies_only:  # Kite's: then every path of an origin gets the same
            address = _address_origin(address)
        if address not in self._cookie_headers:
            self._cookie_headers[address] = requests.cookies.get_cookie_header(
                self.cookies, request) if self.cookies else None
        return self._cookie_headers[address]

    def pool_for(self, request: _Outgoing, verify: bool | str | None,
                 ) -> tuple[Any, dict[str, str]]:
        """The adapter's connection pool for the request's origin (its proxy's, when
        the environment names one: then also the proxies), looked up once per origin."""
        settings = environment_settings(request.url)
        verify = settings["verify"] if verify is None else verify
        adapter = self.shared if self.shared is not None and request.method == "GET" \
            else self.adapter
        key = (_address_origin(request.url), str(verify), adapter is self.adapter)
        found = self._pools.get(key)
        if found is None:
            proxies = settings["proxies"]
            pool = adapter.get_connection_with_tls_context(
                request, verify, proxies=proxies, cert=settings["cert"])  # type: ignore[arg-type]
            proxied = proxies if requests.utils.select_proxy(request.url, proxies) else {}
            found = self._pools[key] = (pool, proxied)
        return found

    def keep_cookies(self, request: _Outgoing, resp: urllib3.BaseHTTPResponse) -> None:
        """The cookies ``resp`` sets, into the jar."""
        if "Set-Cookie" in resp.headers:
            requests.cookies.extract_cookies_to_jar(self.cookies, request, resp)
            self._cookie_headers.clear()
            self._root_cookies_only = all(cookie.path == "/" for cookie in self.cookies)

    def close(self) -> None:
        self.adapter.close()


_DEFAULT_HEADERS = dict(requests.utils.default_headers())


def new_session(shared: WatchedAdapter | None = None) -> KiteSession:
    return KiteSession(shared)


_ENVIRONMENT: dict[str, dict[str, Any]] = {}
_ENVIRONMENT_LOCK = threading.Lock()


def _address_origin(url: str) -> str:
    """``scheme://host:port`` as written in ``url`` (a cache key: no parsing)."""
    return "/".join(url.split("/", 3)[:3])


def environment_settings(url: str) -> dict[str, Any]:
    """The proxies and TLS settings the environment gives requests to ``url``
    (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...), read once per origin
    for the process, as requests reads them. (A ``~/.netrc`` login is never sent.)"""
    key = _address_origin(url)
    with _ENVIRONMENT_LOCK:
        settings = _ENVIRONMENT.get(key)
        if settings is None:
            reader = requests.Session()
            merged = reader.merge_environment_settings(url, {}, None, None, None)
            reader.close()
            settings = _ENVIRONMENT[key] = {"proxies": merged["proxies"] or {},
                                            "verify": merged["verify"],
                                            "cert": merged["cert"]}
        return settings


@dataclass
class _Outgoing:
    """A request as requests' adapter and cookie jar read one (url, headers, body)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None

    @property
    def path_url(self) -> str:
        """The path and query (what goes on the request line without a proxy)."""
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


# What requests' requote_uri would change (else the address is sent as it is).
_UNQUOTED = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%(?![0-9A-Fa-f]{2})")


def _outgoing(session: KiteSession, method: str, url: str,
              headers: Mapping[str, str] | None, data: Mapping[str, Any] | None) -> _Outgoing:
    """What requests would send: the session's headers, then the call's; a form body
    (fields whose value is None left out); the cookies the jar holds for ``url``."""
    merged = {**session.headers, **(headers or {})}
    body = None
    if data is not None:
        body = urlencode([(k, v) for k, v in data.items() if v is not None]).encode()
        merged["Content-Type"] = "application/x-www-form-urlencoded"
    elif method in ("POST", "PUT", "PATCH"):
        merged["Content-Length"] = "0"
    if _UNQUOTED.search(url):
        url = requests.utils.requote_uri(url)
    request = _Outgoing(method, url, merged, body)
    cookie = session.cookie_header(request)
    if cookie:
        request.headers["Cookie"] = cookie
    return request


def _urlopen(session: KiteSession, request: _Outgoing, timeout: float,
             verify: bool | str | None) -> urllib3.BaseHTTPResponse:
    """The request sent through the adapter's pool for its origin (or its proxy's); the
    answer's body left unread."""
    pool, proxied = session.pool_for(request, verify)
    url = request.path_url
    if proxied:  # the absolute address, as to any proxy (requests' rule)
        url = session.adapter.request_url(request, proxied)  # type: ignore[arg-type]
    return pool.urlopen(
        method=request.method, url=url, body=request.body, headers=request.headers,
        redirect=False, assert_same_host=False, preload_content=False,
        decode_content=False, retries=False,
        timeout=urllib3.Timeout(connect=timeout, read=timeout))


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


def send(session: KiteSession, method: str, url: str, *, timeout: float,
         max_bytes: int, label: str, account: str, cancel: Cancel | None = None,
         headers: Mapping[str, str] | None = None,
         data: Mapping[str, Any] | None = None, verify: bool | str | None = None) -> Answer:
    """One request, never redirected, answered whole within ``timeout`` seconds;
    ``verify``: the TLS check, as requests takes it (default: the environment's).

    Returns the answer with its body read. Raises ``Cancelled``,
    ``TransientKiteError`` (deadline, connection trouble) or ``KiteProtocolError``
    (body over ``max_bytes``, a request that cannot be sent as given).
    """
    if cancel is not None:
        cancel.check(account)
    request = _outgoing(session, method, url, headers, data)
    watch = Watch(time.monotonic() + timeout)
    handle = cancel.on_cancel(lambda: watch.abort(CANCELLED)) if cancel is not None else 0
    REAPER.add(watch)
    resp: urllib3.BaseHTTPResponse | None = None
    body = b""
    failure: BaseException | None = None
    try:
        if cancel is not None:
            cancel.check(account)
        _current.watch = watch
        try:
            resp = _urlopen(session, request, timeout, verify)
        finally:
            _current.watch = None
        body = _read_body(resp, max_bytes, label, account)
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        failure = exc
    except BaseException:
        _end(watch, cancel, handle, resp, reusable=False)
        raise
    # Once cut, even an answer that parsed is incomplete (e.g. headers ended by the cut).
    _end(watch, cancel, handle, resp, reusable=failure is None and watch.reason is None)
    if failure is not None or watch.reason is not None or resp is None:
        raise _failure(watch, failure, timeout, label, account, cancel)
    session.keep_cookies(request, resp)
    return Answer(resp.status, resp.headers, body)


def _end(watch: Watch, cancel: Cancel | None, handle: int,
         resp: urllib3.BaseHTTPResponse | None, *, reusable: bool) -> None:
    watch.finish()
    REAPER.discard(watch)
    if cancel is not None:
        cancel.forget(handle)
    if resp is not None:
        if reusable:
            resp.release_conn()
        else:  # partly read or cut: never reuse the connection
            resp.close()


def _read_body(resp: urllib3.BaseHTTPResponse, max_bytes: int, label: str,
               account: str) -> bytes:
    too_large = KiteProtocolError(
        f"{label}: answer larger than {max_bytes / 2**20:g} MB (kite.max_response_mb); "
        "not read", account=account)
    length = (resp.headers.get("Content-Length") or "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    body = bytearray()
    # Decoded bytes are counted: a small gzip body must not inflate past the limit.
    for chunk in resp.stream(CHUNK_BYTES, decode_content=True):
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


def _failure(watch: Watch, exc: BaseException | None, timeout: float, label: str,
             account: str, cancel: Cancel | None) -> KiteError:
    if watch.reason == CANCELLED and cancel is not None:
        return Cancelled(cancel.reason or "cancelled", account=account)
    timed_out = isinstance(exc, urllib3.exceptions.TimeoutError) \
        and not isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
    if watch.reason == DEADLINE or timed_out:
        return TransientKiteError(f"{label}: no complete answer within {timeout:g} s",
                                  account=account)
    if isinstance(exc, ValueError | urllib3.exceptions.LocationValueError
                  | urllib3.exceptions.ProxySchemeUnknown):
        # A request that cannot be sent as given (an address or header value http.client
        # refuses): not Kite's trouble, and no retry would change it.
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
