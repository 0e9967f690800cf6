"""A Kite simulator: a real HTTP server on 127.0.0.1 that speaks Kite's protocol.

It lets the production client be tested over real sockets, with no Zerodha account and no
network: the web login (``/api/login``, ``/api/twofa``, ``/oms/...`` data routes with an
``enctoken``), the official Kite Connect v3 flow (``/connect/login``, ``/connect/finish``,
``/session/token`` and the API routes with ``token api_key:access_token``), Kite's error
envelopes, TOTP checks with replay rejection and account blocking, a per-app rate limit, and
injectable faults (5xx, 429, HTML from a proxy, missing ``error_type``, garbage JSON, slow
answers, redirects, bodies that drip one byte at a time, huge bodies). Protocol notes:
``PROTOCOL.md`` sections 1-3.

Only the standard library's ``http.server`` plus ``pyotp``. Usage::

    with KiteSimulator(demo_accounts(3)) as sim:
        requests.post(f"{sim.base_url}/api/login", data={...})
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlencode

import pyotp

from snapshotter.simulator.http import (
    _API_ROUTES,
    _GET_ROUTES,
    _POST_ROUTES,
    _WEB_ROUTES,
    _error,
    _Fault,
    _json,
    _ok,
    _redirect,
    _Request,
    _Response,
    _Server,
)
from snapshotter.simulator.portfolios import (
    IST,
    SimAccount,
    SimApp,
    _new_enctoken,
    _rand_alnum,
)

#: fault kinds accepted by :meth:`KiteSimulator.fail_next`
FAULT_KINDS = (
    "500",
    "502",
    "503",
    "504",
    "429",
    "token",
    "html",
    "no_error_type",
    "garbage",
    "slow",
    "redirect",
    "drip",
    "huge",
)

#: 2FA failures (wrong or replayed codes) after which the account is blocked
MAX_TWOFA_FAILURES = 5

#: Kite Connect API rate limit: at most this many requests per api_key in any 1 s window
RATE_LIMIT_PER_SECOND = 10

# Messages, as Kite words them (PROTOCOL.md, kite-mocks/error_examples.json)
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

_FAULT_ENVELOPES: dict[str, tuple[int, str, str]] = {
    "500": (500, "GeneralException", "Something unexpected went wrong"),
    "502": (
        502,
        "NetworkException",
        "The backend OMS is down and the API is unable to communicate with it",
    ),
    "503": (503, "NetworkException", "Service unavailable; the API is down"),
    "504": (504, "NetworkException", "Gateway timeout; the API is unreachable"),
    "429": (429, "NetworkException", MSG_TOO_MANY),
    "token": (403, "TokenException", "Invalid session"),
}


_LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>Kite - Zerodha's fast and elegant flagship trading platform</title></head>
<body><form method="post" action="/api/login">
<input name="user_id" placeholder="User ID"><input name="password" type="password">
<button type="submit">Login</button></form>
<!-- api_key={api_key} sess_id={sess_id} -->
</body></html>
"""


