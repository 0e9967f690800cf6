"""Internal to the simulator: injected faults (``KiteSimulator.fail_next``) and the answers
they give, streamed ones included (a body that drips, a huge body)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from urllib.parse import urlencode

from snapshotter.simulator._http import (
    MSG_INVALID_SESSION,
    MSG_TOO_MANY,
    Request,
    Response,
    error,
    json_answer,
    redirect,
    too_many_200,
)
from snapshotter.simulator._state import Fault, SimulatorState

#: fault kinds accepted by :meth:`KiteSimulator.fail_next`
FAULT_KINDS = (
    "500",
    "502",
    "503",
    "504",
    "429",
    "429_as_200",
    "token",
    "html",
    "no_error_type",
    "garbage",
    "slow",
    "redirect",
    "drip",
    "huge",
    "hang_up",
)

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
    "token": (403, "TokenException", MSG_INVALID_SESSION),
}


class FaultInjection(SimulatorState):
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
        ``429_as_200`` is Kite's other rate-limit answer, HTTP 200 with "Too many
        requests" as a plain-text body; ``drip`` sends the real answer's headers, then its
        body one byte every ``drip_seconds``; ``huge`` answers a valid success envelope of
        ``huge_mb`` MB; ``hang_up`` handles the request (a 2FA code is spent), then closes
        the connection without a byte of answer.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count < 0:
            raise ValueError("count must be >= 0")
        if status is not None and not 300 <= status < 400:
            raise ValueError("a redirect status is 3xx")
        if count:
            with self._lock:
                self._faults.append(Fault(count, kind, path_prefix, location, status, user_id))

    def _take_fault(self, path: str, user_id: str | None) -> Fault | None:
        for fault in self._faults:
            if path.startswith(fault.path_prefix) and fault.user_id in (None, user_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return copy.copy(fault)
        return None

    def _with_fault(
        self, fault: Fault, req: Request, answer: Callable[[Request], Response]
    ) -> Response:
        """The faulty answer to ``req``; ``answer`` gives the real one."""
        kind = fault.kind
        if kind == "slow":
            self._stopping.wait(self.slow_seconds)
            return answer(req)
        if kind == "drip":
            real = answer(req)
            return Response(
                real.status,
                content_type=real.content_type,
                headers=real.headers,
                chunks=(real.body[i : i + 1] for i in range(len(real.body))),
                chunk_delay=self.drip_seconds,
                length=len(real.body),
            )
        if kind == "redirect":
            own = req.path + (f"?{urlencode(req.query)}" if req.query else "")
            return redirect(fault.location or own, fault.status or 307)
        if kind == "hang_up":
            answer(req)
            return Response(0, hang_up=True)
        if kind == "huge":
            return self._huge_response()
        if kind == "429_as_200":
            return too_many_200()
        if kind in _FAULT_ENVELOPES:
            status, error_type, message = _FAULT_ENVELOPES[kind]
            return error(status, error_type, message)
        if kind == "html":
            body = b"<html><body>Bad gateway</body></html>"
            return Response(200, body, "text/html; charset=utf-8")
        if kind == "no_error_type":
            return json_answer(
                500, {"status": "error", "message": "Something unexpected went wrong"}
            )
        if kind == "garbage":
            body = b'{"status": "success", "data": [{"tradingsymbol": "INF'
            return Response(200, body, "application/json")
        raise AssertionError(kind)

    def _huge_response(self) -> Response:
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

        return Response(200, chunks=chunks(), length=None if self.huge_chunked else total)
