"""Internal to the simulator: Kite's web login (``/api/login`` then ``/api/twofa``), with
the account's 2FA type (``app_code`` today, ``totp`` for older accounts), TOTP checks,
replay rejection and blocking after too many wrong codes."""

from __future__ import annotations

import secrets

import pyotp

from snapshotter.simulator._http import (
    MSG_BLOCKED,
    MSG_INVALID_TOTP,
    MSG_LOGIN_SESSION,
    MSG_TWOFA_TYPE,
    Request,
    Response,
    error,
    ok,
)
from snapshotter.simulator._state import SimulatorState
from snapshotter.simulator._tokens import new_enctoken, random_alnum
from snapshotter.simulator.accounts import TWOFA_TYPES

#: 2FA failures (wrong or replayed codes) after which the account is blocked
MAX_TWOFA_FAILURES = 5


class WebLogin(SimulatorState):
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

    def _login(self, req: Request) -> Response:
        user_id = req.form.get("user_id", "").strip()
        password = req.form.get("password", "")
        with self._lock:
            acc = self._accounts.get(user_id)
            if acc is None:
                return error(400, "InputException", "Invalid `user_id`.")
            if user_id in self._blocked:
                return error(403, "UserException", MSG_BLOCKED)
            if not secrets.compare_digest(password.encode(), acc.password.encode()):
                return error(403, "UserException", "Invalid `password`.")
            self.login_count[user_id] += 1
            kf_session = random_alnum(32)
            request_id = random_alnum(64)
            self._pending[kf_session] = (user_id, request_id)
            data = {
                "user_id": user_id,
                "request_id": request_id,
                "twofa_type": acc.twofa_type,
                "twofa_types": list(TWOFA_TYPES[acc.twofa_type]),
                "twofa_status": "active",
                "profile": {
                    "user_name": acc.profile.get("user_name"),
                    "user_shortname": acc.profile.get("user_shortname"),
                    "avatar_url": acc.profile.get("avatar_url"),
                },
            }
        return ok(data, [("Set-Cookie", f"kf_session={kf_session}; path=/; HttpOnly")])

    def _twofa(self, req: Request) -> Response:
        user_id = req.form.get("user_id", "").strip()
        request_id = req.form.get("request_id", "")
        code = req.form.get("twofa_value", "").strip()
        with self._lock:
            pending = self._pending.get(req.cookies.get("kf_session", ""))
            if pending is None or pending != (user_id, request_id):
                return error(403, "TokenException", MSG_LOGIN_SESSION)
            acc = self._accounts[user_id]
            # Clients that send no type get the one offered; a type the account does not
            # offer (a hard-coded "totp" on an app_code account) is refused, code unread.
            twofa_type = req.form.get("twofa_type") or acc.twofa_type
            if twofa_type not in TWOFA_TYPES[acc.twofa_type] or twofa_type == "sms":
                return error(400, "InputException", MSG_TWOFA_TYPE)
            if not (len(code) == 6 and code.isdigit()):
                return error(400, "InputException", "Invalid `twofa_value`.")
            if user_id in self._blocked:
                return error(403, "UserException", MSG_BLOCKED)
            step = self._verify_totp(acc.totp_secret, code)
            if step is None or step <= self._last_totp_step.get(user_id, -1):
                self._twofa_failures[user_id] += 1
                if self._twofa_failures[user_id] >= MAX_TWOFA_FAILURES:
                    self._blocked.add(user_id)
                    self._pending = {k: v for k, v in self._pending.items() if v[0] != user_id}
                return error(403, "TwoFAException", MSG_INVALID_TOTP)
            self._last_totp_step[user_id] = step
            self._twofa_failures.pop(user_id, None)
            del self._pending[req.cookies["kf_session"]]
            # A new web login ends the account's other web sessions.
            for tok, owner in list(self._enctokens.items()):
                if owner == user_id:
                    del self._enctokens[tok]
            enctoken = new_enctoken()
            self._enctokens[enctoken] = user_id
            self._token_owner[enctoken] = user_id
            self.twofa_count[user_id] += 1
        cookies = [
            ("Set-Cookie", f"enctoken={enctoken}; path=/"),
            ("Set-Cookie", f"public_token={random_alnum(32)}; path=/"),
            ("Set-Cookie", f"user_id={user_id}; path=/"),
        ]
        return ok({"profile": {}}, cookies)

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
