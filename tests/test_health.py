"""Healthchecks.io-style pings (`healthcheck_url`) and systemd's sd_notify protocol."""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from snapshotter.ops import health
from snapshotter.simulator import KiteSimulator, SimAccount
from tests.conftest import (
    HANG_GUARD,
    LOCAL_ONLY,
    Recorder,
    config_dict,
    run_cli,
    write_config,
)


@pytest.fixture(autouse=True)
def _local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LOCAL_ONLY.items():
        monkeypatch.setenv(name, value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- health.ping -----------------------------------------------------------------------


def test_ping_success_and_failure_urls(recorder: Recorder) -> None:
    url = f"{recorder.base_url}/ping/0f1e2d3c"
    health.ping(url, ok=True, message="session 2026-11-27: AB1234=ok")
    health.ping(url + "/", ok=False, message="session 2026-11-27: AB1234=failed")
    health.ping(url + "?rid=7", ok=False)
    assert recorder.requests == [
        ("POST", "/ping/0f1e2d3c", "session 2026-11-27: AB1234=ok"),
        ("POST", "/ping/0f1e2d3c/fail", "session 2026-11-27: AB1234=failed"),
        ("POST", "/ping/0f1e2d3c/fail?rid=7", ""),
    ]


def test_ping_without_url_sends_nothing(recorder: Recorder) -> None:
    health.ping(None, ok=True)
    health.ping("", ok=False)
    assert recorder.requests == []


def test_ping_caps_the_body(recorder: Recorder) -> None:
    health.ping(recorder.base_url, ok=True, message="x" * 50_000)
    [(_, path, body)] = recorder.requests
    assert path == "/" and len(body) == 10_000


def test_ping_never_raises(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="snapshotter.ops.health"):
        health.ping(f"http://127.0.0.1:{_closed_port()}/ping/x", ok=True, timeout=2)
    assert "health check ping failed" in caplog.text

    caplog.clear()
    recorder.status = 404  # e.g. a mistyped check UUID
    with caplog.at_level(logging.WARNING, logger="snapshotter.ops.health"):
        health.ping(f"{recorder.base_url}/ping/unknown", ok=True)
    assert "HTTP 404" in caplog.text


def test_run_pings_on_success(sim: KiteSimulator, sim_accounts: list[SimAccount],
                              database_url: str, tmp_path: Path, recorder: Recorder) -> None:
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, database_url, tmp_path / "state",
        healthcheck_url=f"{recorder.base_url}/ping/0f1e2d3c"))
    result = run_cli("--config", str(cfg), "run", env=LOCAL_ONLY)
    assert result.returncode == 0, result.stderr
    [(method, path, body)] = recorder.requests
    assert (method, path) == ("POST", "/ping/0f1e2d3c")
    for acc in sim_accounts:
        assert f"{acc.user_id}=ok" in body


def test_run_pings_fail_when_an_account_fails(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path, recorder: Recorder) -> None:
    data = config_dict(sim, sim_accounts, database_url, tmp_path / "state",
                       healthcheck_url=f"{recorder.base_url}/ping/0f1e2d3c")
    data["accounts"][1]["password"] = "not-the-password-77"
    cfg = write_config(tmp_path / "config.yaml", data)
    result = run_cli("--config", str(cfg), "run", env=LOCAL_ONLY)
    assert result.returncode == 78, result.stderr
    [(method, path, body)] = recorder.requests
    assert (method, path) == ("POST", "/ping/0f1e2d3c/fail")
    assert f"{sim_accounts[1].user_id}=failed" in body
    assert f"{sim_accounts[0].user_id}=ok" in body
    assert "not-the-password-77" not in body


def test_unreachable_healthcheck_does_not_fail_the_run(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts[:1], f"sqlite:///{tmp_path / 'snapshots.db'}", tmp_path / "state",
        healthcheck_url=f"http://127.0.0.1:{_closed_port()}/ping/x"))
    result = run_cli("--config", str(cfg), "run", env=LOCAL_ONLY)
    assert result.returncode == 0, result.stderr
    assert "health check ping failed" in result.stderr
    assert "Traceback" not in result.stderr


# -- sd_notify -------------------------------------------------------------------------


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_sd_notify_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert health.sd_notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert health.sd_notify("READY=1") is False


def test_sd_notify_path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with _receiver(str(path)) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert health.sd_notify("READY=1") is True
        assert sock.recv(4096) == b"READY=1"
        assert health.sd_notify("STATUS=last run 2026-11-27: AB1234=ok\nWATCHDOG=1") is True
        assert sock.recv(4096) == b"STATUS=last run 2026-11-27: AB1234=ok\nWATCHDOG=1"


def test_sd_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"snapshotter-test-{uuid.uuid4().hex}"
    with _receiver("\0" + name) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert health.sd_notify("STOPPING=1") is True
        assert sock.recv(4096) == b"STOPPING=1"


def test_sd_notify_to_a_missing_socket_returns_false(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert health.sd_notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", f"@snapshotter-test-{uuid.uuid4().hex}")
    assert health.sd_notify("READY=1") is False


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    (None, None, None),
    ("", None, None),
    ("300000000", None, 150.0),
    ("300000000", "self", 150.0),
    ("300000000", "other", None),
    ("2000000", "self", 1.0),
    ("0", None, None),
    ("-5", None, None),
    ("5min", None, None),
])
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec: str | None,
                           pid: str | None, expected: float | None) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(name, value)
    assert health.watchdog_interval() == expected


# -- the daemon under a stand-in systemd (Type=notify, NotifyAccess=main) -----------------


def _recv_with_sender(sock: socket.socket) -> tuple[str, int]:
    creds_size = struct.calcsize("3i")
    data, ancillary, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(creds_size))
    sender = -1
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            sender = struct.unpack("3i", payload[:creds_size])[0]
    return data.decode(), sender


def test_daemon_notifies_systemd(sim: KiteSimulator, sim_accounts: list[SimAccount],
                                 tmp_path: Path, recorder: Recorder) -> None:
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, f"sqlite:///{tmp_path / 'snapshots.db'}", tmp_path / "state",
        healthcheck_url=f"{recorder.base_url}/ping/daemon"))
    name = f"snapshotter-test-{uuid.uuid4().hex}"
    sock = _receiver("\0" + name)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    env = {**os.environ, **LOCAL_ONLY, "NOTIFY_SOCKET": "@" + name,
           "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "snapshotter", "--config", str(cfg), "daemon"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    messages: list[str] = []
    try:
        deadline = time.monotonic() + HANG_GUARD

        def until(done: Callable[[], bool]) -> None:
            while time.monotonic() < deadline:
                if done():
                    return
                try:
                    text, sender = _recv_with_sender(sock)
                except TimeoutError:
                    assert proc.poll() is None, "the daemon exited"
                    continue
                assert sender == proc.pid, (text, sender)  # NotifyAccess=main
                messages.extend(text.splitlines())
            pytest.fail(f"timed out; got {messages}")

        until(lambda: "READY=1" in messages
              and any(m.startswith("STATUS=last run") for m in messages)
              and messages.count("WATCHDOG=1") >= 2)
        status = next(m for m in messages if m.startswith("STATUS=last run"))
        for acc in sim_accounts:
            assert f"{acc.user_id}=ok" in status
        assert [p for _m, p, _b in recorder.wait(1)] == ["/ping/daemon"]

        proc.send_signal(signal.SIGTERM)
        until(lambda: "STOPPING=1" in messages)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate(timeout=30)
        sock.close()
    assert "Traceback" not in err, err
    assert messages.index("READY=1") < messages.index("STOPPING=1")
