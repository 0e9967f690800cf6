"""Internal to the simulator: the official Kite Connect v3 login (``/connect/login``,
``/connect/finish``, ``/session/token``), which rides on a web login's enctoken."""

from __future__ import annotations

import copy
import hashlib
import secrets
from datetime import timedelta, timezone
from urllib.parse import urlencode

from snapshotter.simulator._http import (
    MSG_BAD_API_TOKEN,
    MSG_BAD_CHECKSUM,
    MSG_BAD_REQUEST_TOKEN,
    MSG_LOGIN_SESSION,
    Refused,
    Request,
    Response,
    error,
    ok,
    redirect,
)
from snapshotter.simulator._state import SimulatorState
from snapshotter.simulator._tokens import random_alnum
from snapshotter.simulator.accounts import SimApp

IST = timezone(timedelta(hours=5, minutes=30), "IST")

_LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>Kite - Zerodha's fast and elegant flagship trading platform</title></head>
<body><form method="post" action="/api/login">
<input name="user_id" placeholder="User ID"><input name="password" type="password">
<button type="submit">Login</button></form>
<!-- api_key={api_key} sess_id={sess_id} -->
</body></html>
"""


def _redirect_with_query(url: str, params: dict[str, str]) -> Response:
    sep = "&" if "?" in url else "?"
    return redirect(f"{url}{sep}{urlencode(params)}")


class KiteConnect(SimulatorState):
    def _login_page_app(self, api_key: str) -> SimApp:
        """The app a Connect login page names; Kite refuses an unknown one."""
        app = self._apps.get(api_key)
        if app is None:
            raise Refused(400, "InputException", "Invalid `api_key`.")
        return app

    def _check_sess_id(self, api_key: str, sess_id: str) -> None:
        """A Connect login page's ``sess_id`` must be one issued for ``api_key``."""
        if self._sess_ids.get(sess_id) != api_key:
            raise Refused(400, "InputException", "Invalid `sess_id`.")
    def _connect_login(self, req: Request) -> Response:
        api_key = req.query.get("api_key", "")
        with self._lock:
            self._login_page_app(api_key)
            sess_id = req.query.get("sess_id")
            if sess_id:
                self._check_sess_id(api_key, sess_id)
                page = _LOGIN_PAGE.format(api_key=api_key, sess_id=sess_id)
                return Response(200, page.encode("utf-8"), "text/html; charset=utf-8")
            sess_id = random_alnum(32)
            self._sess_ids[sess_id] = api_key
        return _redirect_with_query(
            f"{self.base_url}/connect/login", {"api_key": api_key, "sess_id": sess_id}
        )

    def _connect_finish(self, req: Request) -> Response:
        api_key = req.query.get("api_key", "")
        sess_id = req.query.get("sess_id", "")
        enctoken = req.cookies.get("enctoken", "")
        with self._lock:
            app = self._login_page_app(api_key)
            user_id = self._enctokens.get(enctoken)
            if user_id is None:
                return error(403, "TokenException", MSG_LOGIN_SESSION)
            self._check_sess_id(api_key, sess_id)
            del self._sess_ids[sess_id]
            request_token = random_alnum(32)
            self._request_tokens[request_token] = (user_id, api_key, enctoken)
            self._token_owner[request_token] = user_id
        return _redirect_with_query(app.redirect_url, {
            "action": "login",
            "type": "login",
            "status": "success",
            "request_token": request_token,
        })

    def _session_token(self, req: Request) -> Response:
        api_key = req.form.get("api_key", "")
        request_token = req.form.get("request_token", "")
        checksum = req.form.get("checksum", "")
        with self._lock:
            app = self._apps.get(api_key)
            if app is None:
                return error(403, "TokenException", MSG_BAD_API_TOKEN)
            if not request_token or not checksum:
                return error(400, "InputException", "Missing `request_token` or `checksum`.")
            expected = hashlib.sha256(
                (api_key + request_token + app.api_secret).encode("utf-8")
            ).hexdigest()
            if not secrets.compare_digest(expected, checksum.lower()):
                return error(403, "TokenException", MSG_BAD_CHECKSUM)
            issued = self._request_tokens.get(request_token)
            if issued is None or issued[1] != api_key:
                return error(403, "TokenException", MSG_BAD_REQUEST_TOKEN)
            del self._request_tokens[request_token]
            user_id, _key, enctoken = issued
            access_token = random_alnum(32)
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
                "public_token": random_alnum(32),
                "enctoken": enctoken,
                "refresh_token": "",
                "silo": "",
                "login_time": login_time,
                "meta": {"demat_consent": "physical"},
            }
        return ok(data)
