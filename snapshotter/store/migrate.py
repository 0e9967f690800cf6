"""Migrations: every database change goes through Alembic (``migrations/``)."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from snapshotter.store.engine import make_engine, normalize_url
from snapshotter.store.lock import run_lock

log = logging.getLogger(__name__)


def migrations_dir() -> Path:
    package = Path(__file__).resolve().parent.parent  # snapshotter/
    packaged = package / "_migrations"  # wheel installs (see pyproject.toml)
    return packaged if packaged.is_dir() else package.parent / "migrations"


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["database_url"] = normalize_url(url)
    return cfg


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def upgrade(url: str, engine: sa.Engine | None = None, *,
            deadline: float | None = None) -> bool:
    """Apply pending migrations; True when something was applied. Waits for another
    process's run lock at most until the monotonic ``deadline``."""
    own = engine is None
    engine = engine or make_engine(url)
    try:
        if current_revision(engine) == head_revision(url):
            return False
        # two processes starting together must not both migrate
        with run_lock(url, deadline=deadline):
            if current_revision(engine) == head_revision(url):
                return False
            cfg = alembic_config(url)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        log.info("database migrated to %s", head_revision(url))
        return True
    finally:
        if own:
            engine.dispose()
