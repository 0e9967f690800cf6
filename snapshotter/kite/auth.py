"""Logging in to Kite: one class per login mode, chosen once from the account's config
(``auth_for``), the TOTP steps, and the memory of credentials Kite rejected.

Zerodha locks an account after 5 wrong 2FA entries, so a login never sends the same
30 s TOTP step twice (the step is saved before the 2FA request goes out, and reserved in
the database through the client's ``reserve_totp_step`` so other processes and hosts
wait for a later one) and a scheduled run never tries credentials Kite rejected before.
A rejection is remembered as one fingerprint of the credentials
(``credentials_fingerprint``) in two places: the session cache and the ledger (so
replicas on other hosts see it too), and only when this process held the step of the
code Kite refused (else another process may have sent that step first).

Every login URL and form field lives here: the web login is unofficial and Zerodha has
changed it without notice (docs/kite-protocol.md §1-2).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qs, urlencode, urlparse
from zoneinfo import ZoneInfo

import pyotp

from snapshotter import redact
from snapshotter.config import AccountConfig, KiteConfig
from snapshotter.errors import KiteProtocolError, LoginRejected, TransientKiteError
from snapshotter.kite.http import APP_LIMITERS, Answer, KiteSession
from snapshotter.kite.token_cache import CachedSession, TokenCache, rejection_advice

log = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")  # Kite's times and its token expiry are IST
WEB_LOGIN = "/api/login"
WEB_TWOFA = "/api/twofa"
CONNECT_LOGIN = "/connect/login"
CONNECT_FINISH = "/connect/finish"
CONNECT_SESSION_TOKEN = "/session/token"
KITE_VERSION = "3"
TOTP_STEP = 30

Obtained = tuple[str, datetime | None]  # a login's token and expiry (None: till Kite ends it)


@dataclass(frozen=True)
class StepReservation:
    """What reserving a TOTP step where every process and host sees it came to."""

    held: bool  # this process holds the step: its code is known fresh
    #: not held: the latest step another process holds (wait for a later one); None when
    #: there was nowhere to reserve it (the code goes out unreserved)
    taken_through: int | None = None


#: Reserves the account's TOTP step before its code is sent (the pipeline's, over the
#: database); without one, the session cache's last step is the only guard.
ReserveTotpStep = Callable[[int], StepReservation]
HELD = StepReservation(held=True)
UNRESERVED = StepReservation(held=False)
# How many steps a login waits through while other processes hold them.
MAX_STEPS_WAITED = 3


class Prompt(Protocol):
    """What `snapshotter login` asks a person."""

    def secret(self, label: str) -> str: ...

    def text(self, label: str) -> str: ...

    def show(self, message: str) -> None: ...


class LoginClient(Protocol):
    """What a login uses of its account's client (kite.client.KiteClient)."""

    account: AccountConfig
    kite: KiteConfig
    cache: TokenCache
    http: KiteSession
    prompt: Prompt | None
    reserve_totp_step: ReserveTotpStep | None

    @property
    def kite_clock_offset(self) -> float | None:
        """Seconds the client's clock is ahead of the Date of Kite's latest answer."""

    def clock(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...

    def request(self, method: str, url: str, label: str, *, login: bool = False,
                retry: bool = True, read_redirect: bool = False, **kwargs: Any) -> Any: ...

    def keep_session(self, entry: CachedSession) -> None:
        """Save a new session in the session cache (now, or once the data requests
        that wait for it are sent: kite.client)."""


class Auth(ABC):
    """One account's login mode: how it logs in and how its data calls authenticate.

    A login reads the session cache once (the caller passes the loaded entry) and saves
    it once with the session (through the client, which may hold that save until the
    data requests are sent) or the rejection, and also with the TOTP step before the
    2FA request when no database reserved that step.
    """

    #: data through Kite Connect (api_root, ``token api_key:access_token``, the per-app
    #: rate limit) rather than the web app's enctoken
    connect_api: ClassVar[bool] = False
    #: a person logs in (`snapshotter login`); scheduled runs only reuse the session
    needs_person: ClassVar[bool] = False

    def __init__(self, account: AccountConfig):
        self.account = account

    @property
    def session_mode(self) -> str:
        """The kind of token this mode holds (the session cache's ``mode``)."""
        return "connect" if self.connect_api else "web"

    @property
    def rejection_keys(self) -> str:
        """The config keys a rejection may be about."""
        return "password/totp_secret" + ("/api_key/api_secret" if self.connect_api else "")

    def headers(self, kite: KiteConfig, token: str) -> dict[str, str]:
        if self.connect_api:
            return {"Authorization": f"token {self.account.api_key}:{token}"}
        return {"Authorization": f"enctoken {token}", "Referer": f"{kite.base_url}/dashboard"}

    def request_slot(self, kite: KiteConfig, url: str) -> AbstractContextManager[None]:
        """Held while a request to ``url`` is sent and answered (Kite Connect's per-app
        rate limit)."""
        if self.connect_api and url.startswith(kite.api_root):
            return APP_LIMITERS.of(self.account.api_key or "").slot()
        return contextlib.nullcontext()

    def log_in(self, client: LoginClient, entry: CachedSession) -> str:
        """A fresh token, saved in ``entry`` (updated in place) and the session cache."""
        user = self.account.user_id
        if client.prompt is None:
            self._may_log_in_unattended(entry, client.clock())
        try:
            token, expires = self._obtain(client, entry)
        except LoginRejected as exc:
            exc.keys = exc.keys or keys_at_fault(  # the 2FA step's refusal: TwoFAException
                exc.message,
                "totp_secret" if exc.error_type == "TwoFAException" else self.rejection_keys)
            remember_rejection(entry, self.account, exc.message, client.clock())
            client.cache.save(user, entry)
            raise
        redact.register(token)
        entry.mode, entry.token = self.session_mode, token
        entry.created_at = client.clock().isoformat()
        entry.expires_at = expires.isoformat() if expires else None
        forget_rejection(entry)
        client.keep_session(entry)
        log.info("account %s: logged in (%s)", user, self.session_mode)
        return token

    def session_ended(self) -> LoginRejected | None:
        """Why a run stops when Kite ends the session; None: it logs in again once."""
        return None

    def _may_log_in_unattended(self, entry: CachedSession, now: datetime) -> None:
        """Scheduled runs never retry rejected credentials; `snapshotter login` (a person
        at the prompt) is a deliberate try, and its success clears the rejection."""
        if rejection_applies(entry, self.account):
            raise refusal(self.account, _parsed(entry.rejected_at) or now,
                          entry.rejected_reason, kite_said=entry.rejected_reason)

    @abstractmethod
    def _obtain(self, client: LoginClient, entry: CachedSession) -> Obtained:
        """Log in (``entry``: the session cache, read once, saved with the TOTP step)."""


class WebAuth(Auth):
    """auth: web — the web app's login with password and TOTP; an enctoken."""

    def _obtain(self, client: LoginClient, entry: CachedSession) -> Obtained:
        return _web_login(client, entry), None


class ConnectAuth(Auth):
    """auth: connect — the web login inside a Kite Connect app's flow; an access token."""

    connect_api = True

    def _obtain(self, client: LoginClient, entry: CachedSession) -> Obtained:
        """docs/kite-protocol.md §2: connect/login -> web login -> connect/finish ->
        session/token."""
        api_key = self.account.api_key or ""
        with _refusal_about("api_key"):
            sess_id = _redirect_param(client, CONNECT_LOGIN, {"api_key": api_key}, "sess_id")
        _web_login(client, entry)
        request_token = _redirect_param(client, CONNECT_FINISH,
                                        {"api_key": api_key, "sess_id": sess_id},
                                        "request_token")
        return _exchange_request_token(client, request_token)


class ManualAuth(Auth):
    """auth: manual — a person logs in with `snapshotter login`; runs reuse the session
    and never log in themselves."""

    needs_person = True

    def _may_log_in_unattended(self, entry: CachedSession, now: datetime) -> None:
        user = self.account.user_id
        expired = _parsed(entry.expires_at)
        if entry.token and entry.mode == self.session_mode and expired:
            raise LoginRejected(
                f"session expired at {expired.astimezone(IST):%Y-%m-%d %H:%M} IST: log in "
                f"again with `snapshotter login --account {user}`", account=user)
        raise LoginRejected(f"no valid session: run `snapshotter login --account {user}`",
                            account=user)

    def session_ended(self) -> LoginRejected | None:
        return LoginRejected("session expired or ended by Kite: log in again with "
                             f"`snapshotter login --account {self.account.user_id}`",
                             account=self.account.user_id)


class ManualWebAuth(ManualAuth):
    """auth: manual without an api_key — the web login, asking for what the config lacks."""

    def _obtain(self, client: LoginClient, entry: CachedSession) -> Obtained:
        return _web_login(client, entry), None


class ManualConnectAuth(ManualAuth):
    """auth: manual with an api_key — the person logs in in a browser and pastes the
    request_token Kite Connect redirected them with."""

    connect_api = True

    def _obtain(self, client: LoginClient, entry: CachedSession) -> Obtained:
        assert client.prompt is not None
        url = f"{client.kite.base_url}{CONNECT_LOGIN}?" + urlencode(
            {"v": KITE_VERSION, "api_key": self.account.api_key or ""})
        client.prompt.show(f"Open this URL, log in to Kite, then paste the address you were "
                           f"redirected to (or just its request_token):\n  {url}")
        answer = client.prompt.text("Redirected URL or request_token: ").strip()
        token = parse_qs(urlparse(answer).query).get("request_token", [""])[0] or answer
        if not token or "/" in token or "=" in token:
            raise LoginRejected("no request_token in what was pasted",
                                account=self.account.user_id)
        return _exchange_request_token(client, token)


def auth_for(account: AccountConfig) -> Auth:
    """The account's login mode, from its config's ``auth`` (and ``api_key``)."""
    if account.auth == "connect":
        return ConnectAuth(account)
    if account.auth == "manual":
        return ManualConnectAuth(account) if account.api_key else ManualWebAuth(account)
    return WebAuth(account)


# -- the memory of rejected credentials -------------------------------------------------------


def credentials_fingerprint(account: AccountConfig) -> str | None:
    """The one digest of an account's credentials kept when Kite rejects them, in the
    session cache and in the ledger (``snapshots.rejected_credentials``): the same on
    every host. None for manual accounts (a person types them) and without a TOTP or API
    secret, whose entropy is what keeps the digest from being guessed back."""
    a = account
    if auth_for(a).needs_person or not (a.totp_secret or a.api_secret):
        return None
    return _digest(f"kite-snapshotter:{a.user_id}", a.password, a.totp_secret,
                   a.api_secret, a.api_key)


def same_credentials(account: AccountConfig, fingerprint: str | None,
                     legacy_salt: str | None = None) -> bool:
    """Were these the credentials Kite rejected? (None never matches.) ``legacy_salt``:
    a session cache marker written before the one fingerprint, salted per file."""
    if fingerprint is None:
        return False
    if legacy_salt:
        a = account
        app = (a.api_key,) if a.api_key else ()
        return fingerprint == _digest(legacy_salt, a.password, a.totp_secret,
                                      a.api_secret, *app)
    return fingerprint == credentials_fingerprint(account)


def rejection_applies(entry: CachedSession, account: AccountConfig) -> bool:
    """Does the session cache remember Kite rejecting the configured credentials?"""
    return bool(entry.rejected_at) and same_credentials(
        account, entry.rejected_fingerprint, legacy_salt=entry.salt)


def remember_rejection(entry: CachedSession, account: AccountConfig, reason: str,
                       now: datetime) -> None:
    entry.rejected_at = now.isoformat()
    entry.rejected_reason = reason
    entry.rejected_fingerprint = credentials_fingerprint(account)
    entry.salt = None


def forget_rejection(entry: CachedSession) -> None:
    entry.rejected_at = entry.rejected_reason = entry.rejected_fingerprint = None
    entry.salt = None


def refusal(account: AccountConfig, rejected_at: datetime, reason: str | None, *,
            kite_said: str | None = None) -> LoginRejected:
    """The error of a run that will not retry credentials Kite rejected at ``rejected_at``
    (``reason``: what was said then, for the advice)."""
    user = account.user_id
    said = f" ({kite_said})" if kite_said else ""
    advice = rejection_advice(user, keys_at_fault(reason, auth_for(account).rejection_keys),
                              reason)
    return LoginRejected(
        f"Kite rejected these credentials at {rejected_at.astimezone(IST):%Y-%m-%d %H:%M} "
        f"IST{said}; not trying again to avoid locking the account: {advice}", account=user)


# What a login refusal names -> the config key at fault; a 2FA refusal is about the TOTP
# secret whatever else its text says.
_TWOFA_WORDS = ("totp", "twofa", "2fa")
_KEYS_NAMED = (
    (("user_id", "user id"), "user_id"),
    (("password",), "password"),
    (("api_key",), "api_key"),
    (("checksum", "api_secret"), "api_secret"),
)


def keys_at_fault(refusal_text: str | None, step_keys: str) -> str:
    """The config keys a login refusal is about: those its text names (Kite's message,
    e.g. "Invalid `user_id`.", with the hint this program added to it), else those of the
    login step that was refused (``step_keys``). Advice added when the refusal was stored
    (after "; not retried") does not count."""
    said = (refusal_text or "").split("; not retried")[0].lower()
    if "blocked" in said:  # after 5 wrong 2FA entries: only a password reset unblocks
        return "password"
    if any(word in said for word in _TWOFA_WORDS):
        return "totp_secret"
    named = [key for words, key in _KEYS_NAMED if any(word in said for word in words)]
    return "/".join(named) or step_keys


@contextmanager
def _refusal_about(step_keys: str) -> Iterator[None]:
    """A refusal of this login step names the config keys at fault (``keys_at_fault``)."""
    try:
        yield
    except LoginRejected as exc:
        exc.keys = exc.keys or keys_at_fault(exc.message, step_keys)
        raise


def _digest(salt: str, *values: str | None) -> str:
    digest = hashlib.sha256(salt.encode())
    for value in values:
        digest.update(b"\0" + (value or "").encode())
    return digest.hexdigest()


def _parsed(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


# -- the login steps --------------------------------------------------------------------------


def _totp_code(client: LoginClient, entry: CachedSession) -> tuple[str, bool]:
    """A fresh TOTP code, and whether this process holds its step's reservation. Waits
    for the next 30 s step while this one was used here (session cache) or is reserved
    by another process (``reserve_totp_step``). The step is recorded before the code is
    returned (so before it is sent): reserved in the database, or else saved in the
    session cache."""
    user, secret = client.account.user_id, client.account.totp_secret
    if not secret:
        raise LoginRejected("no totp_secret configured", account=user)
    used = entry.last_totp_step
    for _ in range(MAX_STEPS_WAITED + 1):
        step = _step_after(client, used)
        reserved = client.reserve_totp_step(step) if client.reserve_totp_step else HELD
        if reserved.held or reserved.taken_through is None:
            break
        log.info("account %s: another process holds this TOTP step; waiting for the next "
                 "one", user)
        used = reserved.taken_through
    else:
        raise TransientKiteError(
            f"other processes held {MAX_STEPS_WAITED + 1} TOTP steps in a row; not logging "
            "in this time", account=user)
    entry.last_totp_step = step
    if client.reserve_totp_step is None or not reserved.held:
        # Nothing durable holds the step but this cache: saved before the code is sent.
        # (A step reserved in the database is saved here with the session.)
        client.cache.save(user, entry)
    return pyotp.TOTP(secret).at(step * TOTP_STEP), reserved.held


def _step_after(client: LoginClient, used: int) -> int:
    """The current TOTP step once it is later than ``used``, waiting for it if need be."""
    user = client.account.user_id
    step = int(client.clock().timestamp()) // TOTP_STEP
    if used > step + 2:
        # Recorded under a clock set ahead (e.g. a libfaketime rehearsal): Kite never
        # accepted that code, so it is no reason to wait.
        log.warning("account %s: ignoring a TOTP step recorded in the future", user)
    elif step <= used:
        wait = (used + 1) * TOTP_STEP - client.clock().timestamp() + 0.5
        log.info("account %s: waiting %.0fs for a fresh TOTP code", user, wait)
        client.sleep(min(max(wait, 0), 2 * TOTP_STEP + 1))
        step = int(client.clock().timestamp()) // TOTP_STEP
        if step <= used:  # a frozen or rewound clock: never replay a code
            raise TransientKiteError(
                "the clock did not advance to a fresh TOTP step; not resending a used code",
                account=user)
    return step


def check_clock_before_totp(client: LoginClient) -> None:
    """A TOTP code is made from this machine's clock, and a code from a wrong clock is a
    wrong code that counts towards Zerodha's lockout (e.g. a libfaketime rehearsal against
    Kite): compare the clock with the Date of Kite's login answer first and, past
    ``kite.clock_tolerance``, make and send no code. Not a rejection: nothing is
    remembered, and the next run tries again."""
    user, offset = client.account.user_id, client.kite_clock_offset
    if offset is None:
        log.warning("account %s: Kite's login answer has no Date header; the clock cannot "
                    "be checked before the TOTP code is made", user)
        return
    if abs(offset) > client.kite.clock_tolerance:
        side = "ahead of" if offset > 0 else "behind"
        raise TransientKiteError(
            f"the clock is {abs(offset):.0f} s off Kite's; no 2FA code sent (this machine is "
            f"{side} the Date of Kite's login answer, past kite.clock_tolerance "
            f"{client.kite.clock_tolerance:g} s: set the clock right, e.g. timedatectl)",
            account=user)


def _web_login(client: LoginClient, entry: CachedSession) -> str:
    """docs/kite-protocol.md §1: POST /api/login, then /api/twofa with a TOTP; enctoken cookie."""
    user, base, prompt = client.account.user_id, client.kite.base_url, client.prompt
    password: str | None = client.account.password
    if not password and prompt is not None:
        password = prompt.secret(f"Kite password for {user}: ")
        redact.register(password)
    with _refusal_about("user_id/password"):
        data = client.request("POST", f"{base}{WEB_LOGIN}", "login", login=True,
                              data={"user_id": user, "password": password})
    if not isinstance(data, dict) or not data.get("request_id"):
        raise KiteProtocolError("login answer has no request_id (did Kite change its login?)",
                                account=user)
    redact.register(str(data["request_id"]))  # it authorises the 2FA: a secret
    twofa_type = str(data.get("twofa_type") or "totp")
    if twofa_type not in ("totp", "app_code"):
        raise LoginRejected(
            f"account uses 2FA type {twofa_type!r}; enable external TOTP in Kite",
            account=user)
    for attempt in (1, 2):
        if client.account.totp_secret or prompt is None:
            check_clock_before_totp(client)
            code, fresh = _totp_code(client, entry)
        else:  # a person typed it: theirs to judge
            code, fresh = prompt.text(f"6-digit code from your authenticator app for "
                                      f"{user}: "), True
        redact.register(code)
        try:
            # Never retried as such: a resent code is a replay and may count as a failed 2FA.
            client.request("POST", f"{base}{WEB_TWOFA}", "2FA", login=True, retry=False,
                           data={"user_id": user, "request_id": data["request_id"],
                                 "twofa_value": code, "twofa_type": twofa_type})
            break
        except LoginRejected as exc:
            if fresh:
                raise
            # Nowhere to reserve the step (no database): another process or host may
            # have sent its code first, so the refusal says nothing of the credentials.
            if attempt == 2:
                raise TransientKiteError(
                    f"Kite refused the 2FA code again ({exc.message}); its TOTP step could "
                    "not be reserved, so not taken as a rejection of the credentials",
                    account=user, status=exc.status, error_type=exc.error_type) from None
            log.warning("account %s: Kite refused a 2FA code whose TOTP step could not be "
                        "reserved (%s); trying once more with the next step", user,
                        exc.message)
    token = client.http.cookies.get("enctoken")
    if not token:
        raise KiteProtocolError("2FA succeeded but no enctoken cookie was set", account=user)
    redact.register(token)  # also when it only opens the way to a Kite Connect login
    return token


def _redirect_param(client: LoginClient, path: str, query: dict[str, str], name: str) -> str:
    """The ``name`` query parameter of the address a Connect step redirects to."""
    label = path.lstrip("/")
    resp = client.request("GET", f"{client.kite.base_url}{path}?" + urlencode(
        {"v": KITE_VERSION, **query}), label, login=True, read_redirect=True)
    location = resp.headers.get("Location", "") if isinstance(resp, Answer) else ""
    value = parse_qs(urlparse(location).query).get(name, [""])[0]
    if not value:
        raise KiteProtocolError(f"{label} gave no {name}", account=client.account.user_id)
    return value


def _exchange_request_token(client: LoginClient, request_token: str) -> tuple[str, datetime]:
    """POST /session/token with the sha256 checksum; access token valid till 06:00 IST."""
    user = client.account.user_id
    api_key, api_secret = client.account.api_key or "", client.account.api_secret or ""
    redact.register(request_token)
    checksum = hashlib.sha256((api_key + request_token + api_secret).encode()).hexdigest()
    try:
        data = client.request("POST", f"{client.kite.api_root}{CONNECT_SESSION_TOKEN}",
                              "session/token", login=True, retry=False,
                              data={"api_key": api_key, "request_token": request_token,
                                    "checksum": checksum})
    except KiteProtocolError as exc:
        if exc.error_type != "TokenException":
            raise
        keys = keys_at_fault(exc.message, "api_key/api_secret")
        named = keys.replace("/", " and ")
        if client.prompt is not None:  # `snapshotter login`: a person pasted it
            hint = (f"check {named} in the config, and paste a fresh "
                    "request_token: one works once and only for a few minutes")
        else:
            hint = f"check {named} in the config; not trying again until they change"
        rejected = LoginRejected(
            f"Kite Connect refused the session ({exc.message}): {hint}", account=user,
            status=exc.status, error_type=exc.error_type)
        rejected.keys = keys
        raise rejected from None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not token:
        raise KiteProtocolError("session/token gave no access_token", account=user)
    redact.register(str(token))
    return str(token), connect_token_expiry(client.clock())


def connect_token_expiry(now: datetime) -> datetime:
    """Kite Connect access tokens expire at 06:00 IST the next morning."""
    local = now.astimezone(IST)
    expiry = local.replace(hour=6, minute=0, second=0, microsecond=0)
    if local >= expiry:
        expiry += timedelta(days=1)
    return expiry

