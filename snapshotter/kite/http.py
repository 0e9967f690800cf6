"""HTTP under the Kite client: one deadline per whole request, cancellation, capped bodies;
Kite's answer envelope -> data or a typed error; the per-app rate limit of Kite Connect.

Requests are sent by libcurl (pycurl): connecting, TLS, writing the request, reading
and parsing the answer's headers and decompressing its body run in C without the
interpreter lock, on which a run's account threads otherwise queue (docs/speed.md).
libcurl's timeout bounds each whole request; the process's ``REAPER`` thread also polls
the requests in flight (``time.sleep``, so libfaketime works) and shuts down the
sockets of any request past its deadline or cancelled, which wakes the thread blocked
in libcurl at once. Bodies are refused past a size limit as they arrive. Nothing is
redirected at this layer, and a request with a body is never sent twice (libcurl would
resend one on a kept-alive connection that died unanswered; ours cannot be rewound).
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import io
import json
import os
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import pycurl

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
from snapshotter.kite.cookies import CookieJar

REAPER_POLL_SECONDS = 0.1
POLL_SECONDS = 0.02  # a rate limiter's wait for a slot
DEADLINE, CANCELLED = "deadline", "cancelled"


class _Sockets:
    """The sockets libcurl opened for one handle (its kept-alive connections), so that
    the reaper can shut them down under the thread blocked in libcurl."""

    def __init__(self) -> None:
        self._fds: set[int] = set()
        self._lock = threading.Lock()
        self.watch: Watch | None = None  # the request in flight on the handle

    def opened(self, fd: int, purpose: int) -> int:
        """libcurl's SOCKOPTFUNCTION: a new socket, before it connects."""
        with self._lock:
            self._fds.add(fd)
            watch = self.watch
        if watch is not None and watch.reason is not None:  # cut before it connected
            return pycurl.SOCKOPT_ERROR
        return pycurl.SOCKOPT_OK

    def closed(self, fd: int) -> int:
        """libcurl's CLOSESOCKETFUNCTION: closed here, under the lock, so that the reaper
        never shuts down a descriptor the process has reused for another socket."""
        with self._lock:
            self._fds.discard(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        return 0

    def shutdown(self) -> None:
        with self._lock:
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    # A duplicate of libcurl's descriptor: shutdown acts on the socket
                    # both share, and wakes the thread reading it (also under TLS).
                    sock = socket.socket(fileno=os.dup(fd))
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    finally:
                        sock.close()


class Watch:
    """One request in flight: its deadline and the sockets carrying it."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.reason: str | None = None  # DEADLINE or CANCELLED once aborted
        self._sockets: _Sockets | None = None
        self._done = False
        self._lock = threading.Lock()

    def attach(self, sockets: _Sockets) -> None:
        with self._lock:
            if self._done:
                return
            self._sockets = sockets
            sockets.watch = self
            if self.reason is not None:
                sockets.shutdown()

    def abort(self, reason: str) -> None:
        """Shut the request's sockets down (again: one may have been opened since)."""
        with self._lock:
            if self._done:
                return
            if self.reason is None:
                self.reason = reason
            if self._sockets is not None:
                self._sockets.shutdown()

    def finish(self) -> None:
        with self._lock:
            self._done = True
            if self._sockets is not None:
                self._sockets.watch = None
            self._sockets = None


class Reaper:
    """Every request in flight in the process, and the thread that polls them: it shuts
    down the sockets of any request past its deadline or cancelled. The thread runs only
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


class _Handle:
    """A libcurl handle and the connections it keeps alive; one request at a time."""

    def __init__(self) -> None:
        self.curl = pycurl.Curl()
        self.sockets = _Sockets()
        self.configure()

    def configure(self) -> None:
        """What every request of ours has. (Never ``reset``: pycurl would drop the socket
        callbacks while the kept-alive connections still need them to close.)"""
        curl = self.curl
        curl.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for timeouts
        curl.setopt(pycurl.SOCKOPTFUNCTION, self.sockets.opened)
        curl.setopt(pycurl.CLOSESOCKETFUNCTION, self.sockets.closed)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.ACCEPT_ENCODING, "")  # every coding libcurl decodes
        curl.setopt(pycurl.FOLLOWLOCATION, 0)

    def progress(self, *totals: int) -> int:
        """libcurl's XFERINFOFUNCTION, on the main thread only: a Python call now and
        then, so that Ctrl-C is raised during a stalled request (libcurl's waits retry
        on EINTR), and a cut request ends without waiting for its socket."""
        watch = self.sockets.watch
        return 1 if watch is not None and watch.reason is not None else 0

    def forget(self) -> None:
        """Nothing of the last request kept while idle: its answer, its body (a password
        form), its header fields (a token)."""
        curl = self.curl
        curl.setopt(pycurl.HEADERFUNCTION, _ignore)
        curl.setopt(pycurl.WRITEFUNCTION, _ignore)
        curl.unsetopt(pycurl.READFUNCTION)
        curl.unsetopt(pycurl.HTTPHEADER)

    def close(self) -> None:
        self.curl.close()


def _ignore(data: bytes) -> None:
    return None


class Connections:
    """Kept-alive connections to Kite: libcurl handles, each keeping the connections it
    opened, lent to one request at a time; at most ``maxsize`` kept between requests."""

    def __init__(self, maxsize: int = 8) -> None:
        self.maxsize = maxsize
        self._idle: list[_Handle] = []
        self._lock = threading.Lock()

    def take(self) -> _Handle:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Handle()

    def give(self, handle: _Handle, *, reusable: bool) -> None:
        """``handle`` back after its request; one cut or failed is closed, never reused."""
        if reusable:
            handle.forget()
            with self._lock:
                if len(self._idle) < self.maxsize:
                    self._idle.append(handle)
                    return
        handle.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for handle in idle:
            handle.close()


class KiteSession:
    """One account's HTTP state: the headers every request carries, its cookies (Kite's
    web login sets the enctoken as one) and its kept-alive connections."""

    def __init__(self, shared: Connections | None = None) -> None:
        self.headers: dict[str, str] = dict(_DEFAULT_HEADERS)
        self.cookies = CookieJar()
        #: this account's own connections: its logins' POSTs, and its GETs without
        #: ``shared``
        self.connections = Connections(maxsize=2)
        #: connections a run's accounts share for their GETs (data calls)
        self.shared = shared

    def connections_for(self, method: str) -> Connections:
        return self.shared if self.shared is not None and method == "GET" \
            else self.connections

    def keep_cookies(self, request: _Outgoing, header_lines: list[bytes]) -> None:
        """The cookies an answer sets (its header lines, status line first), into the
        jar, by the jar's rules (domain, path, expiry)."""
        values = [line[11:].decode("latin-1").strip() for line in header_lines
                  if line[:11].lower() == b"set-cookie:"]
        if values:
            self.cookies.keep(request.url, values)

    def close(self) -> None:
        self.connections.close()


