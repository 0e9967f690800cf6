"""One account's cookies (Kite's web login sets the enctoken as one), kept from the
answers' Set-Cookie fields and sent back by the rules of RFC 6265: a cookie goes only to
the host (or, with a Domain attribute, the domain) that set it, under its path, over
TLS when Secure, until it expires. A Domain attribute that does not cover the answering
host, or that is a single label ("com"), is refused with its cookie.
"""

from __future__ import annotations

import calendar
import itertools
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_IPV4 = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
# RFC 6265 5.1.1: a cookie-date is read token by token, whatever separates them.
_DATE_DELIMITER = re.compile(r"[\x09\x20-\x2f\x3b-\x40\x5b-\x60\x7b-\x7e]+")
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[^0-9].*)?$", re.DOTALL)
_DAY = re.compile(r"([0-9]{1,2})(?:[^0-9].*)?$", re.DOTALL)
_YEAR = re.compile(r"([0-9]{2,4})(?:[^0-9].*)?$", re.DOTALL)
_MAX_AGE = re.compile(r"-?[0-9]+")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_EXPIRED = float("-inf")
_MAX_AGE_DIGITS = 12  # beyond, a Max-Age is "for ever" (int() refuses 4,300 digits)


@dataclass
class Cookie:
    name: str
    value: str = field(repr=False)  # the enctoken's: never in a repr, a log or an error
    domain: str
    path: str
    host_only: bool
    secure: bool
    expires: float | None  # seconds since the epoch; None: for the process's life
    order: int  # when it was first set, for RFC 6265's order of equal paths
    set_last: int = 0  # when it was last set


class CookieJar:
    """Shared by an account's threads (its data routes run together): one lock."""

    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str, str], Cookie] = {}
        self._sets = itertools.count(1)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cookies)

    def __iter__(self) -> Iterator[Cookie]:
        with self._lock:
            return iter(list(self._cookies.values()))

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return any(cookie.name == name for cookie in self._cookies.values())

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the cookie ``name``; of several (other paths or domains), the
        one set last (a new login's enctoken, not an earlier one kept for a wider
        domain)."""
        with self._lock:
            found = [c for c in self._cookies.values() if c.name == name]
        return max(found, key=lambda c: c.set_last).value if found else default

    def keep(self, url: str, set_cookie: Iterable[str], now: float | None = None) -> None:
        """The cookies of an answer from ``url`` (its Set-Cookie values), kept by the
        rules: one with the same name, domain and path is replaced, one already expired
        (a logout) removed."""
        now = time.time() if now is None else now
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        cookies = [c for c in (_parse(text, host, parts.path, now) for text in set_cookie)
                   if c is not None]
        with self._lock:
            for cookie in cookies:
                key = (cookie.domain, cookie.path, cookie.name)
                old = self._cookies.pop(key, None)
                if cookie.expires is not None and cookie.expires <= now:
                    continue
                cookie.set_last = next(self._sets)
                cookie.order = old.order if old is not None else cookie.set_last
                self._cookies[key] = cookie

    def header(self, url: str, now: float | None = None) -> str | None:
        """The Cookie field a request to ``url`` carries; None: no cookie for it."""
        if not self._cookies:
            return None
        now = time.time() if now is None else now
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        path = parts.path or "/"
        secure = parts.scheme.lower() == "https"
        sent = []
        with self._lock:
            for key, cookie in list(self._cookies.items()):
                if cookie.expires is not None and cookie.expires <= now:
                    del self._cookies[key]
                elif (host == cookie.domain or (not cookie.host_only
                                                 and _domain_match(host, cookie.domain))) \
                        and _path_match(path, cookie.path) and (secure or not cookie.secure):
                    sent.append(cookie)
        sent.sort(key=_sent_first)
        return "; ".join(f"{c.name}={c.value}" for c in sent) or None


def _sent_first(cookie: Cookie) -> tuple[int, int]:
    return -len(cookie.path), cookie.order


def _parse(text: str, host: str, request_path: str, now: float) -> Cookie | None:
    """RFC 6265 5.2 and 5.3: one Set-Cookie value -> a cookie, or None (refused)."""
    pair, _, attributes = text.partition(";")
    name, eq, value = pair.partition("=")
    name, value = name.strip(), value.strip()
    if not eq or not name:
        return None
    domain, path, secure = "", "", False
    expires: float | None = None
    max_age: float | None = None
    for attribute in attributes.split(";"):
        key, _, val = attribute.partition("=")
        key, val = key.strip().lower(), val.strip()
        if key == "expires":
            date = _cookie_date(val)
            expires = expires if date is None else date  # one not a date is ignored
        elif key == "max-age" and _MAX_AGE.fullmatch(val):
            digits = val.lstrip("-").lstrip("0")
            seconds = int(digits[:_MAX_AGE_DIGITS] or "0") * (-1 if val[0] == "-" else 1)
            max_age = now + seconds if seconds > 0 else _EXPIRED
        elif key == "domain" and val:
            domain = (val[1:] if val[0] == "." else val).lower()
        elif key == "path":
            path = val if val.startswith("/") else ""
        elif key == "secure":
            secure = True
    if max_age is not None:
        expires = max_age
    if not domain:
        host_only, domain = True, host
    elif not _domain_match(host, domain):
        return None
    elif "." not in domain:  # a single label: a public suffix ("com"), or the host itself
        if domain != host:
            return None
        host_only = True
    else:
        host_only = False
    return Cookie(name, value, domain, path or _default_path(request_path), host_only, secure,
                  expires, 0)


def _domain_match(host: str, domain: str) -> bool:
    return host == domain or (host.endswith("." + domain) and not _IPV4.fullmatch(host)
                              and ":" not in host)


def _path_match(path: str, cookie_path: str) -> bool:
    return path == cookie_path or (path.startswith(cookie_path) and (
        cookie_path.endswith("/") or path[len(cookie_path)] == "/"))


def _default_path(request_path: str) -> str:
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[:request_path.rindex("/")]


def _cookie_date(text: str) -> float | None:
    """RFC 6265 5.1.1's reading of an Expires date; None when it is not one."""
    clock = day = month = year = None
    for token in _DATE_DELIMITER.split(text):
        if not token:
            continue
        if clock is None and (match := _TIME.match(token)):
            clock = tuple(int(part) for part in match.groups())
        elif day is None and (match := _DAY.match(token)):
            day = int(match.group(1))
        elif month is None and token[:3].lower() in _MONTHS:
            month = _MONTHS.index(token[:3].lower()) + 1
        elif year is None and (match := _YEAR.match(token)):
            year = int(match.group(1))
    if clock is None or day is None or month is None or year is None:
        return None
    year += 1900 if 70 <= year <= 99 else 2000 if year <= 69 else 0
    hour, minute, second = clock
    if year < 1601 or hour > 23 or minute > 59 or second > 59 \
            or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second)))
