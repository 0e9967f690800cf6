"""Internal to the simulator: the data routes, on the web (``/oms/...`` with an enctoken)
and on Kite Connect (the same paths without ``/oms``, with ``token api_key:access_token``
and a per-app rate limit). An enctoken is refused on the Kite Connect routes, as Kite has
refused it there since mid-2024."""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

from snapshotter.simulator._http import (
    MSG_BAD_API_TOKEN,
    MSG_BAD_REQUEST,
    MSG_INVALID_SESSION,
    MSG_TOO_MANY,
    Refused,
    Request,
    Response,
    ok,
    too_many_200,
)
from snapshotter.simulator._state import SimulatorState

#: web path -> the part of the account it answers
WEB_ROUTES: dict[str, str] = {
    "/oms/portfolio/holdings": "holdings",
    "/oms/portfolio/positions": "positions",
    "/oms/user/margins": "margins",
    "/oms/user/margins/equity": "margins/equity",
    "/oms/user/margins/commodity": "margins/commodity",
    "/oms/mf/holdings": "mf_holdings",
    "/oms/user/profile": "profile",
    "/oms/orders": "orders",
    "/oms/trades": "trades",
}
#: Kite Connect path -> the part of the account it answers
API_ROUTES: dict[str, str] = {
    path.removeprefix("/oms"): part for path, part in WEB_ROUTES.items()
}

#: Kite Connect API rate limit: at most this many requests per api_key in any 1 s window
RATE_LIMIT_PER_SECOND = 10


class DataRoutes(SimulatorState):
    def _web_user(self, req: Request) -> str:
        """The user of a web data request's enctoken (call with ``_lock`` held)."""
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        user_id = self._enctokens.get(token.strip()) if scheme == "enctoken" else None
        if user_id is None:
            raise Refused(403, "TokenException", MSG_INVALID_SESSION)
        return user_id

    def _api_user(self, req: Request) -> tuple[str, str]:
        """The user and api_key of a Kite Connect data request, counted against the app's
        rate limit (call with ``_lock`` held)."""
        if req.headers.get("x-kite-version", "").strip() != "3":
            raise Refused(400, "InputException", "Invalid or missing `X-Kite-Version` header.")
        scheme, _, cred = req.headers.get("authorization", "").partition(" ")
        if scheme == "enctoken":
            raise Refused(400, "InputException", MSG_BAD_REQUEST)
        api_key, _, access_token = cred.strip().partition(":")
        user_id = (
            self._access_tokens.get((api_key, access_token)) if scheme == "token" else None
        )
        if user_id is None:
            raise Refused(403, "TokenException", MSG_BAD_API_TOKEN)
        self._count_api_call(api_key)
        return user_id, api_key

    def _count_api_call(self, api_key: str) -> None:
        """One call against the app's limit, by the simulator's clock (so tests that hold
        the clock still see the limit exactly); past it, HTTP 429, or now and then
        (``rate_limited_200_every``) HTTP 200 with "Too many requests" as the body."""
        now = self.clock().timestamp()
        calls = self._api_calls.setdefault(api_key, deque())
        while calls and not 0 <= now - calls[0] < 1.0:
            calls.popleft()
        if len(calls) >= RATE_LIMIT_PER_SECOND:
            self._api_refusals[api_key] += 1
            every = self.rate_limited_200_every
            if every and self._api_refusals[api_key] % every == 0:
                raise Refused(200, "", MSG_TOO_MANY, answer=too_many_200())
            raise Refused(429, "NetworkException", MSG_TOO_MANY)
        calls.append(now)

    def _web_data(self, req: Request, part: str) -> Response:
        with self._lock:
            return ok(self._data_for(self._web_user(req), part))

    def _api_data(self, req: Request, part: str) -> Response:
        with self._lock:
            user_id, _api_key = self._api_user(req)
            return ok(self._data_for(user_id, part))

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
