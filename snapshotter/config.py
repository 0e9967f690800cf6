"""Load and validate the YAML configuration (a public contract: see config.example.yaml).

Every problem is reported as one line naming the file and key at fault; the whole
file is checked before anything runs, so a user fixes all problems in one go.
"""

from __future__ import annotations

import binascii
import difflib
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyotp
import yaml

from snapshotter.errors import ConfigError

DEFAULT_CONFIG_PATH = "config.yaml"
DEFAULT_DATABASE_URL = "sqlite:///snapshots.db"
DEFAULT_BASE_URL = "https://kite.zerodha.com"
DEFAULT_API_ROOT = "https://api.kite.trade"
AUTH_MODES = ("web", "connect", "manual")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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


@dataclass(frozen=True)
class ScheduleConfig:
    time: time = time(16, 30)
    retry_attempts: int = 3
    retry_spacing_minutes: int = 30


@dataclass(frozen=True)
class CalendarConfig:
    holidays: tuple[date, ...] = ()
    extra_sessions: tuple[date, ...] = ()


@dataclass(frozen=True)
class Config:
    path: Path | None
    database_url: str
    accounts: tuple[AccountConfig, ...]
    kite: KiteConfig = field(default_factory=KiteConfig)
    state_dir: Path = field(default_factory=lambda: default_state_dir())
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Kolkata"))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    healthcheck_url: str | None = None
    log_level: str = "INFO"
    warnings: tuple[str, ...] = ()

    def account(self, user_id: str) -> AccountConfig:
        for acc in self.accounts:
            if acc.user_id == user_id:
                return acc
        raise ConfigError([f"{self.path}: no account {user_id!r} in accounts"])

    def secrets(self) -> list[str]:
        return [s for acc in self.accounts for s in acc.secrets()]


