"""Who may see the dashboard (docs/dashboard.md#who-may-see-it).

With ``serve.password`` (or ``serve.password_file``) every page but ``/login``,
``/static/*`` and ``/healthz`` needs a session: a random token in an HttpOnly,
SameSite=Strict cookie, kept server-side with an idle and a total expiry. Wrong passwords
lock the client out for a while; the client is the TCP peer, or, when the peer is one of
``serve.trusted_proxy``, the first address in X-Forwarded-For that is not a trusted proxy
(read from the right). Every POST must come from the dashboard's own pages, password or
not.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from snapshotter.serve.app import Dashboard

log = logging.getLogger("snapshotter.serve")

SESSION_COOKIE = "snapshotter_session"
FORM_COOKIE = "snapshotter_login"  # the login form's token (against a forged login)
BOUNCE_COOKIE = "snapshotter_bounce"  # one re-navigation per cross-site arrival

IDLE_SECONDS = 12 * 3600  # a session unused this long ends
MAX_AGE_SECONDS = 7 * 24 * 3600  # and none lives longer
FAILURES = 5  # wrong passwords from one client within WINDOW_SECONDS lock it out
WINDOW_SECONDS = 15 * 60
LOCKED_SECONDS = 15 * 60

OPEN_PATHS = frozenset({"/login", "/healthz"})
OPEN_PREFIX = "/static/"
#: where Kite sends the phone back after a Kite Connect login (a cross-site navigation)
CALLBACK_PATH = "/kite/callback"

MAX_FORM_BYTES = 8192
MAX_SESSIONS = 1000
MAX_CLIENTS = 10_000

Clock = Callable[[], float]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _key(token: str) -> bytes:
    """What the stores hold instead of a cookie's value."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def password_matches(given: str, password: str) -> bool:
    """Constant time: compares two digests of equal length."""
    return hmac.compare_digest(_key(given), _key(password))


@dataclass
class Session:
    started: float
    seen: float
    form_token: str  # the logout form's token


class Sessions:
    """The logged-in browsers: token digest -> Session, ended after IDLE_SECONDS unused or
    MAX_AGE_SECONDS in all (the oldest dropped beyond MAX_SESSIONS)."""

    def __init__(self, clock: Clock = time.monotonic, idle: float = IDLE_SECONDS,
                 max_age: float = MAX_AGE_SECONDS) -> None:
        self.clock, self.idle, self.max_age = clock, idle, max_age
        self._sessions: dict[bytes, Session] = {}

    def start(self) -> str:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].started)]
        token = secrets.token_urlsafe(32)
        self._sessions[_key(token)] = Session(now, now, secrets.token_urlsafe(24))
        return token

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its idle clock restarted), else None."""
        if not token:
            return None
        key = _key(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.clock()
        if self._expired(session, now):
            del self._sessions[key]
            return None
        session.seen = now
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_key(token), None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.seen >= self.idle or now - session.started >= self.max_age


class Lockout:
    """Wrong passwords per client: FAILURES within WINDOW_SECONDS lock it for
    LOCKED_SECONDS, during which no password is checked."""

    def __init__(self, clock: Clock = time.monotonic, failures: int = FAILURES,
                 window: float = WINDOW_SECONDS, locked_for: float = LOCKED_SECONDS) -> None:
        self.clock, self.failures, self.window, self.locked_for = \
            clock, failures, window, locked_for
        self._failed: dict[str, deque[float]] = {}
        self._until: dict[str, float] = {}

    def locked(self, client: str) -> float:
        """Seconds left of the client's lock-out (0: not locked)."""
        until = self._until.get(client)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._until[client]
            return 0.0
        return left

    def fail(self, client: str) -> bool:
        """Count a wrong password; True when it locks the client out."""
        now = self.clock()
        if client not in self._failed and len(self._failed) >= MAX_CLIENTS:
            self._forget_old(now)
        times = self._failed.setdefault(client, deque())
        times.append(now)
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) < self.failures:
            return False
        del self._failed[client]
        self._until[client] = now + self.locked_for
        return True

    def clear(self, client: str) -> None:
        self._failed.pop(client, None)

    def _forget_old(self, now: float) -> None:
        for client in [c for c, t in self._failed.items() if now - t[-1] >= self.window]:
            del self._failed[client]
        for client in [c for c, u in self._until.items() if u <= now]:
            del self._until[client]
        while len(self._failed) >= MAX_CLIENTS:
            del self._failed[next(iter(self._failed))]


