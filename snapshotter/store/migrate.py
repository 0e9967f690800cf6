"""Migrations: every database change goes through Alembic (``migrations/``).

A database already at head is recognised without importing Alembic (a few hundred
milliseconds): the newest revision id is read from the revision files, and compared with
the row of the ``alembic_version`` table. Up to date also means its views and derived
tables were built with this version's SQL (``views.up_to_date``); when they were not,
``upgrade`` runs Alembic all the same, whose environment recreates them.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from snapshotter.errors import DatabaseUnavailable
from snapshotter.store.engine import describe_url, make_engine, normalize_url
from snapshotter.store.lock import run_lock

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)

_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*(.*)$", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


def migrations_dir() -> Path:
    package = Path(__file__).resolve().parent.parent  # snapshotter/
    packaged = package / "_migrations"  # wheel installs (see pyproject.toml)
    return packaged if packaged.is_dir() else package.parent / "migrations"


def alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["database_url"] = normalize_url(url)
    return cfg


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


@cache
def head_from_files() -> str | None:
    """The newest revision id, from the ``revision =`` and ``down_revision =`` lines of
    the revision files; None when they are not that simple (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (migrations_dir() / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = _REVISION.findall(text)
        down = _DOWN_REVISION.findall(text)
        ids = _QUOTED.findall(revision[0]) if len(revision) == 1 else []
        if len(ids) != 1 or len(down) != 1:
            return None
        revisions.add(ids[0])
        parents.update(_QUOTED.findall(down[0]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def stamped_revision(engine: sa.Engine) -> str | None:
    """The revision the database says it is at (None: no single one, or none)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def _up_to_date(engine: sa.Engine, url: str, *, fast: bool) -> bool:
    """At head, with the views and derived tables of this version's SQL (``fast``: the
    head read from the revision files, without Alembic)."""
    from snapshotter.store import views

    if fast:
        head = head_from_files()
        at_head = head is not None and stamped_revision(engine) == head
    else:  # a new database (no revision) is not at head: no need to read the revisions
        current = current_revision(engine)
        at_head = current is not None and current == head_revision(url)
    if not at_head:
        return False
    with engine.connect() as conn:
        return views.up_to_date(conn)


def check_at_head(engine: sa.Engine, url: str) -> None:
    """A database this process may only read must already be at head: raise
    ``DatabaseUnavailable`` naming what to do when it is not."""
    head = head_from_files()
    if head is not None and stamped_revision(engine) == head:
        return
    if current_revision(engine) == head_revision(url):
        return
    raise DatabaseUnavailable(
        f"database unreachable or not writable: {describe_url(url)}: read-only, and at an "
        "older schema than this version reads: run `snapshotter db upgrade` once with "
        "write access")


def upgrade(url: str, engine: sa.Engine | None = None, *,
            deadline: float | None = None) -> bool:
    """Apply pending migrations; True when something was applied. Waits for another
    process's run lock at most until the monotonic ``deadline``."""
    own = engine is None
    engine = engine or make_engine(url)
    try:
        if _up_to_date(engine, url, fast=True) or _up_to_date(engine, url, fast=False):
            return False
        # two processes starting together must not both migrate
        with run_lock(url, deadline=deadline):
            if _up_to_date(engine, url, fast=False):
                return False
            from alembic import command

            cfg = alembic_config(url)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        log.info("database migrated to %s", head_revision(url))
        return True
    finally:
        if own:
            engine.dispose()