def default_state_dir() -> Path:
    """systemd's $STATE_DIRECTORY, else $XDG_STATE_HOME/snapshotter, else ~/.local/state/..."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "snapshotter"


def resolve_config_path(cli_path: str | None) -> Path:
    return Path(cli_path or os.environ.get("SNAPSHOTTER_CONFIG") or DEFAULT_CONFIG_PATH)


# Known keys per section: unknown ones get a "did you mean".
_TOP_KEYS = {
    "database", "kite", "accounts", "state_dir", "timezone", "schedule", "calendar",
    "healthcheck_url", "logging",
}
_SECTION_KEYS = {
    "database": {"url"},
    "kite": {"base_url", "api_root", "timeout", "retries", "backoff", "concurrency"},
    "schedule": {"time", "retry_attempts", "retry_spacing_minutes"},
    "calendar": {"holidays", "extra_sessions"},
    "logging": {"level"},
}
_ACCOUNT_KEYS = {
    "user_id", "password", "password_file", "totp_secret", "totp_secret_file", "auth",
    "api_key", "api_secret", "api_secret_file", "label",
}
_SECRET_KEYS = ("password", "totp_secret", "api_secret")


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{self.source}: {key}: {message}")

    def unknown(self, where: str, key: str, known: set[str]) -> None:
        hint = difflib.get_close_matches(key, sorted(known), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        self.add(f"{where}{key}", f"unknown key{suggestion}")


def _interpolate(value: Any, key: str, problems: _Problems) -> Any:
    """Replace ${VAR} from the environment in every string, recursively."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                problems.add(key, f"environment variable {name} is not set")
                return ""
            return os.environ[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{key}.{k}" if key else str(k), problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _has_literal_secret(raw: Any) -> bool:
    """True when an account holds a secret written in the file itself (not ${VAR}, not a file)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("accounts"), list):
        return False
    for acc in raw["accounts"]:
        if not isinstance(acc, dict):
            continue
        for key in _SECRET_KEYS:
            value = acc.get(key)
            if isinstance(value, str) and value and not _VAR.fullmatch(value.strip()):
                return True
    return False


def _read_secret_file(path_value: Any, key: str, problems: _Problems) -> Secret | None:
    if not isinstance(path_value, str) or not path_value:
        problems.add(key, "must be a file path")
        return None
    path = Path(os.path.expandvars(path_value))
    if not path.is_absolute() and os.environ.get("CREDENTIALS_DIRECTORY"):
        # systemd LoadCredential=: a bare name refers to $CREDENTIALS_DIRECTORY
        path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / path
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.add(key, f"cannot read {path}: {exc.strerror or exc}")
        return None
    if not text:
        problems.add(key, f"{path} is empty")
        return None
    return Secret(text)


def _secret(acc: dict[str, Any], name: str, where: str, problems: _Problems) -> Secret | None:
    inline, file_key = acc.get(name), f"{name}_file"
    if inline not in (None, "") and acc.get(file_key):
        problems.add(f"{where}{name}", f"give either {name} or {file_key}, not both")
        return None
    if acc.get(file_key) is not None:
        return _read_secret_file(acc[file_key], f"{where}{file_key}", problems)
    if inline is None:
        return None
    if not isinstance(inline, str | int):
        problems.add(f"{where}{name}", "must be a string")
        return None
    return Secret(str(inline)) if str(inline) else None


def _valid_totp_secret(secret: str) -> bool:
    try:
        pyotp.TOTP(secret.replace(" ", "").upper()).now()
    except (binascii.Error, ValueError, TypeError):
        return False
    return len(secret.replace(" ", "")) >= 16


def _number(section: dict[str, Any], key: str, where: str, default: Any, kind: type,
            problems: _Problems, minimum: float = 0) -> Any:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(f"{where}{key}", f"must be a number, got {value!r}")
        return default
    if value < minimum:
        problems.add(f"{where}{key}", f"must be at least {minimum}")
        return default
    return kind(value)


def _dates(values: Any, where: str, problems: _Problems) -> tuple[date, ...]:
    if values is None:
        return ()
    if not isinstance(values, list):
        problems.add(where, "must be a list of dates (YYYY-MM-DD)")
        return ()
    out = []
    for i, v in enumerate(values):
        if isinstance(v, date):
            out.append(v)
            continue
        try:
            out.append(date.fromisoformat(str(v)))
        except ValueError:
            problems.add(f"{where}[{i}]", f"not a date (YYYY-MM-DD): {v!r}")
    return tuple(out)


def _section(raw: dict[str, Any], name: str, problems: _Problems) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        problems.add(name, "must be a mapping")
        return {}
    for key in value:
        if key not in _SECTION_KEYS[name]:
            problems.unknown(f"{name}.", str(key), _SECTION_KEYS[name])
    return value


def _accounts(raw_accounts: Any, problems: _Problems) -> list[AccountConfig]:
    if not isinstance(raw_accounts, list) or not raw_accounts:
        problems.add("accounts", "missing: list at least one account (user_id, password, ...)")
        return []
    accounts: list[AccountConfig] = []
    seen: set[str] = set()
    for i, acc in enumerate(raw_accounts):
        where = f"accounts[{i}]."
        if not isinstance(acc, dict):
            problems.add(f"accounts[{i}]", "must be a mapping with user_id, password, ...")
            continue
        for key in acc:
            if key not in _ACCOUNT_KEYS:
                problems.unknown(where, str(key), _ACCOUNT_KEYS)
        user_id = str(acc.get("user_id") or "").strip().upper()
        if not user_id:
            problems.add(f"{where}user_id", "missing")
        elif user_id in seen:
            problems.add(f"{where}user_id", f"duplicate user_id {user_id}")
        seen.add(user_id)
        named = f"accounts[{i}] ({user_id}).".replace(" ().", ".") if user_id else where
        auth = str(acc.get("auth") or "web")
        if auth not in AUTH_MODES:
            problems.add(f"{named}auth", f"must be one of {', '.join(AUTH_MODES)}, got {auth!r}")
        password = _secret(acc, "password", named, problems)
        totp = _secret(acc, "totp_secret", named, problems)
        api_secret = _secret(acc, "api_secret", named, problems)
        api_key = acc.get("api_key")
        if auth in ("web", "connect"):
            for name, value in (("password", password), ("totp_secret", totp)):
                if value is None and not acc.get(name) and not acc.get(f"{name}_file"):
                    problems.add(f"{named}{name}", f"missing (or give {name}_file)")
        if totp is not None and not _valid_totp_secret(totp):
            problems.add(f"{named}totp_secret",
                         "malformed: expected the base32 key shown when enabling external TOTP")
        if auth == "connect":
            if not api_key:
                problems.add(f"{named}api_key", "missing (auth: connect needs api_key)")
            if api_secret is None:
                problems.add(f"{named}api_secret", "missing (auth: connect needs api_secret)")
        if totp is not None:
            totp = Secret(totp.replace(" ", "").upper())
        accounts.append(AccountConfig(
            user_id=user_id, password=password, totp_secret=totp, auth=auth,
            api_key=str(api_key) if api_key else None, api_secret=api_secret,
            label=str(acc["label"]) if acc.get("label") else None,
        ))
    return accounts


def parse_config(raw: Any, source: str = "<config>", path: Path | None = None) -> Config:
    problems = _Problems(source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: must be a YAML mapping with database, kite, accounts"])
    for key in raw:
        if key not in _TOP_KEYS:
            problems.unknown("", str(key), _TOP_KEYS)
    raw = _interpolate(raw, "", problems)

    db = _section(raw, "database", problems)
    database_url = str(db.get("url") or DEFAULT_DATABASE_URL)
    if "://" not in database_url:
        problems.add("database.url", f"not a database URL: {database_url!r}")

    k = _section(raw, "kite", problems)
    kite = KiteConfig(
        base_url=str(k.get("base_url") or DEFAULT_BASE_URL).rstrip("/"),
        api_root=str(k.get("api_root") or DEFAULT_API_ROOT).rstrip("/"),
        timeout=_number(k, "timeout", "kite.", 15.0, float, problems, 0.1),
        retries=_number(k, "retries", "kite.", 4, int, problems, 0),
        backoff=_number(k, "backoff", "kite.", 0.5, float, problems, 0),
        concurrency=_number(k, "concurrency", "kite.", 10, int, problems, 1),
    )
    for key in ("base_url", "api_root"):
        url = getattr(kite, key)
        if not url.startswith(("http://", "https://")):
            problems.add(f"kite.{key}", f"must start with http:// or https://, got {url!r}")

    s = _section(raw, "schedule", problems)
    run_time = time(16, 30)
    if "time" in s:
        try:
            run_time = time.fromisoformat(str(s["time"]))
        except ValueError:
            problems.add("schedule.time", f"not a time (HH:MM): {s['time']!r}")
    schedule = ScheduleConfig(
        time=run_time,
        retry_attempts=_number(s, "retry_attempts", "schedule.", 3, int, problems, 0),
        retry_spacing_minutes=_number(s, "retry_spacing_minutes", "schedule.", 30, int,
                                      problems, 1),
    )
    c = _section(raw, "calendar", problems)
    calendar = CalendarConfig(
        holidays=_dates(c.get("holidays"), "calendar.holidays", problems),
        extra_sessions=_dates(c.get("extra_sessions"), "calendar.extra_sessions", problems),
    )
    log = _section(raw, "logging", problems)
    log_level = str(log.get("level") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.add("logging.level", f"must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    tz_name = str(raw.get("timezone") or "Asia/Kolkata")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        problems.add("timezone", f"unknown time zone {tz_name!r}")
        tz = ZoneInfo("Asia/Kolkata")

    accounts = _accounts(raw.get("accounts"), problems)
    if problems.lines:
        raise ConfigError(problems.lines)

    state_dir = Path(os.path.expanduser(str(raw["state_dir"]))) if raw.get("state_dir") \
        else default_state_dir()
    return Config(
        path=path, database_url=database_url, accounts=tuple(accounts), kite=kite,
        state_dir=state_dir, timezone=tz, schedule=schedule, calendar=calendar,
        healthcheck_url=str(raw["healthcheck_url"]) if raw.get("healthcheck_url") else None,
        log_level=log_level,
    )


def load_config(cli_path: str | None = None) -> Config:
    path = resolve_config_path(cli_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([
            f"{path}: config file not found (give --config PATH, set SNAPSHOTTER_CONFIG, "
            "or copy config.example.yaml to config.yaml)"
        ]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{path}: invalid YAML{where}: {problem}"]) from None
    config = parse_config(raw, str(path), path)
    warnings: list[str] = []
    if _has_literal_secret(raw) and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(
            f"{path}: holds a literal secret and is readable by group/others; "
            f"run `chmod 600 {path}` or use ${{VAR}} / password_file"
        )
    if warnings:
        config = Config(**{**config.__dict__, "warnings": tuple(warnings)})
    return config