# What requests sent by default (the client sets its own User-Agent; libcurl builds
# Accept-Encoding from what it can decode).
_DEFAULT_HEADERS = {"Accept": "*/*", "Connection": "keep-alive"}


def new_session(shared: Connections | None = None) -> KiteSession:
    return KiteSession(shared)


_ENVIRONMENT: dict[str, dict[str, Any]] = {}
_ENVIRONMENT_LOCK = threading.Lock()


def _address_origin(url: str) -> str:
    """``scheme://host:port`` as written in ``url`` (a cache key: no parsing)."""
    return "/".join(url.split("/", 3)[:3])


def environment_settings(url: str) -> dict[str, Any]:
    """The proxy and TLS settings the environment gives requests to ``url``
    (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...), read once per origin
    for the process, by requests' rules. (A ``~/.netrc`` login is never sent.)"""
    key = _address_origin(url)
    with _ENVIRONMENT_LOCK:
        settings = _ENVIRONMENT.get(key)
        if settings is None:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            settings = _ENVIRONMENT[key] = {"proxy": _environment_proxy(url),
                                            "verify": verify or True}
        return settings


def _environment_proxy(url: str) -> str:
    """The proxy requests would take to ``url`` from the environment, or ""."""
    if sys.platform not in ("darwin", "win32") and not any(
            value and name.lower().endswith("_proxy") and name.lower() != "no_proxy"
            for name, value in os.environ.items()):
        return ""  # no proxy variable, no system settings: no proxy (requests not loaded)
    import requests  # its rules: NO_PROXY's hosts, domains and address ranges...

    reader = requests.Session()
    merged = reader.merge_environment_settings(url, {}, None, None, None)
    reader.close()
    return requests.utils.select_proxy(url, merged["proxies"] or {}) or ""