class KiteSimulator:
    """A Kite server on 127.0.0.1 for tests and demos (see the module docstring).

    Thread-safe: every piece of state is guarded by one lock; handlers sleep (``latency``,
    ``slow`` faults) outside it.
    """

    def __init__(
        self,
        accounts: Iterable[SimAccount] = (),
        *,
        apps: Iterable[SimApp] = (),
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
    ):
        self.latency = latency
        #: seconds a "slow" fault waits before answering normally
        self.slow_seconds = 5.0
        #: seconds between the bytes of a "drip" answer
        self.drip_seconds = 5.0
        #: size in MB (2**20 bytes) of a "huge" answer's body
        self.huge_mb = 20.0
        #: a "huge" answer without Content-Length (chunked), so only counting can stop it
        self.huge_chunked = False
        self.host = host
        self.port = port
        self.base_url = ""
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))

        self._lock = threading.RLock()
        self._accounts: dict[str, SimAccount] = {}
        self._apps: dict[str, SimApp] = {a.api_key: a for a in apps}
        self._faults: list[_Fault] = []
        # web login state
        self._pending: dict[str, tuple[str, str]] = {}  # kf_session -> (user_id, request_id)
        self._enctokens: dict[str, str] = {}  # valid enctoken -> user_id
        self._twofa_failures: Counter[str] = Counter()
        self._blocked: set[str] = set()
        self._last_totp_step: dict[str, int] = {}
        # Kite Connect state
        self._sess_ids: dict[str, str] = {}  # sess_id -> api_key
        self._request_tokens: dict[str, tuple[str, str, str]] = {}  # -> (user, api_key, enc)
        self._access_tokens: dict[tuple[str, str], str] = {}  # (api_key, token) -> user_id
        self._api_calls: dict[str, deque[float]] = {}
        # every token ever issued -> user_id, to name the user in requests_log
        self._token_owner: dict[str, str] = {}

        #: successful password checks at /api/login, per user_id
        self.login_count: Counter[str] = Counter()
        #: successful 2FA at /api/twofa, per user_id
        self.twofa_count: Counter[str] = Counter()
        #: (method, path, user_id or None) for every request, in arrival order
        self.requests_log: list[tuple[str, str, str | None]] = []

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        for acc in accounts:
            self.add_account(acc)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> KiteSimulator:
        """Listen and serve in a daemon thread; ``base_url`` is set on return."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"kite-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> KiteSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------------------------

    def add_account(self, acc: SimAccount) -> None:
        with self._lock:
            self._accounts[acc.user_id] = acc

    def add_app(self, app: SimApp) -> None:
        with self._lock:
            self._apps[app.api_key] = app

    def portfolio(self, user_id: str) -> dict[str, Any]:
        """The account's live, mutable portfolio dict."""
        with self._lock:
            return self._accounts[user_id].portfolio

    def fail_next(
        self,
        count: int,
        kind: str,
        path_prefix: str = "/",
        *,
        location: str | None = None,
        status: int | None = None,
        user_id: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests whose path starts with ``path_prefix`` with a fault.

        Kinds: ``FAULT_KINDS``. Rules queue up in call order; the first matching rule is used.
        With ``user_id``, only requests about that user match (by form field or token).
        ``redirect`` answers ``status`` (default 307) with ``Location: location`` (default:
        the request's own path and query, so a client that follows it sends it again);
        ``drip`` sends the real answer's headers, then its body one byte every
        ``drip_seconds``; ``huge`` answers a valid success envelope of ``huge_mb`` MB.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count < 0:
            raise ValueError("count must be >= 0")
        if status is not None and not 300 <= status < 400:
            raise ValueError("a redirect status is 3xx")
        if count:
            with self._lock:
                self._faults.append(
                    _Fault(count, kind, path_prefix, location, status, user_id)
                )

    def expire_tokens(self, user_id: str | None = None) -> None:
        """Invalidate enctokens, access tokens and unused request tokens (all, or one user's)."""
        with self._lock:
            for tok, owner in list(self._enctokens.items()):
                if user_id is None or owner == user_id:
                    del self._enctokens[tok]
            for key, owner in list(self._access_tokens.items()):
                if user_id is None or owner == user_id:
                    del self._access_tokens[key]
            for tok, (owner, _k, _e) in list(self._request_tokens.items()):
                if user_id is None or owner == user_id:
                    del self._request_tokens[tok]

    def is_blocked(self, user_id: str) -> bool:
        with self._lock:
            return user_id in self._blocked

    def unblock(self, user_id: str) -> None:
        """What a password reset does: unblock and clear the 2FA failure count."""
        with self._lock:
            self._blocked.discard(user_id)
            self._twofa_failures.pop(user_id, None)

    @property
    def twofa_failures(self) -> dict[str, int]:
        with self._lock:
            return dict(self._twofa_failures)

    # -- request handling ----------------------------------------------------------------------

    def _respond(self, req: _Request) -> _Response:
        with self._lock:
            user_id = self._identify(req)
            self.requests_log.append((req.method, req.path, user_id))
            fault = self._take_fault(req.path, user_id)
        if self.latency > 0:
            self._stopping.wait(self.latency)
        if fault is not None and fault.kind == "slow":
            self._stopping.wait(self.slow_seconds)
        elif fault is not None and fault.kind == "drip":
            answer = self._dispatch_or_error(req)
            return _Response(
                answer.status,
                content_type=answer.content_type,
                headers=answer.headers,
                chunks=(answer.body[i : i + 1] for i in range(len(answer.body))),
                chunk_delay=self.drip_seconds,
                length=len(answer.body),
            )
        elif fault is not None:
            return self._fault_response(fault, req)
        return self._dispatch_or_error(req)

    def _dispatch_or_error(self, req: _Request) -> _Response:
        try:
            return self._dispatch(req)
        except Exception as exc:  # a simulator bug: answer like Kite would, visibly
            return _error(500, "GeneralException", f"simulator error: {exc!r}")

    def _identify(self, req: _Request) -> str | None:
        """The user a request is about (for ``requests_log``), without validating anything."""
        if "user_id" in req.form:
            return req.form["user_id"]
        auth = req.headers.get("authorization", "")
        scheme, _, cred = auth.partition(" ")
        if scheme == "enctoken":
            return self._token_owner.get(cred.strip())
        if scheme == "token":
            return self._token_owner.get(cred.strip().partition(":")[2])
        if "request_token" in req.form:
            owner = self._request_tokens.get(req.form["request_token"])
            return owner[0] if owner else self._token_owner.get(req.form["request_token"])
        if "enctoken" in req.cookies:
            return self._token_owner.get(req.cookies["enctoken"])
        if "kf_session" in req.cookies:
            pending = self._pending.get(req.cookies["kf_session"])
            return pending[0] if pending else None
        return None

    def _take_fault(self, path: str, user_id: str | None) -> _Fault | None:
        for fault in self._faults:
            if path.startswith(fault.path_prefix) and fault.user_id in (None, user_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return copy.copy(fault)
        return None

    def _fault_response(self, fault: _Fault, req: _Request) -> _Response:
        kind = fault.kind
        if kind == "redirect":
            own = req.path + (f"?{urlencode(req.query)}" if req.query else "")
            location = fault.location or own
            return _Response(fault.status or 307, b"", "text/html; charset=utf-8",
                             [("Location", location)])
        if kind == "huge":
            return self._huge_response()
        if kind in _FAULT_ENVELOPES:
            status, error_type, message = _FAULT_ENVELOPES[kind]
            return _error(status, error_type, message)
        if kind == "html":
            body = b"<html><body>Bad gateway</body></html>"
            return _Response(200, body, "text/html; charset=utf-8")
        if kind == "no_error_type":
            return _json(500, {"status": "error", "message": "Something unexpected went wrong"})
        if kind == "garbage":
            body = b'{"status": "success", "data": [{"tradingsymbol": "INF'
            return _Response(200, body, "application/json")
        raise AssertionError(kind)

    def _huge_response(self) -> _Response:
        """``{"status": "success", "data": ["xxx..."]}`` of ``huge_mb`` MB, made as sent."""
        head, tail = b'{"status": "success", "data": ["', b'"]}'
        total = max(int(self.huge_mb * 2**20), len(head) + len(tail))
        padding = total - len(head) - len(tail)

        def chunks() -> Iterable[bytes]:
            yield head
            piece = b"x" * 65536
            left = padding
            while left > 0:
                yield piece[: min(left, len(piece))]
                left -= len(piece)
            yield tail

        return _Response(200, chunks=chunks(), length=None if self.huge_chunked else total)

    def _dispatch(self, req: _Request) -> _Response:
        path = req.path.rstrip("/") or "/"
        web_part = _WEB_ROUTES.get(path)
        api_part = _API_ROUTES.get(path)
        if web_part is not None or api_part is not None or path in _GET_ROUTES:
            if req.method != "GET":
                return _error(405, "InputException", "Method not allowed")
        elif path in _POST_ROUTES:
            if req.method != "POST":
                return _error(405, "InputException", "Method not allowed")
        else:
            return _error(404, "GeneralException", "Route not found")

        if web_part is not None:
            return self._web_data(req, web_part)
        if api_part is not None:
            return self._api_data(req, api_part)
        handlers: dict[str, Callable[[_Request], _Response]] = {
            "/api/login": self._login,
            "/api/twofa": self._twofa,
            "/connect/login": self._connect_login,
            "/connect/finish": self._connect_finish,
            "/session/token": self._session_token,
        }
        return handlers[path](req)

    # -- web login ---------------------------------------------------------------------------

    def _login(self, req: _Request) -> _Response:
        user_id = req.form.get("user_id", "").strip()
        password = req.form.get("password", "")
        with self._lock:
            acc = self._accounts.get(user_id)
            if acc is None:
                return _error(400, "InputException", "Invalid `user_id`.")
            if user_id in self._blocked:
                return _error(403, "UserException", MSG_BLOCKED)
            if not secrets.compare_digest(password.encode(), acc.password.encode()):
                return _error(403, "UserException", "Invalid `password`.")
            self.login_count[user_id] += 1
            kf_session = _rand_alnum(32)
            request_id = _rand_alnum(64)
            self._pending[kf_session] = (user_id, request_id)
            data = {
                "user_id": user_id,
                "request_id": request_id,
                "twofa_type": "totp",
                "twofa_types": ["totp", "app_code"],
                "twofa_status": "active",
                "profile": {
                    "user_name": acc.profile.get("user_name"),
                    "user_shortname": acc.profile.get("user_shortname"),
                    "avatar_url": acc.profile.get("avatar_url"),
                },
            }
        return _ok(data, [("Set-Cookie", f"kf_session={kf_session}; path=/; HttpOnly")])

    def _twofa(self, req: _Request) -> _Response:
        user_id = req.form.get("user_id", "").strip()
        request_id = req.form.get("request_id", "")
        code = req.form.get("twofa_value", "").strip()
        with self._lock:
            pending = self._pending.get(req.cookies.get("kf_session", ""))
            if pending is None or pending != (user_id, request_id):
                return _error(403, "TokenException", MSG_LOGIN_SESSION)
            if req.form.get("twofa_type") != "totp":
                return _error(400, "InputException", "Invalid `twofa_type`.")
            if not (len(code) == 6 and code.isdigit()):
                return _error(400, "InputException", "Invalid `twofa_value`.")
            if user_id in self._blocked:
                return _error(403, "UserException", MSG_BLOCKED)
            acc = self._accounts[user_id]
            step = self._verify_totp(acc.totp_secret, code)
            if step is None or step <= self._last_totp_step.get(user_id, -1):
                self._twofa_failures[user_id] += 1
                if self._twofa_failures[user_id] >= MAX_TWOFA_FAILURES:
                    self._blocked.add(user_id)
                    self._pending = {k: v for k, v in self._pending.items() if v[0] != user_id}
                return _error(403, "TwoFAException", MSG_INVALID_TOTP)
            self._last_totp_step[user_id] = step
            self._twofa_failures.pop(user_id, None)
            del self._pending[req.cookies["kf_session"]]
            # A new web login ends the account's other web sessions.
            for tok, owner in list(self._enctokens.items()):
                if owner == user_id:
                    del self._enctokens[tok]
            enctoken = _new_enctoken()
            self._enctokens[enctoken] = user_id
            self._token_owner[enctoken] = user_id
            self.twofa_count[user_id] += 1
        cookies = [
            ("Set-Cookie", f"enctoken={enctoken}; path=/"),
            ("Set-Cookie", f"public_token={_rand_alnum(32)}; path=/"),
            ("Set-Cookie", f"user_id={user_id}; path=/"),
        ]
        return _ok({"profile": {}}, cookies)

    def _verify_totp(self, secret: str, code: str) -> int | None:
        """The 30 s step the code belongs to (window +-1), or None if it is wrong."""
        totp = pyotp.TOTP(secret)
        now = self.clock()
        if not totp.verify(code, for_time=now, valid_window=1):
            return None
        step = totp.timecode(now)
        for candidate in (step, step - 1, step + 1):
            if secrets.compare_digest(totp.generate_otp(candidate), code):
                return candidate
        return None

    def _web_data(self, req: _Request, part: str) -> _Response:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        with self._lock:
            user_id = self._enctokens.get(token.strip()) if scheme == "enctoken" else None
            if user_id is None:
                return _error(403, "TokenException", MSG_INVALID_SESSION)
            return _ok(self._data_for(user_id, part))

    def _data_for(self, user_id: str, part: str) -> Any:
        acc = self._accounts[user_id]
        pf = acc.portfolio
        if part == "profile":
            return copy.deepcopy(acc.profile)
        if part in ("orders", "trades"):
            return []
        if part == "positions":
            return copy.deepcopy(pf.get("positions", {"net": [], "day": []}))
        if part.startswith("margins"):
            margins = pf.get("margins", {})
            segment = part.partition("/")[2]
            return copy.deepcopy(margins.get(segment, {}) if segment else margins)
        return copy.deepcopy(pf.get(part, []))

    # -- Kite Connect ------------------------------------------------------------------------

    def _connect_login(self, req: _Request) -> _Response:
        api_key = req.query.get("api_key", "")
        with self._lock:
            if api_key not in self._apps:
                return _error(400, "InputException", "Invalid `api_key`.")
            sess_id = req.query.get("sess_id")
            if sess_id:
                if self._sess_ids.get(sess_id) != api_key:
                    return _error(400, "InputException", "Invalid `sess_id`.")
                page = _LOGIN_PAGE.format(api_key=api_key, sess_id=sess_id)
                return _Response(200, page.encode("utf-8"), "text/html; charset=utf-8")
            sess_id = _rand_alnum(32)
            self._sess_ids[sess_id] = api_key
        query = urlencode({"api_key": api_key, "sess_id": sess_id})
        return _redirect(f"{self.base_url}/connect/login?{query}")

    def _connect_finish(self, req: _Request) -> _Response:
        api_key = req.query.get("api_key", "")
        sess_id = req.query.get("sess_id", "")
        enctoken = req.cookies.get("enctoken", "")
        with self._lock:
            app = self._apps.get(api_key)
            if app is None:
                return _error(400, "InputException", "Invalid `api_key`.")
            user_id = self._enctokens.get(enctoken)
            if user_id is None:
                return _error(403, "TokenException", MSG_LOGIN_SESSION)
            if self._sess_ids.get(sess_id) != api_key:
                return _error(400, "InputException", "Invalid `sess_id`.")
            del self._sess_ids[sess_id]
            request_token = _rand_alnum(32)
            self._request_tokens[request_token] = (user_id, api_key, enctoken)
            self._token_owner[request_token] = user_id
        sep = "&" if "?" in app.redirect_url else "?"
        query = urlencode(
            {
                "action": "login",
                "type": "login",
                "status": "success",
                "request_token": request_token,
            }
        )
        return _redirect(f"{app.redirect_url}{sep}{query}")

    def _session_token(self, req: _Request) -> _Response:
        api_key = req.form.get("api_key", "")
        request_token = req.form.get("request_token", "")
        checksum = req.form.get("checksum", "")
        with self._lock:
            app = self._apps.get(api_key)
            if app is None:
                return _error(403, "TokenException", MSG_BAD_API_TOKEN)
            if not request_token or not checksum:
                return _error(400, "InputException", "Missing `request_token` or `checksum`.")
            expected = hashlib.sha256(
                (api_key + request_token + app.api_secret).encode("utf-8")
            ).hexdigest()
            if not secrets.compare_digest(expected, checksum.lower()):
                return _error(403, "TokenException", MSG_BAD_CHECKSUM)
            issued = self._request_tokens.get(request_token)
            if issued is None or issued[1] != api_key:
                return _error(403, "TokenException", MSG_BAD_REQUEST_TOKEN)
            del self._request_tokens[request_token]
            user_id, _key, enctoken = issued
            access_token = _rand_alnum(32)
            self._access_tokens[(api_key, access_token)] = user_id
            self._token_owner[access_token] = user_id
            profile = self._accounts[user_id].profile
            login_time = self.clock().astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")
            data = {
                "user_type": profile.get("user_type", "individual"),
                "email": profile.get("email", ""),
                "user_name": profile.get("user_name", ""),
                "user_shortname": profile.get("user_shortname", ""),
                "broker": profile.get("broker", "ZERODHA"),
                "exchanges": copy.deepcopy(profile.get("exchanges", [])),
                "products": copy.deepcopy(profile.get("products", [])),
                "order_types": copy.deepcopy(profile.get("order_types", [])),
                "avatar_url": profile.get("avatar_url"),
                "user_id": user_id,
                "api_key": api_key,
                "access_token": access_token,
                "public_token": _rand_alnum(32),
                "enctoken": enctoken,
                "refresh_token": "",
                "silo": "",
                "login_time": login_time,
                "meta": {"demat_consent": "physical"},
            }
        return _ok(data)

    def _api_data(self, req: _Request, part: str) -> _Response:
        if req.headers.get("x-kite-version", "").strip() != "3":
            return _error(400, "InputException", "Invalid or missing `X-Kite-Version` header.")
        scheme, _, cred = req.headers.get("authorization", "").partition(" ")
        api_key, _, access_token = cred.strip().partition(":")
        with self._lock:
            user_id = (
                self._access_tokens.get((api_key, access_token)) if scheme == "token" else None
            )
            if user_id is None:
                return _error(403, "TokenException", MSG_BAD_API_TOKEN)
            now = time.monotonic()
            calls = self._api_calls.setdefault(api_key, deque())
            while calls and now - calls[0] >= 1.0:
                calls.popleft()
            if len(calls) >= RATE_LIMIT_PER_SECOND:
                return _error(429, "NetworkException", MSG_TOO_MANY)
            calls.append(now)
            return _ok(self._data_for(user_id, part))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def serve_forever_cli(
    port: int, accounts: list[SimAccount], latency: float, *, apps: Iterable[SimApp] = ()
) -> None:
    """Serve on 127.0.0.1:``port`` until Ctrl-C or SIGTERM, then stop cleanly."""
    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: Any = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    sim = KiteSimulator(accounts, apps=apps, latency=latency, port=port).start()
    try:
        print(f"Kite simulator listening on {sim.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
