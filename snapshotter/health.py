"""Healthchecks.io-style pings, and systemd's sd_notify protocol (no C library needed)."""

from __future__ import annotations

import logging
import os
import socket

import requests

from snapshotter import redact

log = logging.getLogger(__name__)


def ping(url: str | None, ok: bool, message: str = "", timeout: float = 10) -> None:
    """POST to ``url`` on success, ``url/fail`` on failure; never raises."""
    if not url:
        return
    target = url.rstrip("/") + ("" if ok else "/fail")
    try:
        requests.post(target, data=message.encode()[:10_000], timeout=timeout)
    except requests.RequestException as exc:
        log.warning("health check ping failed: %s", redact.redact(type(exc).__name__))


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1") to $NOTIFY_SOCKET; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False


def watchdog_interval() -> float | None:
    """Half the systemd watchdog period, in seconds, when the watchdog is on for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None
