"""Validate a config mapping: every problem is reported as one line naming the file and
key at fault; the whole file is checked before anything runs, so a user fixes all problems
in one go."""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import math
import os
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from snapshotter.config.accounts import parse_accounts, read_secret
from snapshotter.config.keys import drop_unknown_keys, without_secrets
from snapshotter.config.model import (
    DEFAULT_API_ROOT,
    DEFAULT_BASE_URL,
    DEFAULT_DATABASE_URL,
    DEFAULT_LOG_LEVEL,
    DEFAULT_TIMEZONE,
    LOG_LEVELS,
    NOTIFY_EVENTS,
    CalendarConfig,
    Config,
    ImportConfig,
    KiteConfig,
    NotifyConfig,
    ScheduleConfig,
    Secret,
    ServeConfig,
    default_state_dir,
)
from snapshotter.config.problems import Problems, interpolate
from snapshotter.errors import ConfigError

#: the smallest value each number key takes
_KITE_MINIMUMS: dict[str, float] = {
    "timeout": 0.1, "retries": 0, "backoff": 0, "concurrency": 1, "run_timeout": 1,
    "max_response_mb": 0.001, "clock_tolerance": 1,
}
_SCHEDULE_MINIMUMS: dict[str, float] = {"retry_attempts": 0, "retry_spacing_minutes": 1}
_IMPORT_MINIMUMS: dict[str, float] = {"max_file_mb": 0.001}


