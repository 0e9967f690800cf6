"""What a validated configuration holds, with its defaults."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import date, time
from datetime import time as clock_time
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from snapshotter.errors import ConfigError

DEFAULT_CONFIG_PATH = "config.yaml"
DEFAULT_DATABASE_URL = "sqlite:///snapshots.db"
DEFAULT_BASE_URL = "https://kite.zerodha.com"
DEFAULT_API_ROOT = "https://api.kite.trade"
DEFAULT_TIMEZONE = "Asia/Kolkata"
DEFAULT_LOG_LEVEL = "INFO"
AUTH_MODES = ("web", "connect", "manual")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
NOTIFY_EVENTS = ("failure", "warning", "summary")
DEFAULT_NOTIFY_ON = ("failure", "warning")


class Secret(str):
    """A string whose repr never shows its value (keeps it out of logs and tracebacks)."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class AccountConfig:
    user_id: str
    password: Secret | None
    totp_secret: Secret | None
    auth: str = "web"
    api_key: str | None = None
    api_secret: Secret | None = None
    label: str | None = None
    # The *_file values as written (e.g. "ab1234-password"): systemd credential names.
    secret_files: tuple[str, ...] = ()
    group: str = ""  # accounts[].group; "" (not given): the account's own user id

    def __post_init__(self) -> None:
        if not self.group:
            object.__setattr__(self, "group", self.user_id)

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.totp_secret, self.api_secret) if s]


@dataclass(frozen=True)
class KiteConfig:
    base_url: str = DEFAULT_BASE_URL
    api_root: str = DEFAULT_API_ROOT
    timeout: float = 15.0
    retries: int = 4
    backoff: float = 0.5
    concurrency: int = 10
    run_timeout: float = 900.0  # seconds a whole run may take, lock wait included
    max_response_mb: float = 16.0  # largest response body read from Kite
    # seconds this clock may differ from Kite's (its answers' Date) before a TOTP code is
    # made: past it no code is sent, as one from a wrong clock is a wrong code
    clock_tolerance: float = 10.0


@dataclass(frozen=True)
class ScheduleConfig:
    time: time = time(16, 30)
    retry_attempts: int = 3
    retry_spacing_minutes: int = 30
    # when the daemon reminds (notify) that an account has no session today; None: off
    login_reminder: clock_time | None = None


@dataclass(frozen=True)
class CalendarConfig:
    holidays: tuple[date, ...] = ()
    extra_sessions: tuple[date, ...] = ()


@dataclass(frozen=True)
class NotifyConfig:
    """Apprise URLs told about a run (``on``: which runs); each URL is a secret."""

    urls: tuple[Secret, ...] = ()
    on: tuple[str, ...] = DEFAULT_NOTIFY_ON
    timeout: float = 30.0  # seconds every URL together may take, per message

    def secrets(self) -> list[str]:
        return [part for url in self.urls for part in url_secrets(url)]


@dataclass(frozen=True)
class ImportConfig:
    """``import:``: the bounds of `snapshotter import` (docs/console-imports.md)."""

    max_file_mb: float = 64.0  # largest file read; also the most XML a workbook unpacks

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)


def is_loopback(host: str) -> bool:
    """Is ``host`` (serve.host, --host) a loopback address, reachable from this machine only?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


DEFAULT_SERVE_HOST = "127.0.0.1"
DEFAULT_SERVE_PORT = 8000


@dataclass(frozen=True)
class ServeConfig:
    """``serve:``: where `snapshotter serve` listens and who may see it (docs/dashboard.md)."""

    host: str = DEFAULT_SERVE_HOST
    port: int = DEFAULT_SERVE_PORT
    password: Secret | None = None  # serve.password (${VAR}) or serve.password_file
    trusted_proxy: tuple[str, ...] = ()  # addresses whose X-Forwarded-For/-Proto are believed
    url: str | None = None  # the dashboard's address as the user's browser reaches it
    password_file: str | None = None  # as written: a systemd credential name, or a path

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []


@dataclass(frozen=True)
class Config:
    path: Path | None
    database_url: str
    accounts: tuple[AccountConfig, ...]
    kite: KiteConfig = field(default_factory=KiteConfig)
    state_dir: Path = field(default_factory=lambda: default_state_dir())
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    healthcheck_url: str | None = None
    log_level: str = DEFAULT_LOG_LEVEL
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    imports: ImportConfig = field(default_factory=ImportConfig)  # the `import:` section
    serve: ServeConfig = field(default_factory=ServeConfig)
    warnings: tuple[str, ...] = ()

    def account(self, user_id: str) -> AccountConfig:
        for acc in self.accounts:
            if acc.user_id == user_id:
                return acc
        known = [acc.user_id for acc in self.accounts]
        close = difflib.get_close_matches(user_id, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
        raise ConfigError([f"{self.path}: no account {user_id!r} in accounts ({hint})"])

    def groups(self) -> dict[str, tuple[str, ...]]:
        """accounts[].group: each group's name -> its members' user ids, both in the
        config's order (an account without a group is a group of its own)."""
        found: dict[str, list[str]] = {}
        for acc in self.accounts:
            found.setdefault(acc.group, []).append(acc.user_id)
        return {name: tuple(members) for name, members in found.items()}

    def secrets(self) -> list[str]:
        """Every secret this config holds, the database password included."""
        found = [s for acc in self.accounts for s in acc.secrets()] + self.notify.secrets()
        found += self.serve.secrets()
        match = re.match(r"^[^:/]+://[^:@/]*:([^@/]+)@", self.database_url)
        return [*found, match.group(1)] if match else found


_TOKENISH = re.compile(r"(?=.*[0-9])|(?=.*[a-z])(?=.*[A-Z])")


def url_secrets(url: str) -> list[str]:
    """An Apprise URL and the parts of it that may be tokens: the password, and every
    user, host, path or query part of 8 characters or more that holds a digit or mixes
    cases (a bot token, webhook id, chat id...). A hostname with a dot is no secret, nor
    a plain word (registering "snapshotter" would mask the program's name everywhere)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6 address: Apprise refuses it anyway
        return [url]
    userinfo, at, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    pieces = [user, *([] if "." in host.rsplit(":", 1)[0] else [host, *host.split(":")])]
    pieces += re.split(r"[/?&=#,]", f"{parts.path}?{parts.query}#{parts.fragment}")
    found = [url, password] if at and password else [url]
    return found + [p for p in pieces if len(p) >= 8 and _TOKENISH.match(p)]


def default_state_dir() -> Path:
    """systemd's $STATE_DIRECTORY, else $XDG_STATE_HOME/snapshotter, else ~/.local/state/..."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "snapshotter"


def resolve_config_path(cli_path: str | None) -> Path:
    return Path(cli_path or os.environ.get("SNAPSHOTTER_CONFIG") or DEFAULT_CONFIG_PATH)