@dataclass
class _Outgoing:
    """A request as it is sent (url, headers, body)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


# What requests' requote_uri would change (else the address is sent as it is).
_UNQUOTED = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%(?![0-9A-Fa-f]{2})")
# Header fields libcurl builds itself, from the request's options.
_CURL_BUILT = {"accept-encoding", "content-length", "host", "transfer-encoding"}
_FIELD_BREAK = re.compile(r"[\r\n\0]")


def _outgoing(session: KiteSession, method: str, url: str,
              headers: Mapping[str, str] | None, data: Mapping[str, Any] | None) -> _Outgoing:
    """What requests would send: the session's headers, then the call's; a form body
    (fields whose value is None left out); the cookies the jar holds for ``url``."""
    merged = {**session.headers, **(headers or {})}
    body = None
    if data is not None:
        body = urlencode([(k, v) for k, v in data.items() if v is not None]).encode()
        merged["Content-Type"] = "application/x-www-form-urlencoded"
    if _UNQUOTED.search(url):
        import requests  # seldom: an address of ours is quoted already

        url = requests.utils.requote_uri(url)
    request = _Outgoing(method, url, merged, body)
    cookie = session.cookies.header(url)
    if cookie:
        request.headers["Cookie"] = cookie
    return request


class _Exchange:
    """One request's answer as libcurl hands it over: header lines, then body chunks,
    refused past ``max_bytes`` of decoded body."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.lines: list[bytes] = []  # every header line libcurl read, status lines too
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = False

    @property
    def header_lines(self) -> list[bytes]:
        """The answer's status line and header lines: the last block read (a proxy's
        CONNECT answer or a 1xx may come before it)."""
        lines = self.lines
        start = max((i for i, line in enumerate(lines) if line[:5] == b"HTTP/"), default=0)
        end = next((i for i in range(start, len(lines)) if lines[i] in (b"\r\n", b"\n")),
                   len(lines))
        return lines[start:end]  # never a chunked body's trailer fields

    def write(self, chunk: bytes) -> int | None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.too_large = True
            return 0  # libcurl aborts the transfer
        self.chunks.append(chunk)
        return None

    def headers(self) -> Headers:
        headers = Headers()
        name = ""
        for raw in self.header_lines[1:]:
            line = raw.decode("latin-1").rstrip("\r\n")
            if line[:1] in (" ", "\t") and name:  # an obsolete folded continuation
                headers[name] = f"{headers[name]} {line.strip()}"
                continue
            name, sep, value = line.partition(":")
            if not sep:
                name = ""
                continue
            name, value = name.strip(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers


class Headers(Mapping[str, str]):
    """An answer's header fields, found whatever the case of their names."""

    def __init__(self) -> None:
        self._fields: dict[str, tuple[str, str]] = {}

    def __setitem__(self, name: str, value: str) -> None:
        self._fields[name.lower()] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._fields.values())

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


def _declared_charset(content_type: str | None) -> str | None:
    """The charset a Content-Type names; else requests' defaults (ISO-8859-1 for text,
    UTF-8 for JSON) or None."""
    if not content_type:
        return None
    kind, *params = content_type.split(";")
    charset = None
    for param in params:
        key, eq, value = param.partition("=")
        if eq and key.strip(" \t\"'").lower() == "charset":
            charset = value.strip(" \t\"'")
    if charset is not None:
        return charset or None
    if "text" in kind:
        return "ISO-8859-1"
    if "application/json" in kind:
        return "utf-8"
    return None


def _json_encoding(body: bytes) -> str:
    """A JSON text's encoding by RFC 4627's rule: a byte order mark, else the zero
    bytes among the first four (its first two characters are ASCII)."""
    head = body[:4]
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    zeros = head.count(0)
    if zeros == 2 and head[::2] == b"\0\0":
        return "utf-16-be"
    if zeros == 2 and head[1::2] == b"\0\0":
        return "utf-16-le"
    if zeros == 3 and head[:3] == b"\0\0\0":
        return "utf-32-be"
    if zeros == 3 and head[1:] == b"\0\0\0":
        return "utf-32-le"
    return "utf-8"


def _default_ca_bundle() -> str:
    import certifi  # requests' CA bundle; loaded by the first request without another

    return certifi.where()


def _no_rewind(offset: int, origin: int) -> int:
    """libcurl's SEEKFUNCTION for a request body: it never rewinds one to send it again."""
    return pycurl.SEEKFUNC_FAIL