def address(text: str | None) -> Address | None:
    """An IP address as a peer or a forwarded hop gives it ('1.2.3.4:5', '[::1]:5'); an
    IPv4-mapped IPv6 address as its IPv4 address."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


class Proxies:
    """``serve.trusted_proxy``: the peers whose X-Forwarded-* headers are believed."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks)

    def trusts(self, host: str | None) -> bool:
        found = address(host)
        return found is not None and any(found in net for net in self.networks)

    def client(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """Who sent the request: the peer, unless it is a trusted proxy; then the
        right-most X-Forwarded-For hop that is not one (each proxy appends the address
        it heard from; what is left of that is whatever the client wrote)."""
        if not self.trusts(peer):
            return _shown(peer)
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")
                if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return _shown(hop)
        return _shown(hops[0] if hops else peer)

    def scheme(self, request: Request) -> str:
        """https when the request came over TLS, directly or to a trusted proxy."""
        scheme = request.url.scheme
        if scheme != "https" and self.trusts(_peer(request)):
            forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0]
            if forwarded.strip().lower() == "https":
                return "https"
        return scheme


def _shown(hop: str | None) -> str:
    found = address(hop)
    if found is not None:
        return str(found)
    # Not an address (a proxy's "unknown", an obfuscated name): shown, but harmless in a log.
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in (hop or "unknown")[:64])


def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None


