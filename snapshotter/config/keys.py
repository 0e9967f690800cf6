"""The keys a config file may hold (config.example.yaml shows each): unknown ones get a
"did you mean"."""

from __future__ import annotations

from typing import Any

from snapshotter.config.problems import Problems, silent_interpolate

TOP_KEYS = {
    "database", "kite", "accounts", "state_dir", "timezone", "schedule", "calendar",
    "healthcheck_url", "logging", "notify", "import", "serve",
}
SECTION_KEYS = {
    "database": {"url"},
    "kite": {"base_url", "api_root", "timeout", "retries", "backoff", "concurrency",
             "run_timeout", "max_response_mb", "clock_tolerance"},
    "schedule": {"time", "retry_attempts", "retry_spacing_minutes", "login_reminder"},
    "calendar": {"holidays", "extra_sessions"},
    "logging": {"level"},
    "notify": {"urls", "on", "timeout"},
    "import": {"max_file_mb"},
    "serve": {"host", "port", "password", "password_file", "trusted_proxy", "url"},
}
ACCOUNT_KEYS = {
    "user_id", "password", "password_file", "totp_secret", "totp_secret_file", "auth",
    "api_key", "api_secret", "api_secret_file", "label", "group",
}
SECRET_KEYS = ("password", "totp_secret", "api_secret")
RESERVED_GROUP = "ALL"  # the all-accounts (household) row of the reports


def drop_unknown_keys(raw: dict[Any, Any], problems: Problems) -> dict[Any, Any]:
    """Report unknown keys (before interpolation, so a typo'd key gives one line) and drop them."""
    out: dict[Any, Any] = {}
    for key, value in raw.items():
        if key not in TOP_KEYS:
            problems.unknown("", str(key), TOP_KEYS, raw)
        elif key in SECTION_KEYS and isinstance(value, dict):
            if key == "notify":
                # YAML 1.1 reads the key `on` as the boolean true.
                value = {"on" if k is True else k: v for k, v in value.items()}
            out[key] = _known_only(value, f"{key}.", SECTION_KEYS[key], problems)
        elif key == "accounts" and isinstance(value, list):
            accounts: list[Any] = []
            for i, acc in enumerate(value):
                if isinstance(acc, dict):
                    user_id = silent_interpolate(acc.get("user_id") or "").strip().upper()
                    problems.name_account(i, user_id)
                    acc = _known_only(acc, f"accounts[{i}].", ACCOUNT_KEYS, problems)
                accounts.append(acc)
            out[key] = accounts
        else:
            out[key] = value
    return out


def without_secrets(raw: dict[Any, Any], keep: str | None = None) -> dict[Any, Any]:
    """``raw`` without what only logins and notifications use: each account's secrets
    (inline, ${VAR} or *_file) and notify.urls, so that the commands that only read the
    database need none of them set (and hold none). ``keep``: the user id of one account
    whose secrets stay (the dashboard finishing that account's Kite Connect login)."""
    dropped = {*SECRET_KEYS, *(f"{key}_file" for key in SECRET_KEYS)}
    out = dict(raw)

    def kept(acc: dict[Any, Any]) -> bool:
        return keep is not None and \
            silent_interpolate(str(acc.get("user_id") or "")).strip().upper() == keep

    if isinstance(out.get("accounts"), list):
        out["accounts"] = [{k: v for k, v in acc.items() if k not in dropped}
                           if isinstance(acc, dict) and not kept(acc) else acc
                           for acc in out["accounts"]]
    if isinstance(out.get("notify"), dict):
        out["notify"] = {k: v for k, v in out["notify"].items() if k != "urls"}
    return out


def _known_only(mapping: dict[Any, Any], where: str, known: set[str],
                problems: Problems) -> dict[Any, Any]:
    for k in mapping:
        if k not in known:
            problems.unknown(where, str(k), known, mapping)
    return {k: v for k, v in mapping.items() if k in known}
