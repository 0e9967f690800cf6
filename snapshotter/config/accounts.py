"""The ``accounts:`` list: user ids, login modes and secrets (inline, ${VAR} or *_file)."""

from __future__ import annotations

import binascii
import contextlib
import os
import stat
from pathlib import Path
from typing import Any

import pyotp

from snapshotter.config.keys import RESERVED_GROUP
from snapshotter.config.model import AUTH_MODES, AccountConfig, Secret
from snapshotter.config.problems import Problems

# A code the authenticator app shows, given where its key belongs (never echoed).
TOTP_CODE_GIVEN = ("looks like a 6-digit code from the authenticator app, not its key: give "
                   "the base32 key (letters A-Z and digits 2-7) shown when enabling "
                   "external TOTP")


def parse_accounts(raw_accounts: Any, problems: Problems, read_files: bool = True,
                   secrets: bool = True) -> list[AccountConfig]:
    """The accounts; ``secrets=False`` (the read commands): their secrets were left out
    of the mapping, so none is required or read."""
    if isinstance(raw_accounts, dict):
        problems.add("accounts", "must be a list: start each account with '- user_id: ...'")
        return []
    if not isinstance(raw_accounts, list) or not raw_accounts:
        problems.add("accounts", "missing: list at least one account (user_id, password, ...)")
        return []
    accounts: list[AccountConfig] = []
    positions: list[int] = []  # each account's index in the list as written
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
        login = "" if auth in ("web", "connect") and secrets else None
        password = read_secret(acc, "password", where, problems, login, read_files)
        totp = read_secret(acc, "totp_secret", where, problems, login, read_files)
        connect = " (auth: connect needs it)" if auth == "connect" and secrets else None
        api_secret = read_secret(acc, "api_secret", where, problems, connect, read_files)
        files = tuple(str(acc[k]) for k in ("password_file", "totp_secret_file",
                                             "api_secret_file") if acc.get(k))
        api_key = acc.get("api_key")
        if totp is not None and _looks_like_code(totp):
            problems.add(f"{where}totp_secret", TOTP_CODE_GIVEN)
        elif totp is not None and not _valid_totp_secret(totp):
            problems.add(f"{where}totp_secret",
                         "malformed: expected the base32 key shown when enabling external TOTP")
        if auth == "connect" and not api_key:
            problems.add(f"{where}api_key", "missing (auth: connect needs it)")
        if totp is not None:
            totp = Secret(totp.replace(" ", "").upper())
        positions.append(i)
        accounts.append(AccountConfig(
            user_id=user_id, password=password, totp_secret=totp, auth=auth,
            api_key=str(api_key) if api_key else None, api_secret=api_secret,
            label=str(acc["label"]) if acc.get("label") else None, secret_files=files,
            group=_group(acc.get("group"), f"{where}group", problems),
        ))
    _check_groups(accounts, positions, problems)
    return accounts


def _group(value: Any, key: str, problems: Problems) -> str:
    """accounts[].group: a name, trimmed ("" when not given: the account's own)."""
    if value is None:
        return ""
    if not isinstance(value, str) or not value.strip():
        problems.add(key, "must be a group name (text, e.g. family), or left out for the "
                          "account's own group")
        return ""
    name = value.strip()
    if name.upper() == RESERVED_GROUP:
        problems.add(key, f"{RESERVED_GROUP!r} is reserved for the all-accounts figures: "
                          "choose another name")
        return ""
    return name


def _check_groups(accounts: list[AccountConfig], positions: list[int],
                  problems: Problems) -> None:
    """A group may not take another account's user id as its name unless that account is
    in it (`report performance --group AB1234` would mean two things)."""
    by_id = {acc.user_id: acc for acc in accounts if acc.user_id}
    for i, acc in zip(positions, accounts, strict=True):
        other = by_id.get(acc.group.upper())
        if other is not None and other is not acc and other.group != acc.group:
            problems.add(f"accounts[{i}].group",
                         f"{acc.group!r} is the user_id of another account, which is in "
                         f"group {other.group!r}: name the group otherwise, or put "
                         f"{other.user_id} in it too")


def read_secret(acc: dict[str, Any], name: str, where: str, problems: Problems,
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
        if name == "totp_secret" and isinstance(inline, int) and not isinstance(inline, bool) \
                and 0 <= inline < 10**6:
            problems.add(f"{where}{name}", TOTP_CODE_GIVEN)  # quoting would not help
        else:
            problems.add(f"{where}{name}", "must be a string: put the value in quotes")
        return None
    return Secret(inline)


def _read_secret_file(path_value: Any, key: str, problems: Problems) -> Secret | None:
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


def _looks_like_code(secret: str) -> bool:
    """Six digits (spaces aside): what the app shows every 30 s, not the key behind it."""
    digits = secret.replace(" ", "")
    return len(digits) == 6 and digits.isascii() and digits.isdigit()


def _valid_totp_secret(secret: str) -> bool:
    try:
        pyotp.TOTP(secret.replace(" ", "").upper()).now()
    except (binascii.Error, ValueError, TypeError):
        return False
    return len(secret.replace(" ", "")) >= 16
