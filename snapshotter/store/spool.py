"""Snapshots fetched while the database could not be written, kept in the private
state directory (``STATE_DIR/spool``, 0700; one 0600 JSON file per account and session
fetch) until a run reaches the database again and stores them, with their original
taken_at and final flag, before deciding what to fetch."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from snapshotter.private_files import (
    StatePathError,
    private_dir,
    read_private_text,
    write_private_text,
)

log = logging.getLogger(__name__)

SPOOL_DIR = "spool"
FORMAT = 1


@dataclass(frozen=True)
class Spooled:
    path: Path
    account: str
    snapshot_date: date
    taken_at: datetime
    final: bool
    payloads: dict[str, Any]
    duration_ms: int | None


def spool_dir(state_dir: Path) -> Path:
    return Path(state_dir) / SPOOL_DIR


def save(state_dir: Path, *, account: str, snapshot_date: date, taken_at: datetime,
         final: bool, payloads: dict[str, Any], duration_ms: int | None) -> Path:
    """Write one fetched snapshot to the spool (atomically, 0600); returns its path."""
    directory = private_dir(spool_dir(state_dir))
    safe = "".join(ch for ch in account if ch.isalnum() or ch in "-_")
    path = directory / f"{safe}-{snapshot_date}-{taken_at:%Y%m%dT%H%M%S%f%z}.json"
    body = {"format": FORMAT, "account": account, "snapshot_date": snapshot_date.isoformat(),
            "taken_at": taken_at.isoformat(), "final": final, "duration_ms": duration_ms,
            "payloads": payloads}
    write_private_text(path, json.dumps(body, separators=(",", ":")))
    return path


def _load(path: Path) -> Spooled:
    raw = json.loads(read_private_text(path))
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError("not a spooled snapshot")
    taken_at = datetime.fromisoformat(str(raw["taken_at"]))
    if taken_at.tzinfo is None:
        raise ValueError("taken_at has no time zone")
    payloads = raw["payloads"]
    if not isinstance(payloads, dict):
        raise ValueError("payloads is not an object")
    duration = raw.get("duration_ms")
    return Spooled(path, str(raw["account"]), date.fromisoformat(str(raw["snapshot_date"])),
                   taken_at, bool(raw["final"]), payloads,
                   int(duration) if duration is not None else None)


def pending(state_dir: Path) -> list[Spooled]:
    """The spooled snapshots, oldest first. A file that cannot be read is left in place
    with a warning naming it (never deleted: it may be the only copy of a session)."""
    directory = spool_dir(state_dir)
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            found.append(_load(path))
        except (StatePathError, OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("spool: cannot read %s (%s); left in place", path, type(exc).__name__)
    return sorted(found, key=lambda s: s.taken_at)


def discard(item: Spooled) -> None:
    with contextlib.suppress(FileNotFoundError):
        item.path.unlink()
