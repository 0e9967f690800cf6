"""Per-account session cache: one private JSON file per account (mode 0600, dir 0700).

Holds the session token (so a same-day re-run does not log in again), the last TOTP
step submitted (so the same 30 s code is never sent twice, even across processes),
and a marker left when Kite rejected the credentials (so a scheduled run does not
retry a wrong password or code and lock the account). What these mean, and the one
fingerprint of the credentials in the marker, is kite.auth's.

A file that cannot be read, is not a JSON object or holds bad fields gets one warning
naming it and counts as no cached session: the run logs in afresh, and the lockout
guards still hold through the ledger's copy (pipeline: recent attempts' TOTP steps and
the rejected credentials' digest). A symlink in place of the directory or a file is
refused (see private_files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from snapshotter import redact
from snapshotter.private_files import (
    StatePathError,
    private_dir,
    private_file_check,
    read_private_text,
    write_private_text,
)

log = logging.getLogger(__name__)

# The session itself: dropped whole when any field of the file is bad. The other fields
# (TOTP step, rejection marker) are lockout guards, each kept when it is valid.
SESSION_FIELDS = ("mode", "token", "created_at", "expires_at")
_TIMESTAMPS = ("created_at", "expires_at", "rejected_at")


@dataclass
class CachedSession:
    mode: str = "web"
    token: str | None = None
    created_at: str | None = None  # ISO, aware
    expires_at: str | None = None  # ISO, aware; None = until it fails
    last_totp_step: int = 0
    rejected_at: str | None = None
    rejected_reason: str | None = None
    rejected_fingerprint: str | None = None
    salt: str | None = None  # only in a marker from before the one fingerprint (kite.auth)

    def valid_token(self, mode: str, now: datetime) -> str | None:
        if not self.token or self.mode != mode:
            return None
        if self.expires_at:
            expires = _aware(self.expires_at)
            if expires is None or expires <= now:
                return None
        return self.token


def _aware(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo is not None else None


def _valid(name: str, value: Any) -> bool:
    if name == "last_totp_step":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if name == "mode":
        return isinstance(value, str)
    if value is None:
        return True
    if name in _TIMESTAMPS:
        return isinstance(value, str) and _aware(value) is not None
    return isinstance(value, str)


_warned: dict[str, str] = {}  # path -> the problem already reported for its content
_warned_lock = threading.Lock()


def _warn_once(path: Path, key: str, problem: str) -> None:
    with _warned_lock:
        if _warned.get(str(path)) == key:
            return
        _warned[str(path)] = key
    log.warning("%s: session cache %s; treating it as no cached session", path, problem)


class TokenCache:
    def __init__(self, directory: Path):
        self.root = Path(directory)
        self.directory = self.root / "sessions"
        self._make_private()

    def _make_private(self) -> None:
        private_dir(self.root)
        private_dir(self.directory)
        try:
            names = sorted(p.name for p in self.directory.iterdir())
        except OSError as exc:
            raise StatePathError(f"{self.directory}: cannot list the session cache: "
                                 f"{exc.strerror or type(exc).__name__}") from None
        for name in names:
            if name.endswith(".json"):
                private_file_check(self.directory / name)

    def _path(self, user_id: str) -> Path:
        safe = "".join(ch for ch in user_id if ch.isalnum() or ch in "-_")
        return self.directory / f"{safe}.json"

    def load(self, user_id: str) -> CachedSession:
        path = self._path(user_id)
        try:
            text = read_private_text(path)
        except FileNotFoundError:
            return CachedSession()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            _warn_once(path, f"unreadable:{reason}", f"cannot be read ({reason})")
            return CachedSession()
        key = hashlib.sha256(text.encode()).hexdigest()
        try:
            raw = json.loads(text)
        except ValueError:
            _warn_once(path, key, "is not valid JSON")
            return CachedSession()
        if not isinstance(raw, dict):
            _warn_once(path, key, f"is not a JSON object (found {type(raw).__name__})")
            return CachedSession()
        kept = {f.name: raw[f.name] for f in fields(CachedSession) if f.name in raw}
        bad = [name for name, value in kept.items() if not _valid(name, value)]
        if bad:
            _warn_once(path, key, f"has bad fields ({', '.join(bad)})")
            kept = {name: value for name, value in kept.items()
                    if name not in bad and name not in SESSION_FIELDS}
        entry = CachedSession(**kept)
        redact.register(entry.token)
        return entry

    def save(self, user_id: str, entry: CachedSession) -> None:
        self._make_dirs()
        path = self._path(user_id)
        # What Kite said when it rejected a login may quote what was sent (the password).
        if entry.rejected_reason:
            entry.rejected_reason = redact.redact(entry.rejected_reason)
        write_private_text(path, json.dumps(asdict(entry)))
        with _warned_lock:
            _warned.pop(str(path), None)

    def _make_dirs(self) -> None:
        private_dir(self.root)
        private_dir(self.directory)

    def update(self, user_id: str, **changes: Any) -> CachedSession:
        entry = self.load(user_id)
        for key, value in changes.items():
            setattr(entry, key, value)
        self.save(user_id, entry)
        return entry



def rejection_advice(user_id: str, keys: str, reason: str | None) -> str:
    """How to get out of a remembered rejection (kept in this cache and in the ledger)."""
    advice = (f"fix {keys} in the config, or run `snapshotter login --account {user_id}` "
              "once the cause is fixed")
    if reason and "invalid totp" in reason.lower():
        advice += ("; TOTP codes depend on the system clock: check that this machine's "
                   "clock is right (timedatectl)")
    return advice
