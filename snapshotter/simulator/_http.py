"""Internal to the simulator: its HTTP plumbing. Requests and responses, Kite's envelopes
and messages, the threaded server and its handler (streamed answers for the drip and huge
faults)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

# Messages, as Kite words them (docs/kite-protocol.md §5, with the reports they come from)
MSG_INVALID_SESSION = "Invalid session"
MSG_LOGIN_SESSION = "The login session has expired or doesn't exist. Please try again."
MSG_BLOCKED = (
    "Your account is blocked after too many incorrect 2FA attempts. "
    "Reset your password to unblock it."
)
MSG_INVALID_TOTP = "Invalid TOTP"
MSG_BAD_API_TOKEN = "Incorrect `api_key` or `access_token`."
MSG_BAD_CHECKSUM = "Invalid checksum"
MSG_BAD_REQUEST_TOKEN = "Token is invalid or has expired."
MSG_TOO_MANY = "Too many requests"
MSG_TWOFA_TYPE = "The requested 2FA type is not available"
MSG_BAD_REQUEST = "Bad Request"


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: a streamed body instead of ``body``: written chunk by chunk, ``chunk_delay`` s apart
    chunks: Iterable[bytes] | None = None
    chunk_delay: float = 0.0
    #: the streamed body's Content-Length (None: Transfer-Encoding chunked)
    length: int | None = None
    #: no answer at all: the connection is closed once the request is handled
    hang_up: bool = False


def json_answer(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = json.dumps(payload).encode("utf-8")
    return Response(status, body, "application/json", headers or [])


def ok(data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return json_answer(200, {"status": "success", "data": data}, headers)


def error(status: int, error_type: str, message: str) -> Response:
    return json_answer(
        status, {"status": "error", "message": message, "error_type": error_type, "data": None}
    )


def too_many_200() -> Response:
    """Kite's other rate-limit answer: HTTP 200 with "Too many requests" as the body."""
    return Response(200, MSG_TOO_MANY.encode(), "text/plain; charset=utf-8")


class Refused(Exception):
    """Kite's error answer, raised by a check deep in a handler (``answer``: one that is not
    an error envelope)."""

    def __init__(self, status: int, error_type: str, message: str,
                 answer: Response | None = None):
        super().__init__(message)
        self.answer = answer or error(status, error_type, message)


def redirect(location: str, status: int = 302) -> Response:
    return Response(status, b"", "text/html; charset=utf-8", [("Location", location)])


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    cookies: dict[str, str]


def _first_values(parsed: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in parsed.items() if v}


def _parse_cookies(header: str) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            cookies[name] = value.strip().strip('"')
    return cookies


class Simulator(Protocol):
    """What the server asks of the simulator it serves."""

    _stopping: threading.Event
    clock: Callable[[], datetime]

    def _respond(self, req: Request) -> Response: ...


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: Simulator):
        self.sim = sim
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or went away is normal here; stay quiet.
        pass

    def close_open_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.open_connections)
            self.open_connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KiteSimulator/1.0"
    sys_version = ""
    timeout = 300  # close idle keep-alive connections eventually
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on keep-alive connections

    def setup(self) -> None:
        super().setup()
        server = cast(Server, self.server)
        with server.connections_lock:
            server.open_connections.add(self.connection)

    def finish(self) -> None:
        server = cast(Server, self.server)
        with server.connections_lock:
            server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header, from the simulator's clock (tests shift it), as Kite's
        servers send it from theirs; clients compare it with their own clock."""
        now = cast(Server, self.server).sim.clock()
        return format_datetime(now.astimezone(UTC), usegmt=True)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        form: dict[str, str] = {}
        content_type = self.headers.get("Content-Type", "")
        if raw and content_type.startswith("application/x-www-form-urlencoded"):
            form = _first_values(parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True))
        request = Request(
            method=self.command,
            path=url.path,
            query=_first_values(parse_qs(url.query, keep_blank_values=True)),
            form=form,
            headers={k.lower(): v for k, v in self.headers.items()},
            cookies=_parse_cookies(self.headers.get("Cookie", "")),
        )
        response = cast(Server, self.server).sim._respond(request)
        if response.hang_up:
            self.close_connection = True
            return
        if response.chunks is not None:
            self._stream(response)
            return
        self._send_head(response, len(response.body))
        if response.body:
            self.wfile.write(response.body)

    def _send_head(self, response: Response, length: int | None) -> None:
        """Status and headers; ``length`` None: Transfer-Encoding chunked."""
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()

    def _stream(self, response: Response) -> None:
        """Write a streamed body; stop when the client goes away or the simulator stops."""
        stopping = cast(Server, self.server).sim._stopping
        self.close_connection = True
        self._send_head(response, response.length)
        try:
            for chunk in response.chunks or ():
                if response.chunk_delay > 0 and stopping.wait(response.chunk_delay):
                    return
                if stopping.is_set():
                    return
                if response.length is None:
                    chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
                self.wfile.write(chunk)
            if response.length is None:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client gave up (a deadline, a size limit): normal here
            return


