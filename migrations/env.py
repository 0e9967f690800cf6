"""Alembic environment: the URL comes from the snapshotter config, never from alembic.ini."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from snapshotter.store import views
from snapshotter.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from snapshotter.config import load_config
    from snapshotter.store.engine import normalize_url

    return normalize_url(load_config(None).database_url)


# From this revision on the views are application code (snapshotter/store/sql/): none
# exist while migrations run, and they are recreated (with the derived tables whose fill
# SQL changed) after every migration. Before it, each revision's own migrations made
# its views.
VIEWS_AS_CODE_FROM = "0017"


def _views_as_code() -> bool:
    current = context.get_context().get_current_revision()
    return current is not None and any(
        script.revision == VIEWS_AS_CODE_FROM
        for script in context.script.iterate_revisions(current, "base"))


def _migrate(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        if _views_as_code():
            views.drop_views(connection)
        context.run_migrations()
        if _views_as_code():
            views.refresh(connection)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    from snapshotter.store.engine import make_engine

    engine = make_engine(_url())
    with engine.begin() as conn:
        _migrate(conn)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
