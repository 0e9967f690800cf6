"""Internal to the simulator: Kite's historical candles route for the indices its market
produces (``market.INDICES``: NIFTY 50 is instrument 256265).

``GET /oms/instruments/historical/{token}/day?from=YYYY-MM-DD&to=YYYY-MM-DD`` with a web
session's enctoken, or ``/instruments/historical/...`` with Kite Connect, whose apps get
``PermissionException`` (the Personal plan has no market data) unless their ``SimApp``
has ``market_data=True``. As Kite: one candle per session in the range (both ends
included; ``is_session``: every weekday unless given the NSE calendar), none after the
simulator's clock (today's from 09:15 IST), at most 2000 days
per request for the day interval, 400 ``InputException`` for a bad token, interval or
date.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from snapshotter.simulator._data_routes import DataRoutes
from snapshotter.simulator._http import Refused, Request, Response, ok
from snapshotter.simulator.market import INDICES

WEB_HISTORICAL = "/oms/instruments/historical/"
API_HISTORICAL = "/instruments/historical/"
#: the longest span (days, both ends included) one request may ask, per interval
MAX_DAYS = {"day": 2000}
MSG_NO_PERMISSION = "Insufficient permission for that call."
_OPEN = time(9, 15)
_IST = timezone(timedelta(hours=5, minutes=30), "IST")


def _day(req: Request, name: str) -> date:
    text = req.query.get(name, "").strip()
    try:  # "2026-12-01" or "2026-12-01 09:15:00", as Kite takes them
        return datetime.strptime(text[:10], "%Y-%m-%d").date()  # noqa: DTZ007 (a date)
    except ValueError:
        raise Refused(400, "InputException", f"invalid {name} date") from None


class HistoricalRoutes(DataRoutes):
    def _historical(self, req: Request) -> Response:
        path = req.path.rstrip("/")
        web = path.startswith(WEB_HISTORICAL)
        with self._lock:
            if web:
                self._web_user(req)
            else:
                _user, api_key = self._api_user(req)
                if not self._apps[api_key].market_data:
                    raise Refused(403, "PermissionException", MSG_NO_PERMISSION)
        token_text, _, interval = path.removeprefix(
            WEB_HISTORICAL if web else API_HISTORICAL).partition("/")
        index = INDICES.get(int(token_text)) if token_text.isdigit() else None
        if index is None:
            raise Refused(400, "InputException", "invalid token")
        if interval not in MAX_DAYS:
            raise Refused(400, "InputException", "invalid interval")
        start, end = _day(req, "from"), _day(req, "to")
        if start > end:
            raise Refused(400, "InputException", "from date cannot be after to date")
        if (end - start).days + 1 > MAX_DAYS[interval]:
            raise Refused(400, "InputException",
                          f"interval exceeds max limit: {MAX_DAYS[interval]} days")
        now = self.clock().astimezone(_IST)
        last = now.date() if now.time() >= _OPEN else now.date() - timedelta(days=1)
        candles = index.candles(start, min(end, last))
        sessions = [c for c in candles if self.is_session(date.fromisoformat(c[0][:10]))]
        return ok({"candles": sessions})
