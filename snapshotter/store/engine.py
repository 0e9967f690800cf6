"""Engines: SQLite (private file, WAL, math functions) and PostgreSQL; what a database
error means (unreachable, or refusing the data) and how it is named."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from snapshotter.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _ln(x: float | None) -> float | None:
    return math.log(x) if x is not None and x > 0 else None


def _exp(x: float | None) -> float | None:
    if x is None:
        return None
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _use_wal(cursor: Any) -> None:
    """Switch a SQLite file to WAL once. The switch needs the file to itself and SQLite
    answers "database is locked" at once, without waiting, while another process writes
    (two replicas starting together): try again for a while."""
    for _ in range(300):
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.1)
    cursor.execute("PRAGMA journal_mode=WAL")


def _create_private_sqlite_file(url: str) -> None:
    """Create a new SQLite database file 0600 before SQLite does (it would use 0644 under
    the usual umask); SQLite gives its -wal and -shm files the database file's mode."""
    database = sa.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:  # exists already, or its directory is missing: SQLite reports that
        return
    os.close(fd)


def read_only_sqlite_url(url: str) -> str | None:
    """For a command that only reads: a URL opening the SQLite file without writing to it,
    when this process cannot write the file or its directory (a read-only file, directory
    or mount); None when it can, and for other databases."""
    path = sqlite_path(url)
    if path is None or not os.path.isfile(path):
        return None
    directory = os.path.dirname(path)
    writable_dir = os.access(directory, os.W_OK | os.X_OK)
    if os.access(path, os.W_OK) and writable_dir:
        return None
    # A WAL database is read through its -shm file, which SQLite creates beside it: where
    # that cannot be made, only immutable=1 opens it (right for a read-only mount, which
    # nothing writes behind our back).
    option = "mode=ro" if writable_dir or os.path.exists(f"{path}-shm") else "immutable=1"
    return f"sqlite:///file:{quote(path)}?{option}&uri=true"


def _read_only(url: str) -> bool:
    query = url.partition("?")[2].split("&")
    return "mode=ro" in query or "immutable=1" in query


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        _create_private_sqlite_file(url)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)
        read_only = _read_only(url)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if not read_only:  # switching to WAL writes the file
                _use_wal(cursor)
            try:  # pnl_daily needs LN/EXP: SQLite has them only when built with math functions
                cursor.execute("SELECT ln(1), exp(0)")
            except sqlite3.OperationalError:
                dbapi_conn.create_function("ln", 1, _ln, deterministic=True)
                dbapi_conn.create_function("exp", 1, _exp, deterministic=True)
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def sqlite_path(url: str) -> str | None:
    """The absolute path of a SQLite database file; None for an in-memory SQLite database
    and for other databases."""
    try:
        parsed = sa.make_url(normalize_url(url))
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    path = parsed.database or ""
    if path.startswith("file:"):  # a URI filename (?uri=true)
        path = path.removeprefix("file:").split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return os.path.abspath(path)


def describe_url(url: str) -> str:
    """The database as error messages name it: the SQLite path, else the URL with its
    password hidden."""
    try:
        parsed = sa.make_url(normalize_url(url))
    except sa.exc.ArgumentError:
        return "the configured database.url"
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite database {sqlite_path(url) or ':memory:'}"
    return parsed.render_as_string(hide_password=True)


def sqlite_file_problem(path: str) -> str | None:
    """What keeps SQLite from opening or writing the file at ``path``, in words (None:
    nothing the file system shows)."""
    file = Path(path)
    if file.is_dir():
        return "it is a directory, not a database file"
    if not file.parent.is_dir():
        if file.parent.exists():
            return f"{file.parent} is not a directory"
        return f"directory {file.parent} does not exist"
    if file.exists():
        if not os.access(file, os.W_OK):
            return "the file is read-only"
    elif not os.access(file.parent, os.W_OK | os.X_OK):
        return f"directory {file.parent} is read-only (the file cannot be created)"
    return None


def is_connection_error(exc: BaseException) -> bool:
    """The database could not be reached or written (connection lost, server gone, file
    read-only or locked), as opposed to refusing the data: worth keeping the payloads and
    trying again later. PostgreSQL data, constraint, syntax and size errors are not."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    return not sqlstate.startswith(("22", "23", "42", "54"))


def unavailable(exc: BaseException, url: str) -> DatabaseUnavailable:
    """One line for a database that cannot be reached or written: the database (password
    hidden) and what is wrong, in words where the file system or the server says."""
    from snapshotter import redact

    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    reason = lines[0] if lines else type(orig).__name__
    if "FATAL:" in reason:  # PostgreSQL's own words, e.g. database "x" does not exist
        reason = reason.rsplit("FATAL:", 1)[1].strip()
    path = sqlite_path(url)
    if path is not None:
        problem = sqlite_file_problem(path)
        if problem:
            reason = problem
        elif "readonly" in reason:  # e.g. opened with ?mode=ro, or a read-only mount
            reason = f"read-only (SQLite: {reason})"
    if len(reason) > 200:
        reason = reason[:200] + "..."
    return DatabaseUnavailable(
        redact.redact(f"database unreachable or not writable: {describe_url(url)}: {reason}"))


def check_writable(engine: sa.Engine, url: str) -> None:
    """Raise ``DatabaseUnavailable`` unless the database accepts a write (rolled back):
    checked before any login, since a web login also logs the user out of their browser."""
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                conn.execute(sa.text("UPDATE alembic_version SET version_num = version_num"))
            finally:
                trans.rollback()
    except sa.exc.SQLAlchemyError as exc:
        raise unavailable(exc, url) from None
