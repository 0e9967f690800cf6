"""Internal to the simulator: the official Kite Connect v3 login (``/connect/login``,
``/connect/finish``, ``/session/token``), which rides on a web login's enctoken."""

from __future__ import annotations

import copy
import hashlib
import html
import json
import secrets
from dataclasses import replace
from datetime import timedelta, timezone
from urllib.parse import parse_qsl, urlencode

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
from snapshotter.simulator._tokens import random_alnum
from snapshotter.simulator._web_login import WebLogin
from snapshotter.simulator.accounts import SimApp

IST = timezone(timedelta(hours=5, minutes=30), "IST")

_LOGIN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kite - Zerodha's fast and elegant flagship trading platform</title></head>
<body><h1>Login to Kite</h1>
<p>{app_name} wants to access your Kite account.</p>
{message}<form method="post" action="/connect/login">
<input type="hidden" name="api_key" value="{api_key}">
<input type="hidden" name="sess_id" value="{sess_id}">
<label>User ID <input name="user_id" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<label>TOTP <input name="twofa_value" inputmode="numeric" autocomplete="one-time-code"></label>
<button type="submit">Login</button></form>
<!-- api_key={api_key} sess_id={sess_id} -->
</body></html>
"""


def _login_page(api_key: str, sess_id: str, message: str = "", status: int = 200) -> Response:
    shown = f'<p class="error" role="alert">{html.escape(message)}</p>\n' if message else ""
    page = _LOGIN_PAGE.format(api_key=html.escape(api_key), sess_id=html.escape(sess_id),
                              app_name="The app", message=shown)
    return Response(status, page.encode("utf-8"), "text/html; charset=utf-8")


def _redirect_with_query(url: str, params: dict[str, str]) -> Response:
    sep = "&" if "?" in url else "?"
    return redirect(f"{url}{sep}{urlencode(params)}")


def _message(answer: Response) -> str:
    try:
        return str(json.loads(answer.body).get("message") or "Login failed")
    except (ValueError, AttributeError):
        return "Login failed"


def _cookie(answer: Response, name: str) -> str:
    for header, value in answer.headers:
        if header.lower() == "set-cookie" and value.startswith(f"{name}="):
            return value.split(";", 1)[0].partition("=")[2]
    return ""


class KiteConnect(WebLogin):
    """The Connect login: the automated flow (``/connect/login`` -> the web login's API ->
    ``/connect/finish``) and the page a person fills in a browser (the same steps behind
    one form), both ending in a redirect to the app's ``redirect_url``."""

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
        if req.method == "POST":
            return self._connect_login_form(req)
        api_key = req.query.get("api_key", "")
        with self._lock:
            self._login_page_app(api_key)
            sess_id = req.query.get("sess_id")
            if sess_id:
                self._check_sess_id(api_key, sess_id)
                return _login_page(api_key, sess_id)
            sess_id = random_alnum(32)
            self._sess_ids[sess_id] = api_key
            self._sess_params[sess_id] = req.query.get("redirect_params", "")
        return _redirect_with_query(
            f"{self.base_url}/connect/login", {"api_key": api_key, "sess_id": sess_id}
        )

    def _connect_login_form(self, req: Request) -> Response:
        """The login page's form: password, then TOTP, through the web login's own checks
        (wrong codes count towards the block), then ``/connect/finish``'s redirect. A
        refusal is the page again with Kite's message."""
        api_key, sess_id = req.form.get("api_key", ""), req.form.get("sess_id", "")
        with self._lock:
            self._login_page_app(api_key)
            self._check_sess_id(api_key, sess_id)
        user_id = req.form.get("user_id", "").strip().upper()
        login = self._login(replace(req, form={
            "user_id": user_id, "password": req.form.get("password", "")}))
        if login.status != 200:
            return _login_page(api_key, sess_id, _message(login), login.status)
        request_id = json.loads(login.body)["data"]["request_id"]
        twofa = self._twofa(replace(req, form={
            "user_id": user_id, "request_id": request_id,
            "twofa_value": req.form.get("twofa_value", "")},
            cookies={"kf_session": _cookie(login, "kf_session")}))
        if twofa.status != 200:
            return _login_page(api_key, sess_id, _message(twofa), twofa.status)
        enctoken = _cookie(twofa, "enctoken")
        finish = self._connect_finish(replace(
            req, method="GET", query={"api_key": api_key, "sess_id": sess_id}, form={},
            cookies={"enctoken": enctoken}))
        finish.headers.append(("Set-Cookie", f"enctoken={enctoken}; path=/"))
        return finish

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
            extra = dict(parse_qsl(self._sess_params.pop(sess_id, "") or ""))
            request_token = random_alnum(32)
            self._request_tokens[request_token] = (user_id, api_key, enctoken)
            self._token_owner[request_token] = user_id
        # Kite returns the login URL's redirect_params as query parameters of their own.
        return _redirect_with_query(app.redirect_url, {
            **extra,
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
