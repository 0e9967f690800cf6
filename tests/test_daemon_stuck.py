"""The daemon under a stand-in systemd when its job gets stuck: WATCHDOG=1 stops while
the job makes no progress (so systemd's watchdog can act), and comes back after."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from snapshotter.simulator import KiteSimulator, demo_accounts
from tests.conftest import HANG_GUARD, LOCAL_ONLY, config_dict, run_cli, wait_until, write_config


class Notifications:
    """An sd_notify socket, as systemd listens on it."""

    def __init__(self) -> None:
        self.name = f"snapshotter-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> list[str]:
        """Messages received during the next ``seconds``."""
        end, got = time.monotonic() + seconds, []
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                text = self.sock.recv(4096).decode()
                got.extend(text.splitlines())
                self.messages.extend((time.monotonic(), t) for t in text.splitlines())
        return got

    def drain(self) -> list[str]:
        """Every message already sent (the socket's queue), without waiting."""
        got = []
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    got.extend(self.sock.recv(4096).decode().splitlines())
                except BlockingIOError:
                    return got
        finally:
            self.sock.settimeout(0.2)

    def until(self, message: str, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if message in self.collect(0.2):
                return True
        return False


@contextlib.contextmanager
def _block_writes(url: str) -> Iterator[None]:
    """Another program holding a write lock on the snapshot tables."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(parsed.database), timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        trans = conn.begin()
        conn.execute(sa.text("LOCK TABLE holdings IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            trans.rollback()
    engine.dispose()


def test_watchdog_starves_while_the_job_is_stuck(database_url: str, tmp_path: Path) -> None:
    accounts = demo_accounts(2, seed=31)
    notify = Notifications()
    with KiteSimulator(accounts, latency=0.5) as sim:
        data = config_dict(sim, accounts, database_url, tmp_path / "state")
        cfg = write_config(tmp_path / "config.yaml", data)
        assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
        # Sessions cached beforehand: a login writes too (its TOTP step is reserved in the
        # database), and the job is to be stuck storing, after it fetched.
        assert run_cli("--config", str(cfg), "login",
                       *(arg for a in accounts for arg in ("--account", a.user_id)),
                       env=LOCAL_ONLY).returncode == 0
        env = {**os.environ, **LOCAL_ONLY, "NOTIFY_SOCKET": "@" + notify.name,
               "WATCHDOG_USEC": "4000000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "snapshotter", "--config", str(cfg), "daemon"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
        reader.start()
        try:
            assert notify.until("READY=1", HANG_GUARD)
            with _block_writes(database_url):
                # The catch-up job fetches, then cannot store: stuck in the database.
                wait_until(lambda: sum(p.startswith("/oms/") for _, p, _ in sim.requests_log)
                           >= 8, "both accounts fetched", alive=proc)
                fetched = len(lines)
                wait_until(lambda: any("no progress" in line for line in lines[fetched:]),
                           "the daemon to see its job stuck", alive=proc)
                # The feeds sent before it said so are queued; none may follow while stuck.
                notify.drain()
                starved = notify.collect(3)
                assert "WATCHDOG=1" not in starved, starved
            # Unblocked: the job stores its snapshots and the watchdog is fed again.
            assert notify.until("WATCHDOG=1", HANG_GUARD)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(HANG_GUARD) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(HANG_GUARD)
            reader.join(HANG_GUARD)
            notify.sock.close()
    err = "".join(lines)
    assert "no progress" in err and "Traceback" not in err, err
