"""Load and validate the YAML configuration (a public contract: see config.example.yaml).

Every problem is reported as one line naming the file and key at fault; the whole
file is checked before anything runs, so a user fixes all problems in one go.
"""

from __future__ import annotations

import binascii
import contextlib
import difflib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
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
    # The *_file values as written (e.g. "ab1234-password"): systemd credential names.
    secret_files: tuple[str, ...] = ()

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
        """Every secret this config holds, the database password included."""
        found = [s for acc in self.accounts for s in acc.secrets()]
        match = re.match(r"^[^:/]+://[^:@/]*:([^@/]+)@", self.database_url)
        return [*found, match.group(1)] if match else found


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
    "kite": {"base_url", "api_root", "timeout", "retries", "backoff", "concurrency",
             "run_timeout", "max_response_mb"},
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
    """Collects one line per problem, keyed by the positional key path (``accounts[0].password``).

    A key gets at most one line: once a key is reported (e.g. its ${VAR} is unset), the
    knock-on problems about the same key (missing, malformed, ...) are not reported again.
    Account keys are shown with the account's user id: ``accounts[0] (AB1234).password``.
    """

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self._reported: set[str] = set()
        self._user_ids: dict[int, str] = {}

    def name_account(self, index: int, user_id: str) -> None:
        if user_id:
            self._user_ids[index] = user_id

    def add(self, key: str, message: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        self.lines.append(f"{self.source}: {self._shown(key)}: {message}")

    def _shown(self, key: str) -> str:
        m = re.match(r"accounts\[(\d+)\]", key)
        if m and int(m.group(1)) in self._user_ids:
            return f"{m.group(0)} ({self._user_ids[int(m.group(1))]}){key[m.end():]}"
        return key

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.source}: {self._shown(key)}: {message}")

    def unknown(self, where: str, key: str, known: set[str], present: Any) -> None:
        hint = difflib.get_close_matches(key, sorted(known), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        self.add(f"{where}{key}", f"unknown key{suggestion}")
        if hint and hint[0] not in present:
            # The misspelt key stands where hint[0] was meant: do not also call it missing.
            self._reported.add(f"{where}{hint[0]}")
            self._reported.add(f"{where}{hint[0].removesuffix('_file')}")


def _silent_interpolate(value: Any) -> str:
    return _VAR.sub(lambda m: os.environ.get(m.group(1), ""), str(value))


def _drop_unknown_keys(raw: dict[Any, Any], problems: _Problems) -> dict[Any, Any]:
    """Report unknown keys (before interpolation, so a typo'd key gives one line) and drop them."""
    out: dict[Any, Any] = {}
    for key, value in raw.items():
        if key not in _TOP_KEYS:
            problems.unknown("", str(key), _TOP_KEYS, raw)
        elif key in _SECTION_KEYS and isinstance(value, dict):
            known = _SECTION_KEYS[key]
            for k in value:
                if k not in known:
                    problems.unknown(f"{key}.", str(k), known, value)
            out[key] = {k: v for k, v in value.items() if k in known}
        elif key == "accounts" and isinstance(value, list):
            accounts: list[Any] = []
            for i, acc in enumerate(value):
                if isinstance(acc, dict):
                    user_id = _silent_interpolate(acc.get("user_id") or "").strip().upper()
                    problems.name_account(i, user_id)
                    for k in acc:
                        if k not in _ACCOUNT_KEYS:
                            problems.unknown(f"accounts[{i}].", str(k), _ACCOUNT_KEYS, acc)
                    acc = {k: v for k, v in acc.items() if k in _ACCOUNT_KEYS}
                accounts.append(acc)
            out[key] = accounts
        else:
            out[key] = value
    return out


def _interpolate(value: Any, key: str, problems: _Problems) -> Any:
    """Replace ${VAR} from the environment in every string, recursively."""
    if isinstance(value, str):
        unset: list[str] = []

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                unset.append(name)
                return ""
            return os.environ[name]

        result = _VAR.sub(sub, value)
        if unset:
            names = ", ".join(dict.fromkeys(unset))
            plural = "s" if len(set(unset)) > 1 else ""
            verb = "are" if plural else "is"
            problems.add(key, f"environment variable{plural} {names} {verb} not set")
        elif "${" in _VAR.sub("", value):
            # Never echo the value: it may be a secret written in the file.
            problems.add(key, "malformed ${...} reference: write ${NAME} (letters, digits, _)")
        return result
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{key}.{k}" if key else str(k), problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _is_literal(value: Any) -> bool:
    """True for a value written in the file itself (not only ${VAR} references)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    return bool(_VAR.sub("", str(value)).strip())


def _has_literal_secret(raw: Any) -> bool:
    """True when the file holds a secret itself (not ${VAR}, not a *_file)."""
    if not isinstance(raw, dict):
        return False
    db = raw.get("database")
    if isinstance(db, dict) and isinstance(db.get("url"), str):
        try:
            db_password = urlsplit(db["url"]).password
        except ValueError:
            db_password = None
        if db_password and _is_literal(db_password):
            return True
    if not isinstance(raw.get("accounts"), list):
        return False
    for acc in raw["accounts"]:
        if not isinstance(acc, dict):
            continue
        if any(_is_literal(acc.get(key)) for key in _SECRET_KEYS):
            return True
    return False


def _read_secret_file(path_value: Any, key: str, problems: _Problems) -> Secret | None:
    if not isinstance(path_value, str) or not path_value.strip():
        problems.add(key, "must be a file path")
        return None
    path = Path(os.path.expanduser(os.path.expandvars(path_value.strip())))
    if not path.is_absolute() and os.environ.get("CREDENTIALS_DIRECTORY"):
        # systemd LoadCredential=: a bare name refers to $CREDENTIALS_DIRECTORY
        path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / path
    # Name the file only when the value looks like one: `password_file: ${KITE_PW}`
    # written by mistake for `password:` must not print the password.
    shown = str(path) if "/" in path_value or os.environ.get("CREDENTIALS_DIRECTORY") \
        else "the file it names (not shown: is it a secret rather than a file name?)"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.add(key, f"cannot read {shown}: {exc.strerror or type(exc).__name__}")
        return None
    except UnicodeDecodeError:
        problems.add(key, f"cannot read {shown}: not UTF-8 text")
        return None
    if not text:
        problems.add(key, f"{shown} is empty")
        return None
    with contextlib.suppress(OSError):
        if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            problems.warn(key, f"{path} holds a secret and is readable by group/others; run "
                          f"`chmod 600 {path}`" if shown == str(path) else "the file it names "
                          "holds a secret and is readable by group/others; chmod 600 it")
    return Secret(text)


def _secret(acc: dict[str, Any], name: str, where: str, problems: _Problems,
            required: str | None = None, read_files: bool = True) -> Secret | None:
    """The secret ``name`` given inline or by ``name_file``; at most one line per problem.

    ``required`` (a reason, or "" for none) reports a missing secret.
    """
    inline, file_key = acc.get(name), f"{name}_file"
    file_value = acc.get(file_key)
    if file_value is not None:
        if inline not in (None, ""):
            problems.add(f"{where}{name}", f"give either {name} or {file_key}, not both")
            return None
        if not read_files:
            return None
        return _read_secret_file(file_value, f"{where}{file_key}", problems)
    if inline is None or inline == "":
        if required is not None:
            problems.add(f"{where}{name}", f"missing{required} (or give {file_key})")
        return None
    if not isinstance(inline, str):
        # YAML turns unquoted 012345 into 5349 and `on` into true: never guess a secret.
        problems.add(f"{where}{name}", "must be a string: put the value in quotes")
        return None
    return Secret(inline)


def _valid_totp_secret(secret: str) -> bool:
    try:
        pyotp.TOTP(secret.replace(" ", "").upper()).now()
    except (binascii.Error, ValueError, TypeError):
        return False
    return len(secret.replace(" ", "")) >= 16


def _number(section: dict[str, Any], key: str, where: str, default: Any, kind: type,
            problems: _Problems, minimum: float = 0) -> Any:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, str):  # e.g. from ${VAR}
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            with contextlib.suppress(ValueError):
                value = float(text)
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value)):
        problems.add(f"{where}{key}", f"must be a number, got {value!r}")
        return default
    if kind is int and value != int(value):
        problems.add(f"{where}{key}", f"must be a whole number, got {value!r}")
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
        if isinstance(v, datetime):
            out.append(v.date())
            continue
        if isinstance(v, date):
            out.append(v)
            continue
        try:
            out.append(date.fromisoformat(str(v).strip()))
        except ValueError:
            problems.add(f"{where}[{i}]", f"not a date (YYYY-MM-DD): {v!r}")
    return tuple(out)


def _section(raw: dict[str, Any], name: str, problems: _Problems) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        problems.add(name, "must be a mapping")
        return {}
    return value  # unknown keys were reported and dropped by _drop_unknown_keys


def _accounts(raw_accounts: Any, problems: _Problems,
              read_files: bool = True) -> list[AccountConfig]:
    if isinstance(raw_accounts, dict):
        problems.add("accounts", "must be a list: start each account with '- user_id: ...'")
        return []
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
        user_id = str(acc.get("user_id") or "").strip().upper()
        if not user_id:
            problems.add(f"{where}user_id", "missing")
        elif user_id in seen:
            problems.add(f"{where}user_id", f"duplicate user_id {user_id}")
        seen.add(user_id)
        auth = str(acc.get("auth") or "web").strip().lower()
        if auth not in AUTH_MODES:
            problems.add(f"{where}auth", f"must be one of {', '.join(AUTH_MODES)}, got {auth!r}")
        login = "" if auth in ("web", "connect") else None
        password = _secret(acc, "password", where, problems, login, read_files)
        totp = _secret(acc, "totp_secret", where, problems, login, read_files)
        connect = " (auth: connect needs it)" if auth == "connect" else None
        api_secret = _secret(acc, "api_secret", where, problems, connect, read_files)
        files = tuple(str(acc[k]) for k in ("password_file", "totp_secret_file",
                                             "api_secret_file") if acc.get(k))
        api_key = acc.get("api_key")
        if totp is not None and not _valid_totp_secret(totp):
            problems.add(f"{where}totp_secret",
                         "malformed: expected the base32 key shown when enabling external TOTP")
        if auth == "connect" and not api_key:
            problems.add(f"{where}api_key", "missing (auth: connect needs it)")
        if totp is not None:
            totp = Secret(totp.replace(" ", "").upper())
        accounts.append(AccountConfig(
            user_id=user_id, password=password, totp_secret=totp, auth=auth,
            api_key=str(api_key) if api_key else None, api_secret=api_secret,
            label=str(acc["label"]) if acc.get("label") else None, secret_files=files,
        ))
    return accounts


def parse_config(raw: Any, source: str = "<config>", path: Path | None = None,
                 read_secret_files: bool = True) -> Config:
    """Validate ``raw``; ``read_secret_files=False`` leaves *_file secrets unread (for
    `snapshotter systemd`, which runs where only the service's credentials exist)."""
    problems = _Problems(source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: must be a YAML mapping with database, kite, accounts"])
    raw = _drop_unknown_keys(raw, problems)
    raw = _interpolate(raw, "", problems)

    db = _section(raw, "database", problems)
    database_url = str(db.get("url") or DEFAULT_DATABASE_URL).strip()
    if "://" not in database_url:
        # not echoed: a URL may carry a password
        problems.add("database.url", "not a database URL (e.g. sqlite:///snapshots.db or "
                                     "postgresql+psycopg://user@host/db)")

    k = _section(raw, "kite", problems)
    kite = KiteConfig(
        base_url=str(k.get("base_url") or DEFAULT_BASE_URL).strip().rstrip("/"),
        api_root=str(k.get("api_root") or DEFAULT_API_ROOT).strip().rstrip("/"),
        timeout=_number(k, "timeout", "kite.", 15.0, float, problems, 0.1),
        retries=_number(k, "retries", "kite.", 4, int, problems, 0),
        backoff=_number(k, "backoff", "kite.", 0.5, float, problems, 0),
        concurrency=_number(k, "concurrency", "kite.", 10, int, problems, 1),
        run_timeout=_number(k, "run_timeout", "kite.", 900.0, float, problems, 1),
        max_response_mb=_number(k, "max_response_mb", "kite.", 16.0, float, problems, 0.001),
    )
    for key in ("base_url", "api_root"):
        url = getattr(kite, key)
        if not url.startswith(("http://", "https://")):
            problems.add(f"kite.{key}", f"must start with http:// or https://, got {url!r}")

    s = _section(raw, "schedule", problems)
    run_time = time(16, 30)
    if s.get("time") is not None:
        value = s["time"]
        try:
            run_time = value if isinstance(value, time) else time.fromisoformat(str(value))
        except ValueError:
            problems.add("schedule.time", f"not a time (HH:MM): {value!r}")
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
    log_level = str(log.get("level") or "INFO").strip().upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.add("logging.level", f"must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    tz_name = str(raw.get("timezone") or "Asia/Kolkata").strip()
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. "America" (a folder)
        problems.add("timezone", f"unknown time zone {tz_name!r}")
        tz = ZoneInfo("Asia/Kolkata")

    accounts = _accounts(raw.get("accounts"), problems, read_secret_files)
    if problems.lines:
        raise ConfigError(problems.lines)

    state_dir = Path(os.path.expanduser(str(raw["state_dir"]))) if raw.get("state_dir") \
        else default_state_dir()
    return Config(
        path=path, database_url=database_url, accounts=tuple(accounts), kite=kite,
        state_dir=state_dir, timezone=tz, schedule=schedule, calendar=calendar,
        healthcheck_url=str(raw["healthcheck_url"]) if raw.get("healthcheck_url") else None,
        log_level=log_level, warnings=tuple(problems.warnings),
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps clock times as text: YAML 1.1 reads `16:30` as the number 990."""


_Loader.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CLOCK = re.compile(r"^(?:[0-9]|[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?$")
for _digit in "0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_digit, []).insert(
        0, ("tag:yaml.org,2002:str", _CLOCK))


def load_config(cli_path: str | None = None, read_secret_files: bool = True) -> Config:
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
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text"]) from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        lines = text.splitlines()
        if mark is not None and mark.line < len(lines) and "${" in lines[mark.line]:
            problem += " (inside {...} or [...], put ${VAR} values in quotes)"
        raise ConfigError([f"{path}: invalid YAML{where}: {problem}"]) from None
    config = parse_config(raw, str(path), path, read_secret_files)
    warnings: list[str] = list(config.warnings)
    if _has_literal_secret(raw) and path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(
            f"{path}: holds a literal secret and is readable by group/others; "
            f"run `chmod 600 {path}` or use ${{VAR}} / password_file"
        )
    if warnings:
        config = Config(**{**config.__dict__, "warnings": tuple(warnings)})
    return config