def local_path(value: str | None) -> str:
    """``value`` if it is a path on this site (no scheme, no host, no ``//``), else ``/``:
    a ``next`` that cannot send the browser elsewhere."""
    if not value or not value.startswith("/") or value.startswith("//") \
            or any(c == "\\" or ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path == "/login":
        return "/"
    return value


def _target(request: Request) -> str:
    """The request's path and query, as it may be written in a URL or an attribute."""
    query = request.url.query
    target = request.url.path + (f"?{query}" if query else "")
    return quote(target, safe="/?&=%:@!$()*+,;~-._")


@dataclass
class Guard:
    """The password check, the sessions and the lock-out of one dashboard."""

    dashboard: Dashboard
    password: str | None
    proxies: Proxies
    clock: Clock = time.monotonic

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.clock)
        self.lockout = Lockout(self.clock)
        url = self.dashboard.config.serve.url
        self.own_hosts = {urlsplit(url).netloc.lower()} if url else set()

    async def __call__(self, request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method not in ("GET", "HEAD", "OPTIONS") and not self.same_origin(request):
            log.warning("serve: %s %s refused: sent from another site (client %s)",
                        request.method, request.url.path, self.client(request))
            return self._page(request, 403, "Refused",
                              "refused: this form was not sent from the dashboard's own page")
        if self.password is None:
            return await call_next(request)
        path = request.url.path
        if path == "/login":
            if request.method == "POST":
                return await self.login(request)
            return self.login_page(request)
        if path == "/logout" and request.method == "POST":
            return await self.logout(request)
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            request.state.logout_token = session.form_token
            response = await call_next(request)
            if BOUNCE_COOKIE in request.cookies:  # it did its work
                self._forget(response, BOUNCE_COOKIE, "/")
            return response
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIX):
            return await call_next(request)
        if request.method not in ("GET", "HEAD"):
            return self._page(request, 403, "Log in", "log in first")
        if request.headers.get("sec-fetch-mode", "navigate") != "navigate":
            # What a browser fetches for a page (the icon it asks for by itself), not a
            # page: no login page for it, whose new form token would replace the one of
            # the login page the person is typing into (then their login is refused).
            return self._page(request, 401, "Log in", "log in first")
        if self.arrived_cross_site(request):
            return self.bounce(request)
        return RedirectResponse(f"/login?next={quote(_target(request), safe='/')}", 303)

    # -- who is asking -------------------------------------------------------------------

    def client(self, request: Request) -> str:
        return self.proxies.client(_peer(request), request.headers.getlist("x-forwarded-for"))

    def same_origin(self, request: Request) -> bool:
        """A POST from a page of this dashboard: Sec-Fetch-Site says so when the browser
        sends it; else an Origin naming another host is refused. (Under our
        Referrer-Policy: no-referrer, browsers send ``Origin: null`` with our own forms:
        the login and logout forms carry a token as well.)"""
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            return site == "same-origin"
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return True
        hosts = {request.headers.get("host", "").lower(), *self.own_hosts}
        if self.proxies.trusts(_peer(request)):
            hosts.add(request.headers.get("x-forwarded-host", "").split(",")[0].strip().lower())
        return urlsplit(origin).netloc.lower() in hosts - {""}

    def arrived_cross_site(self, request: Request) -> bool:
        """A navigation from another site (Kite sending the phone back): a SameSite=Strict
        cookie is not sent with it, so the browser may well have a session."""
        if BOUNCE_COOKIE in request.cookies:
            return False
        site = request.headers.get("sec-fetch-site")
        if site == "cross-site":
            return True
        return request.url.path == CALLBACK_PATH and site is None and not request.cookies

    # -- pages ---------------------------------------------------------------------------

    def bounce(self, request: Request) -> Response:
        """The same URL again, navigated from this site, so that the cookie comes."""
        response = self.dashboard.page(request, "bounce.html", title="Kite Snapshotter",
                                       target=_target(request))
        self._cookie(request, response, BOUNCE_COOKIE, "1", max_age=60, path="/")
        return response

    def login_page(self, request: Request, status: int = 200, message: str = "",
                   next_path: str | None = None) -> Response:
        token = request.cookies.get(FORM_COOKIE) or ""
        if not 20 <= len(token) <= 64 or not token.replace("-", "").replace("_", "").isalnum():
            token = secrets.token_urlsafe(24)
        next_path = local_path(next_path if next_path is not None
                               else request.query_params.get("next"))
        response = self.dashboard.page(request, "login.html", status_code=status,
                                       title="Log in", message=message, token=token,
                                       next=next_path)
        self._cookie(request, response, FORM_COOKIE, token, max_age=None, path="/login")
        self._forget(response, BOUNCE_COOKIE, "/")
        return response

    async def login(self, request: Request) -> Response:
        client = self.client(request)
        form = await _form(request)
        next_path = local_path(form.get("next"))
        left = self.lockout.locked(client)
        if left:
            minutes = math.ceil(left / 60)
            response = self.login_page(
                request, 429, f"too many wrong passwords from {client}: locked for "
                f"{minutes} more minute{'s' if minutes != 1 else ''}", next_path)
            response.headers["Retry-After"] = str(math.ceil(left))
            return response
        expected = request.cookies.get(FORM_COOKIE) or ""
        if not expected or not hmac.compare_digest(_key(form.get("token", "")),
                                                   _key(expected)):
            return self.login_page(request, 403, "this login form has expired: "
                                   "type the password again", next_path)
        assert self.password is not None
        if not password_matches(form.get("password", ""), self.password):
            locked = self.lockout.fail(client)
            log.warning("serve: wrong dashboard password from %s", client)
            if locked:
                log.warning("serve: %s locked out for %d minutes after %d wrong passwords",
                            client, LOCKED_SECONDS // 60, FAILURES)
            return self.login_page(request, 200, "wrong password", next_path)
        self.lockout.clear(client)
        token = self.sessions.start()
        log.info("serve: login from %s", client)
        response = RedirectResponse(next_path, 303)
        self._cookie(request, response, SESSION_COOKIE, token, max_age=MAX_AGE_SECONDS,
                     path="/")
        self._forget(response, FORM_COOKIE, "/login")
        return response

    async def logout(self, request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        session = self.sessions.get(token)
        form = await _form(request)
        if session is not None and not hmac.compare_digest(
                _key(form.get("token", "")), _key(session.form_token)):
            return self._page(request, 403, "Refused", "refused: this logout form has expired")
        self.sessions.end(token)
        response = RedirectResponse("/login", 303)
        self._forget(response, SESSION_COOKIE, "/")
        return response

    def _page(self, request: Request, status: int, title: str, message: str) -> Response:
        return self.dashboard.page(request, "error.html", status_code=status, title=title,
                                   message=message)

    @staticmethod
    def _forget(response: Response, name: str, path: str) -> None:
        response.delete_cookie(name, path=path, httponly=True, samesite="strict")

    def _cookie(self, request: Request, response: Response, name: str, value: str,
                max_age: int | None, path: str) -> None:
        response.set_cookie(name, value, max_age=max_age, path=path, httponly=True,
                            samesite="strict",
                            secure=self.proxies.scheme(request) == "https")


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the first value of each field); too big or not text: {}."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items()}


class _Gate(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        super().__init__(app, dispatch=guard)


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    """None of its own: /login and /logout are answered by the middleware."""
    return []


def middleware(dashboard: Dashboard) -> list[Middleware]:
    serve = dashboard.config.serve
    guard = Guard(dashboard, serve.password, Proxies(serve.trusted_proxy))
    return [Middleware(_Gate, guard=guard)]