@functools.lru_cache(maxsize=16)
def _tls_options(verify: bool | str) -> tuple[tuple[int, Any], ...]:
    """libcurl's options for requests' ``verify``: False, True (requests' CA bundle) or
    the path of a CA bundle file or directory."""
    checks = (pycurl.SSL_VERIFYPEER, pycurl.SSL_VERIFYHOST, pycurl.PROXY_SSL_VERIFYPEER,
              pycurl.PROXY_SSL_VERIFYHOST)
    if verify is False:
        return tuple((option, 0) for option in checks)
    on = tuple(zip(checks, (1, 2, 1, 2), strict=True))  # libcurl's defaults
    bundle = _default_ca_bundle() if verify is True else str(verify)
    if os.path.isdir(bundle):  # None: unset (a handle keeps an earlier request's options)
        return (*on, (pycurl.CAPATH, bundle), (pycurl.PROXY_CAPATH, bundle),
                (pycurl.CAINFO, None), (pycurl.PROXY_CAINFO, None))
    return (*on, (pycurl.CAINFO, bundle), (pycurl.PROXY_CAINFO, bundle),
            (pycurl.CAPATH, None), (pycurl.PROXY_CAPATH, None))


def _prepare(handle: _Handle, request: _Outgoing, timeout: float, verify: bool | str | None,
             exchange: _Exchange) -> None:
    """``handle``'s options for ``request``. Raises ValueError for a request that cannot
    be sent as given (a header field with a line break or not Latin-1, an address that
    is not http(s))."""
    curl = handle.curl
    settings = environment_settings(request.url)
    verify = settings["verify"] if verify is None else verify
    fields = ["Expect:"]  # never wait for a "100 Continue"
    if "Content-Type" not in request.headers:
        fields.append("Content-Type:")  # libcurl's default for a POST: none, as requests
    # "Name;" is libcurl's way to send a field with an empty value
    fields += [f"{name}: {value}" if value != "" else f"{name};"
               for name, value in request.headers.items() if name.lower() not in _CURL_BUILT]
    text = "\t".join(fields)
    if _FIELD_BREAK.search(text):
        raise ValueError("a header field holds a line break")
    if not request.url.lower().startswith(("http://", "https://")):
        raise ValueError("not an http(s) address")
    curl.setopt(pycurl.URL, request.url)
    # The User-Agent of a proxy's CONNECT request (the request's own is in the fields)
    curl.setopt(pycurl.USERAGENT, request.headers.get("User-Agent", ""))
    curl.setopt(pycurl.HTTPHEADER, fields if text.isascii()
                else [field.encode("latin-1") for field in fields])
    curl.unsetopt(pycurl.CUSTOMREQUEST)
    if request.method == "GET":
        curl.setopt(pycurl.HTTPGET, 1)
    else:
        body = request.body or b""
        curl.setopt(pycurl.POST, 1)
        if request.method != "POST":
            curl.setopt(pycurl.CUSTOMREQUEST, request.method)
        curl.setopt(pycurl.POSTFIELDSIZE_LARGE, len(body))
        curl.setopt(pycurl.READFUNCTION, io.BytesIO(body).read)
        curl.setopt(pycurl.SEEKFUNCTION, _no_rewind)
    millis = max(1, int(timeout * 1000))
    curl.setopt(pycurl.TIMEOUT_MS, millis)
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, millis)
    curl.setopt(pycurl.PROXY, settings["proxy"])  # "": none, whatever libcurl would read
    curl.setopt(pycurl.NOPROXY, "")  # requests' NO_PROXY rules chose the proxy above
    for option, value in _tls_options(verify):
        if value is None:
            curl.unsetopt(option)
        else:
            curl.setopt(option, value)
    curl.setopt(pycurl.MAXFILESIZE_LARGE, exchange.max_bytes)  # by Content-Length
    curl.setopt(pycurl.HEADERFUNCTION, exchange.lines.append)
    curl.setopt(pycurl.WRITEFUNCTION, exchange.write)
    on_main_thread = threading.current_thread() is threading.main_thread()
    curl.setopt(pycurl.NOPROGRESS, 0 if on_main_thread else 1)
    curl.setopt(pycurl.XFERINFOFUNCTION, handle.progress)


