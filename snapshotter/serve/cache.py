"""Figures that take seconds to compute (the all-accounts series over years of history),
computed in the background and kept in the serve process, keyed by the database's data
version: a page shows the newest version computed in full, never a mix of two.

- ``data_version(conn)``: cheap aggregates (ids, counts, last dates) of the tables the
  figures read, read in the same snapshot as the figures; any write that can change a
  figure changes it
- ``Cache``: one worker thread computes ``compute(conn, key)`` for a key in one snapshot
  of its own, and files the result under the version read in that snapshot; ``get``
  answers the newest version's result (and asks for the current version's when it is
  newer); a poller thread notices a new version and recomputes the keys asked for before
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa

from snapshotter.serve.database import snapshot

log = logging.getLogger("snapshotter.serve")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: what a figure depends on, besides the code: every write path changes one of these
#: (cheap: indexes and small tables; a re-derivation in place, `run --from-raw`, is not
#: seen until serve starts again)
VERSION_SQL = sa.text("""
SELECT (SELECT MAX(id) FROM snapshots) AS last_snapshot,
       (SELECT COUNT(*) FROM snapshots WHERE status = 'ok') AS complete,
       (SELECT COUNT(*) FROM console_files) AS console_files,
       (SELECT MAX(id) FROM console_files) AS last_console_file,
       (SELECT COUNT(*) FROM household_leaves) AS leaves,
       (SELECT MAX(left_on) FROM household_leaves) AS last_leave,
       (SELECT COUNT(*) FROM benchmark_daily) AS closes,
       (SELECT MAX(date) FROM benchmark_daily) AS last_close,
       (SELECT SUM(close) FROM benchmark_daily) AS sum_of_closes
""")

#: tries at computing a key at one version before its page says it failed
ATTEMPTS = 3

#: results kept per key: the newest, and the one before it while the newest computes
KEPT_VERSIONS = 2


def data_version(conn: sa.Connection) -> tuple[str, ...]:
    """The data version seen by ``conn``'s snapshot."""
    row = conn.execute(VERSION_SQL).one()
    return tuple(str(value) for value in row)


@dataclass(frozen=True)
class Computed(Generic[V]):
    version: tuple[str, ...]
    serial: int  # order of computing: the higher, the newer
    value: V


class Cache(Generic[K, V]):
    """Results of ``compute(conn, key)`` by key and data version, computed by one worker
    thread (a second would only share the GIL and the two cores)."""

    def __init__(self, engine: sa.Engine, compute: Callable[[sa.Connection, K], V],
                 poll_seconds: float = 5.0) -> None:
        self.engine = engine
        self.compute = compute
        self.poll_seconds = poll_seconds
        self._lock = threading.Condition()
        self._results: dict[K, OrderedDict[tuple[str, ...], Computed[V]]] = {}
        self._queue: list[K] = []
        self._wanted: list[K] = []  # every key asked for, in the order first asked
        # key -> (the version its computing failed at, how many times)
        self._failed: dict[K, tuple[tuple[str, ...], int]] = {}
        self._serial = 0
        self._latest_version: tuple[str, ...] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, warm: list[K]) -> None:
        """Start the worker (computing ``warm`` first) and the poller."""
        for key in warm:
            self.ask(key)
        for target, name in ((self._work, "serve-cache"), (self._poll, "serve-poll")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def ask(self, key: K, first: bool = False) -> None:
        """Compute ``key`` at the current data version (unless done or queued); ``first``:
        next (a page waits for it), before the warm-up's keys."""
        with self._lock:
            if key not in self._wanted:
                self._wanted.append(key)
            if first and key in self._queue[1:]:
                self._queue.remove(key)
            if key not in self._queue:
                # the queue's head is the key being computed
                self._queue.insert(1 if first and self._queue else len(self._queue), key)
                self._lock.notify_all()

    def get(self, key: K, version: tuple[str, ...]) -> Computed[V] | None:
        """The newest result of ``key`` (None: none yet); when it is older than
        ``version`` (what the caller's snapshot sees), the newer one is asked for."""
        with self._lock:
            found = self._results.get(key)
            newest = max(found.values(), key=lambda c: c.serial) if found else None
            failed = self._gave_up(key, version)
        if (newest is None or newest.version != version) and not failed:
            self.ask(key, first=True)
        return newest

    def put(self, key: K, version: tuple[str, ...], value: V) -> Computed[V]:
        """File ``value``, computed by the caller in a snapshot that saw ``version``."""
        with self._lock:
            self._serial += 1
            computed = Computed(version, self._serial, value)
            kept = self._results.setdefault(key, OrderedDict())
            kept.pop(version, None)
            kept[version] = computed
            while len(kept) > KEPT_VERSIONS:
                kept.popitem(last=False)
            self._failed.pop(key, None)
            if key not in self._wanted:
                self._wanted.append(key)
            return computed

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while not self._queue and not self._stop.is_set():
                    self._lock.wait()
                if self._stop.is_set():
                    return
                key = self._queue[0]
            self._compute_one(key)
            with self._lock:
                if key in self._queue:
                    self._queue.remove(key)

    def _compute_one(self, key: K) -> None:
        version: tuple[str, ...] = ()
        try:
            with snapshot(self.engine) as conn:
                version = data_version(conn)
                with self._lock:
                    if version in self._results.get(key, {}):
                        return
                value = self.compute(conn, key)
        except Exception as exc:  # the page says its figures could not be made
            log.error("serve: computing %s failed: %s: %s", key, type(exc).__name__, exc)
            with self._lock:
                seen, times = self._failed.get(key, (version, 0))
                self._failed[key] = (version, times + 1 if seen == version else 1)
            return
        self.put(key, version, value)
        log.info("serve: computed %s", key)

    def failed(self, key: K, version: tuple[str, ...]) -> bool:
        with self._lock:
            return self._gave_up(key, version)

    def _gave_up(self, key: K, version: tuple[str, ...]) -> bool:
        """Computing ``key`` failed ATTEMPTS times at ``version`` (a database error of
        a moment is tried again; a bug in the figures is not, forever)."""
        seen, times = self._failed.get(key, ((), 0))
        return seen == version and times >= ATTEMPTS

    def _poll(self) -> None:
        """A new data version: recompute every key asked for so far."""
        while not self._stop.wait(self.poll_seconds):
            try:
                with snapshot(self.engine) as conn:
                    version = data_version(conn)
            except Exception as exc:  # the database away for a moment: try again later
                log.warning("serve: reading the data version failed: %s", type(exc).__name__)
                continue
            if version != self._latest_version:
                self._latest_version = version
                with self._lock:
                    wanted = list(self._wanted)
                for key in wanted:
                    self.ask(key)