def parse_config(raw: Any, source: str = "<config>", path: Path | None = None,
                 read_secret_files: bool = True, secrets: bool = True,
                 secrets_of: str | None = None) -> Config:
    """Validate ``raw``; ``read_secret_files=False`` leaves *_file secrets unread (for
    `snapshotter systemd`, which runs where only the service's credentials exist);
    ``secrets=False`` leaves out the accounts' secrets and notify.urls altogether (the
    commands that only read the database: their ${VAR}s need not be set)."""
    problems = Problems(source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: must be a YAML mapping with database, kite, accounts"])
    raw = drop_unknown_keys(raw, problems)
    if not secrets:
        raw = without_secrets(raw, keep=secrets_of)
    raw = interpolate(raw, "", problems)

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
        **_numbers(k, "kite.", KiteConfig(), _KITE_MINIMUMS, problems),
    )
    for key in ("base_url", "api_root"):
        url = getattr(kite, key)
        if not url.startswith(("http://", "https://")):
            problems.add(f"kite.{key}", f"must start with http:// or https://, got {url!r}")

    s = _section(raw, "schedule", problems)
    default_schedule = ScheduleConfig()
    run_time = default_schedule.time
    if s.get("time") is not None:
        value = s["time"]
        try:
            run_time = value if isinstance(value, time) else time.fromisoformat(str(value))
        except ValueError:
            problems.add("schedule.time", f"not a time (HH:MM): {value!r}")
    reminder = None
    if s.get("login_reminder") not in (None, "", False):
        value = s["login_reminder"]
        try:
            reminder = value if isinstance(value, time) else time.fromisoformat(str(value))
        except ValueError:
            problems.add("schedule.login_reminder", f"not a time (HH:MM): {value!r}")
    schedule = ScheduleConfig(
        time=run_time, login_reminder=reminder,
        **_numbers(s, "schedule.", default_schedule, _SCHEDULE_MINIMUMS, problems)
    )
    c = _section(raw, "calendar", problems)
    calendar = CalendarConfig(
        holidays=_dates(c.get("holidays"), "calendar.holidays", problems),
        extra_sessions=_dates(c.get("extra_sessions"), "calendar.extra_sessions", problems),
    )
    log = _section(raw, "logging", problems)
    log_level = str(log.get("level") or DEFAULT_LOG_LEVEL).strip().upper()
    if log_level not in LOG_LEVELS:
        problems.add("logging.level", f"must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    tz_name = str(raw.get("timezone") or DEFAULT_TIMEZONE).strip()
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. "America" (a folder)
        problems.add("timezone", f"unknown time zone {tz_name!r}")
        tz = ZoneInfo(DEFAULT_TIMEZONE)

    notify = _notify(_section(raw, "notify", problems), problems)
    imports = ImportConfig(**_numbers(_section(raw, "import", problems), "import.",
                                      ImportConfig(), _IMPORT_MINIMUMS, problems))
    serve = _serve(_section(raw, "serve", problems), problems, read_secret_files)
    accounts = parse_accounts(raw.get("accounts"), problems, read_secret_files, secrets)
    if problems.lines:
        raise ConfigError(problems.lines)

    state_dir = Path(os.path.expanduser(str(raw["state_dir"]))) if raw.get("state_dir") \
        else default_state_dir()
    return Config(
        path=path, database_url=database_url, accounts=tuple(accounts), kite=kite,
        state_dir=state_dir, timezone=tz, schedule=schedule, calendar=calendar,
        healthcheck_url=str(raw["healthcheck_url"]) if raw.get("healthcheck_url") else None,
        log_level=log_level, notify=notify, imports=imports, serve=serve,
        warnings=tuple(problems.warnings),
    )


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
_URL_EXAMPLES = "e.g. tgram://BOT_TOKEN/CHAT_ID, mailto://USER:PASSWORD@gmail.com, ntfy://TOPIC"


def _notify(section: dict[str, Any], problems: Problems) -> NotifyConfig:
    """``notify:``: Apprise URLs (checked against Apprise by the commands that notify:
    loading it costs what `status` must not) and the runs they hear about. A URL holds
    tokens: a problem names its key, never its value."""
    defaults = NotifyConfig()
    raw_urls = section.get("urls")
    if raw_urls is None:
        raw_urls = []
    if not isinstance(raw_urls, list):
        problems.add("notify.urls", "must be a list of Apprise URLs: one `- URL` line each "
                                    f"({_URL_EXAMPLES})")
        raw_urls = []
    urls = []
    for i, url in enumerate(raw_urls):
        if not isinstance(url, str) or not _URL.match(url.strip()):
            problems.add(f"notify.urls[{i}]", f"not an Apprise URL: expected SCHEME://... "
                                              f"({_URL_EXAMPLES}); the value is not shown")
        else:
            urls.append(Secret(url.strip()))
    raw_on = section.get("on")
    if raw_on is None:
        raw_on = list(defaults.on)
    if isinstance(raw_on, str):
        raw_on = [raw_on]
    on: list[str] = []
    if not isinstance(raw_on, list):
        problems.add("notify.on", f"must be a list of {', '.join(NOTIFY_EVENTS)}")
        raw_on = []
    for i, event in enumerate(raw_on):
        value = str(event).strip().lower()
        if value not in NOTIFY_EVENTS:
            hint = difflib.get_close_matches(value, NOTIFY_EVENTS, n=1)
            problems.add(f"notify.on[{i}]", f"unknown value {event!r}"
                         + (f" (did you mean {hint[0]!r}?)" if hint else "")
                         + f": expected {', '.join(NOTIFY_EVENTS)}")
        elif value not in on:
            on.append(value)
    timeout = _number(section, "timeout", "notify.", defaults.timeout, problems, 1)
    return NotifyConfig(urls=tuple(urls), on=tuple(on), timeout=timeout)


def _serve(section: dict[str, Any], problems: Problems, read_files: bool) -> ServeConfig:
    """``serve:``: the dashboard's address, its password (``${VAR}`` or a file) and the
    reverse proxies believed. The password is never echoed."""
    defaults = ServeConfig()
    host = str(section.get("host") or defaults.host).strip()
    port = _number(section, "port", "serve.", defaults.port, problems, 1)
    if port > 65535:
        problems.add("serve.port", f"must be at most 65535, got {port}")
    password = read_secret(section, "password", "serve.", problems, None, read_files)
    proxies = section.get("trusted_proxy")
    if proxies is None:
        proxies = []
    if isinstance(proxies, str):
        proxies = [proxies]
    trusted: list[str] = []
    if not isinstance(proxies, list):
        problems.add("serve.trusted_proxy", "must be an address or a list of addresses")
        proxies = []
    for i, proxy in enumerate(proxies):
        text = str(proxy).strip()
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            problems.add(f"serve.trusted_proxy[{i}]",
                         f"not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8): {text!r}")
            continue
        trusted.append(text)
    url = str(section.get("url") or "").strip().rstrip("/") or None
    if url is not None and not url.startswith(("http://", "https://")):
        problems.add("serve.url", f"must start with http:// or https://, got {url!r}")
    password_file = str(section["password_file"]) if section.get("password_file") else None
    return ServeConfig(host=host, port=port, password=password, trusted_proxy=tuple(trusted),
                       url=url, password_file=password_file)


def _numbers(section: dict[str, Any], where: str, defaults: Any, minimums: dict[str, float],
             problems: Problems) -> dict[str, Any]:
    """The number keys of ``section`` named in ``minimums``, each of its default's type."""
    return {key: _number(section, key, where, getattr(defaults, key), problems, minimum)
            for key, minimum in minimums.items()}


def _number(section: dict[str, Any], key: str, where: str, default: float,
            problems: Problems, minimum: float) -> Any:
    kind = type(default)
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


def _dates(values: Any, where: str, problems: Problems) -> tuple[date, ...]:
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


def _section(raw: dict[str, Any], name: str, problems: Problems) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        problems.add(name, "must be a mapping")
        return {}
    return value  # unknown keys were reported and dropped by drop_unknown_keys