def _perform(handle: _Handle, request: _Outgoing) -> int:
    """The exchange itself (the interpreter lock released); the answer's status.
    (``request``: for benchmarks/bench_timeline.py's hook, which logs what is sent.)"""
    handle.curl.perform()
    return int(handle.curl.getinfo(pycurl.RESPONSE_CODE))


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole: what the client and the envelope parser look at."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes

    @property
    def encoding(self) -> str | None:
        """The charset the headers declare (requests' rules: JSON is UTF-8, text
        without one is ISO-8859-1)."""
        return _declared_charset(self.headers.get("Content-Type"))

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know: read as UTF-8
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; a ValueError when it is not."""
        encoding = self.encoding or _json_encoding(self.content)
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
    handle_id = cancel.on_cancel(lambda: watch.abort(CANCELLED)) if cancel is not None else 0
    REAPER.add(watch)
    connections = session.connections_for(method)
    handle = connections.take()
    exchange = _Exchange(max_bytes)
    status = 0
    failure: BaseException | None = None
    try:
        if cancel is not None:
            cancel.check(account)
        _prepare(handle, request, timeout, verify, exchange)
        watch.attach(handle.sockets)
        status = _perform(handle, request)
    except (pycurl.error, ValueError, OSError) as exc:
        failure = exc
    except BaseException:
        _end(watch, cancel, handle_id, connections, handle, reusable=False)
        raise
    # Once cut, even an answer that parsed is incomplete (e.g. headers ended by the cut).
    _end(watch, cancel, handle_id, connections, handle,
         reusable=failure is None and watch.reason is None)
    if failure is not None or watch.reason is not None:
        raise _failure(watch, failure, exchange, timeout, label, account, cancel)
    session.keep_cookies(request, exchange.header_lines)
    return Answer(status, exchange.headers(), b"".join(exchange.chunks))


def _end(watch: Watch, cancel: Cancel | None, handle_id: int, connections: Connections,
         handle: _Handle, *, reusable: bool) -> None:
    watch.finish()
    REAPER.discard(watch)
    if cancel is not None:
        cancel.forget(handle_id)
    connections.give(handle, reusable=reusable)


# libcurl's errors, as a user reads them: "cannot reach Kite (...)".
_CURL_TROUBLE = {
    pycurl.E_COULDNT_RESOLVE_PROXY: "proxy's name not resolved",
    pycurl.E_COULDNT_RESOLVE_HOST: "name not resolved",
    pycurl.E_COULDNT_CONNECT: "connection refused or unreachable",
    pycurl.E_FTP_WEIRD_SERVER_REPLY: "not an HTTP answer",  # libcurl's CURLE_WEIRD_SERVER_REPLY
    pycurl.E_UNSUPPORTED_PROTOCOL: "not an HTTP answer",  # no status line: HTTP/0.9, refused
    pycurl.E_PARTIAL_FILE: "answer cut short",
    pycurl.E_SSL_CONNECT_ERROR: "TLS handshake failed",
    pycurl.E_PEER_FAILED_VERIFICATION: "TLS certificate not trusted",
    pycurl.E_GOT_NOTHING: "empty answer",
    pycurl.E_SEND_ERROR: "connection broken while sending",
    pycurl.E_RECV_ERROR: "connection broken while reading",
    pycurl.E_BAD_CONTENT_ENCODING: "body not decodable",
    pycurl.E_SEND_FAIL_REWIND: "connection dropped; the request was not sent again",
    pycurl.E_SSL_CACERT_BADFILE: "TLS CA bundle unreadable",
}
# A request that cannot be sent as given: not Kite's trouble, and no retry would change it.
_UNSENDABLE = {pycurl.E_URL_MALFORMAT, pycurl.E_BAD_FUNCTION_ARGUMENT}


def _failure(watch: Watch, exc: BaseException | None, exchange: _Exchange, timeout: float,
             label: str, account: str, cancel: Cancel | None) -> KiteError:
    if watch.reason == CANCELLED and cancel is not None:
        return Cancelled(cancel.reason or "cancelled", account=account)
    code = exc.args[0] if isinstance(exc, pycurl.error) and exc.args else None
    if exchange.too_large or code == pycurl.E_FILESIZE_EXCEEDED:
        return KiteProtocolError(
            f"{label}: answer larger than {exchange.max_bytes / 2**20:g} MB "
            "(kite.max_response_mb); not read", account=account)
    if watch.reason == DEADLINE or code == pycurl.E_OPERATION_TIMEDOUT:
        return TransientKiteError(f"{label}: no complete answer within {timeout:g} s",
                                  account=account)
    if isinstance(exc, ValueError) or code in _UNSENDABLE:
        return KiteProtocolError(f"HTTP request failed ({_trouble(exc)})", account=account)
    return TransientKiteError(f"cannot reach Kite ({_trouble(exc)})", account=account)


def _trouble(exc: BaseException | None) -> str:
    """What went wrong, without libcurl's own words (they may quote the address)."""
    if isinstance(exc, pycurl.error) and exc.args:
        return _CURL_TROUBLE.get(exc.args[0], f"libcurl error {exc.args[0]}")
    return type(exc).__name__


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
