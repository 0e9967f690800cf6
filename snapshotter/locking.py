"""One run at a time per database, across processes and hosts.

PostgreSQL: a session-level advisory lock held on its own unpooled connection for the
whole run (a transaction-level lock would be released at the first COMMIT). SQLite: an
flock on a file beside the database, which serves processes on one host. The lock only
gives mutual exclusion; once-only comes from deciding what to do (reading the ledger)
while holding it, which is what pipeline.run_snapshot does.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from snapshotter.db import normalize_url

log = logging.getLogger(__name__)

# pg_advisory_lock key: any fixed 64-bit number unique to this program.
ADVISORY_KEY = 0x4B495445_534E4150  # "KITESNAP"


@contextlib.contextmanager
def run_lock(database_url: str) -> Iterator[None]:
    url = sa.make_url(normalize_url(database_url))
    if url.get_backend_name() == "postgresql":
        with _pg_lock(url):
            yield
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        with _file_lock(Path(str(url.database)).with_suffix(".lock")):
            yield
    else:
        yield


@contextlib.contextmanager
def _pg_lock(url: sa.URL) -> Iterator[None]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"),
                               {"k": ADVISORY_KEY}).scalar()
            if not got:
                log.info("another snapshotter holds the run lock; waiting for it")
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
    finally:
        engine.dispose()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another snapshotter holds %s; waiting for it", path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
