"""Read the YAML config file (a public contract: see config.example.yaml)."""

from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import yaml

from snapshotter.config.keys import SECRET_KEYS
from snapshotter.config.model import Config, resolve_config_path, url_secrets
from snapshotter.config.parse import parse_config
from snapshotter.config.problems import VAR
from snapshotter.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps clock times as text: YAML 1.1 reads `16:30` as the number 990."""


_Loader.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CLOCK = re.compile(r"^(?:[0-9]|[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?$")
for _digit in "0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_digit, []).insert(
        0, ("tag:yaml.org,2002:str", _CLOCK))


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """_Loader's rules on libyaml's parser (a tenth of the CPU for a config of hundreds
    of accounts); a file it refuses is read again by _Loader, whose messages we word."""


_FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers


def _parse_yaml(text: str) -> object:
    try:
        return yaml.load(text, Loader=_FastLoader)  # a SafeLoader
    except yaml.YAMLError:
        return yaml.load(text, Loader=_Loader)


def load_config(cli_path: str | None = None, read_secret_files: bool = True,
                secrets: bool = True, secrets_of: str | None = None) -> Config:
    """The config file, checked; ``secrets=False`` for a command that only reads the
    database: the accounts' secrets and notify.urls are neither resolved nor required
    (but those of the account ``secrets_of``, when given)."""
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
        raw = _parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = _error_line(exc, mark)
        where = f" at line {line}" if line is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        context = str(getattr(exc, "context", ""))
        if problem == "found unexpected end of stream" and "quoted" in context:
            problem = "a quoted value is never closed (its closing quote is missing)"
        if _at_variable(text, mark):
            problem += " (inside {...} or [...], put ${VAR} values in quotes)"
        elif problem.startswith("expected <block end>"):
            problem += " (check the indentation: the keys of one mapping line up)"
        elif problem.startswith("mapping values are not allowed here"):
            problem += " (check the indentation, or quote a value holding ': ')"
        raise ConfigError([f"{path}: invalid YAML{where}: {problem}"]) from None
    config = parse_config(raw, str(path), path, read_secret_files, secrets, secrets_of)
    warnings: list[str] = list(config.warnings)
    database_url = resolve_sqlite_url(config.database_url, path.parent)
    if database_url != config.database_url:
        warnings += _moved_database_warnings(path, config.database_url)
        config = replace(config, database_url=database_url)
    if not config.state_dir.is_absolute():
        warnings += _moved_state_dir_warnings(path, config.state_dir)
        config = replace(config, state_dir=Path(os.path.abspath(path.parent / config.state_dir)))
    if _has_literal_secret(raw) and path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(
            f"{path}: holds a literal secret and is readable by group/others; "
            f"run `chmod 600 {path}` or use ${{VAR}} / password_file"
        )
    if warnings:
        config = replace(config, warnings=tuple(warnings))
    return config


def _error_line(exc: yaml.YAMLError, mark: Any) -> int | None:
    """The line at fault, 1-based. A scanner error is noticed where scanning gave up (the
    line after a key without its colon, the end of the file after an unclosed quote):
    the line it began at, its context, is the one to fix."""
    context = getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.scanner.ScannerError) and context is not None:
        return int(context.line) + 1
    return int(mark.line) + 1 if mark is not None else None


def _at_variable(text: str, mark: Any) -> bool:
    """Did YAML stop at the ``{`` of a ``${VAR}`` (unquoted inside a flow collection)?
    Not merely on a line holding one: an indentation error there is about indentation."""
    if mark is None:
        return False
    lines = text.splitlines()
    if mark.line >= len(lines):
        return False
    line, column = lines[mark.line], mark.column
    return 0 < column < len(line) and line[column - 1:column + 1] == "${"


def _is_literal(value: Any) -> bool:
    """True for a value written in the file itself (not only ${VAR} references)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    return bool(VAR.sub("", str(value)).strip())


def _literal_url_token(url: Any) -> bool:
    """True for an Apprise URL with a token written in the file itself (not ${VAR})."""
    return isinstance(url, str) and len(url_secrets(VAR.sub("", url))) > 1


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
    notify = raw.get("notify")
    if isinstance(notify, dict) and isinstance(notify.get("urls"), list) \
            and any(_literal_url_token(url) for url in notify["urls"]):
        return True
    if not isinstance(raw.get("accounts"), list):
        return False
    for acc in raw["accounts"]:
        if not isinstance(acc, dict):
            continue
        if any(_is_literal(acc.get(key)) for key in SECRET_KEYS):
            return True
    return False


_SQLITE_URL = re.compile(r"^(sqlite(?:\+\w+)?:///(?:file:)?)([^?]*)(\?.*)?$")


def _relative_sqlite_path(url: str) -> tuple[str, str, str] | None:
    """(head, path, query) of a SQLite URL naming a relative file; None for any other."""
    match = _SQLITE_URL.match(url)
    if not match:
        return None
    head, path, query = match.group(1), match.group(2), match.group(3) or ""
    if path in ("", ":memory:") or path.startswith("/"):
        return None
    return head, path, query


def resolve_sqlite_url(url: str, config_dir: Path) -> str:
    """A relative SQLite path (``sqlite:///snapshots.db``, the default included) names
    a file in the config file's directory, wherever the command runs."""
    parts = _relative_sqlite_path(url)
    if parts is None:
        return url
    head, path, query = parts
    base = quote(os.path.abspath(config_dir), safe="/")  # the URL is percent-decoded
    return f"{head}{posixpath.normpath(posixpath.join(base, path))}{query}"


def _moved_database_warnings(config_path: Path, url: str) -> list[str]:
    """Earlier versions read a relative SQLite path against the working directory: say so
    when a database stands there and none beside the config file."""
    parts = _relative_sqlite_path(url)
    if parts is None:
        return []
    old = os.path.abspath(unquote(parts[1]))
    new = os.path.abspath(os.path.join(config_path.parent, unquote(parts[1])))
    if old == new or os.path.exists(new) or not os.path.exists(old):
        return []
    return [f"{config_path}: database.url: a relative SQLite path is relative to this "
            f"file's directory ({new}); the database at {old} (the working directory) is "
            "not used: move it there, or give its absolute path (sqlite:////...)"]


def _moved_state_dir_warnings(config_path: Path, state_dir: Path) -> list[str]:
    """Earlier versions read a relative ``state_dir`` against the working directory: say so
    when one stands there and none beside the config file (its sessions would be lost,
    and each account logged in again)."""
    old = os.path.abspath(state_dir)
    new = os.path.abspath(config_path.parent / state_dir)
    if old == new or os.path.exists(new) or not os.path.isdir(old):
        return []
    return [f"{config_path}: state_dir: a relative path is relative to this file's "
            f"directory ({new}); the state directory at {old} (the working directory) is "
            "not used: move it there, or give its absolute path"]
