"""Internal to the simulator: everything a ``KiteSimulator`` knows, in one place.

The login flows, the data routes and the fault injection are mixins over this state
(``_web_login``, ``_connect``, ``_data_routes``, ``_faults``); ``protocol.KiteSimulator``
puts them together. Every piece of state is guarded by ``_lock``.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from snapshotter.simulator.accounts import SimAccount, SimApp


@dataclass
class Fault:
    remaining: int
    kind: str
    path_prefix: str
    location: str | None = None  # "redirect": where to (default: the request's own URL)
    status: int | None = None  # "redirect": 3xx status (default 307)
    user_id: str | None = None  # only requests about this user (as requests_log names them)


class SimulatorState:
    def __init__(
        self,
        *,
        apps: Iterable[SimApp],
        latency: float,
        host: str,
        port: int,
        clock: Callable[[], datetime] | None,
        is_session: Callable[[date], bool] | None = None,
    ):
        self.latency = latency
        #: the days the exchange trades (the historical route's candles): every weekday,
        #: unless the product's NSE calendar is given
        self.is_session: Callable[[date], bool] = is_session or (lambda d: d.weekday() < 5)
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
        #: seconds, for the rate limit's one-second window (tests inject their own)

        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._in_flight_changed = threading.Condition(self._lock)
        #: cleared by ``hold_answers``: requests arrive and wait until ``release_answers``
        self._answering = threading.Event()
        self._answering.set()
        self._accounts: dict[str, SimAccount] = {}
        self._apps: dict[str, SimApp] = {a.api_key: a for a in apps}
        self._faults: list[Fault] = []
        # web login state
        self._pending: dict[str, tuple[str, str]] = {}  # kf_session -> (user_id, request_id)
        self._enctokens: dict[str, str] = {}  # valid enctoken -> user_id
        self._twofa_failures: Counter[str] = Counter()
        self._blocked: set[str] = set()
        self._last_totp_step: dict[str, int] = {}
        # Kite Connect state
        self._sess_ids: dict[str, str] = {}  # sess_id -> api_key
        #: sess_id -> the login URL's ``redirect_params`` (a query string), for the redirect
        self._sess_params: dict[str, str] = {}
        self._request_tokens: dict[str, tuple[str, str, str]] = {}  # -> (user, api_key, enc)
        self._access_tokens: dict[tuple[str, str], str] = {}  # (api_key, token) -> user_id
        self._api_calls: dict[str, deque[float]] = {}
        self._api_refusals: Counter[str] = Counter()  # rate-limited answers, per api_key
        #: every how many rate-limited answers one is HTTP 200 with "Too many requests" as
        #: its body instead of HTTP 429, as Kite sometimes answers (0: never)
        self.rate_limited_200_every = 2
        # every token ever issued -> user_id, to name the user in requests_log
        self._token_owner: dict[str, str] = {}

        #: successful password checks at /api/login, per user_id
        self.login_count: Counter[str] = Counter()
        #: successful 2FA at /api/twofa, per user_id
        self.twofa_count: Counter[str] = Counter()
        #: (method, path, user_id or None) for every request, in arrival order
        self.requests_log: list[tuple[str, str, str | None]] = []
        #: requests arrived and not yet answered, and the most there were at once
        self.in_flight = 0
        self.max_in_flight = 0
        #: (method, path, headers with lower-cased names) for every request, in arrival order
        self.request_headers: list[tuple[str, str, dict[str, str]]] = []
