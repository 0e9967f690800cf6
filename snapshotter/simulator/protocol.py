"""A Kite simulator: a real HTTP server on 127.0.0.1 that speaks Kite's protocol.

It lets the production client be tested over real sockets, with no Zerodha account and no
network: the web login (``/api/login``, ``/api/twofa``, ``/oms/...`` data routes with an
``enctoken``), the official Kite Connect v3 flow (``/connect/login``, ``/connect/finish``,
``/session/token`` and the API routes with ``token api_key:access_token``), the daily
candles of the indices its market produces (``_historical``), Kite's error envelopes, TOTP
checks with replay rejection and account blocking, a per-app rate limit, and injectable
faults (5xx, 429, HTML from a proxy, missing ``error_type``, garbage JSON, slow
answers, redirects, bodies that drip one byte at a time, huge bodies). Protocol notes:
``docs/kite-protocol.md`` (sections 1-5; section 8 lists what is simulated).

``KiteSimulator`` puts together the state (``_state``), the web login (``_web_login``), the
Kite Connect login (``_connect``), the data routes (``_data_routes``, ``_historical``) and
the fault injection (``_faults``) over the HTTP plumbing (``_http``). Its one command line is
``snapshotter simulate`` (``serve_forever_cli``).

Only the standard library's ``http.server`` plus ``pyotp``. Usage::

    with KiteSimulator(demo_accounts(3)) as sim:
        requests.post(f"{sim.base_url}/api/login", data={...})
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from datetime import date, datetime
from types import FrameType, TracebackType
from typing import Any

from snapshotter.simulator._connect import KiteConnect
from snapshotter.simulator._data_routes import API_ROUTES, WEB_ROUTES
from snapshotter.simulator._faults import FaultInjection
from snapshotter.simulator._historical import API_HISTORICAL, WEB_HISTORICAL, HistoricalRoutes
from snapshotter.simulator._http import Refused, Request, Response, Server, error
from snapshotter.simulator.accounts import SimAccount, SimApp


class KiteSimulator(FaultInjection, KiteConnect, HistoricalRoutes):
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
        is_session: Callable[[date], bool] | None = None,
    ):
        super().__init__(apps=apps, latency=latency, host=host, port=port, clock=clock,
                         is_session=is_session)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        for acc in accounts:
            self.add_account(acc)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> KiteSimulator:
        """Listen and serve in a daemon thread; ``base_url`` is set on return."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._server = Server((self.host, self.port), self)
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

    def hold_answers(self) -> None:
        """Requests keep arriving (and count in ``in_flight``) but wait, unanswered, until
        ``release_answers``: a test sees how many a client has in flight at once."""
        self._answering.clear()

    def release_answers(self) -> None:
        self._answering.set()

    def wait_in_flight(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` requests are in flight at once; False if that did not
        happen within ``timeout`` seconds."""
        with self._in_flight_changed:
            return self._in_flight_changed.wait_for(lambda: self.in_flight >= count, timeout)

    # -- request handling ----------------------------------------------------------------------

    def _respond(self, req: Request) -> Response:
        with self._lock:
            user_id = self._identify(req)
            self.requests_log.append((req.method, req.path, user_id))
            self.request_headers.append((req.method, req.path, dict(req.headers)))
            fault = self._take_fault(req.path, user_id)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._in_flight_changed.notify_all()
        try:
            while not self._answering.wait(0.05) and not self._stopping.is_set():
                pass
            if self.latency > 0:
                self._stopping.wait(self.latency)
            if fault is not None:
                return self._with_fault(fault, req, self._dispatch_or_error)
            return self._dispatch_or_error(req)
        finally:
            with self._lock:
                self.in_flight -= 1
                self._in_flight_changed.notify_all()

    def _dispatch_or_error(self, req: Request) -> Response:
        try:
            return self._dispatch(req)
        except Refused as refusal:
            return refusal.answer
        except Exception as exc:  # a simulator bug: answer like Kite would, visibly
            return error(500, "GeneralException", f"simulator error: {exc!r}")

    def _identify(self, req: Request) -> str | None:
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

    def _dispatch(self, req: Request) -> Response:
        route = self._route(req.path.rstrip("/") or "/")
        if route is None:
            return error(404, "GeneralException", "Route not found")
        methods, handler = route
        if req.method not in methods.split("|"):
            return error(405, "InputException", "Method not allowed")
        return handler(req)

    def _route(self, path: str) -> tuple[str, Callable[[Request], Response]] | None:
        """The method ``path`` answers to, and its handler."""
        if path in WEB_ROUTES:
            part = WEB_ROUTES[path]
            return "GET", lambda req: self._web_data(req, part)
        if path in API_ROUTES:
            part = API_ROUTES[path]
            return "GET", lambda req: self._api_data(req, part)
        if path.startswith((WEB_HISTORICAL, API_HISTORICAL)):
            return "GET", self._historical
        logins: dict[str, tuple[str, Callable[[Request], Response]]] = {
            "/api/login": ("POST", self._login),
            "/api/twofa": ("POST", self._twofa),
            "/connect/login": ("GET|POST", self._connect_login),
            "/connect/finish": ("GET", self._connect_finish),
            "/session/token": ("POST", self._session_token),
        }
        return logins.get(path)


def serve_forever_cli(
    port: int,
    accounts: list[SimAccount],
    latency: float,
    *,
    apps: Iterable[SimApp] = (),
    on_listening: Callable[[str], None] | None = None,
    is_session: Callable[[date], bool] | None = None,
) -> None:
    """`snapshotter simulate`: serve on 127.0.0.1:``port`` until Ctrl-C or SIGTERM, then
    stop cleanly. ``on_listening(base_url)`` runs once the port is bound (a port in use
    raises ``OSError`` before it)."""
    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: Any = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    sim = KiteSimulator(accounts, apps=apps, latency=latency, port=port,
                        is_session=is_session).start()
    try:
        if on_listening is not None:
            on_listening(sim.base_url)
        print(f"Kite simulator listening on {sim.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
