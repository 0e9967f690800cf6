"""Per-account session cache: one private JSON file per account (mode 0600, dir 0700).

Holds the session token (so a same-day re-run does not log in again), the last TOTP
step submitted (so the same 30 s code is never sent twice, even across processes),
and a marker left when Kite rejected the credentials (so a scheduled run does not
retry a wrong password or code and lock the account).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from snapshotter import redact


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
    salt: str | None = None

    def valid_token(self, mode: str, now: datetime) -> str | None:
        if not self.token or self.mode != mode:
            return None
        if self.expires_at and datetime.fromisoformat(self.expires_at) <= now:
            return None
        return self.token


class TokenCache:
    def __init__(self, directory: Path):
        self.directory = Path(directory) / "sessions"

    def _path(self, user_id: str) -> Path:
        safe = "".join(ch for ch in user_id if ch.isalnum() or ch in "-_")
        return self.directory / f"{safe}.json"

    def load(self, user_id: str) -> CachedSession:
        try:
            raw: dict[str, Any] = json.loads(self._path(user_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return CachedSession()
        known = set(CachedSession.__dataclass_fields__)
        entry = CachedSession(**{k: v for k, v in raw.items() if k in known})
        redact.register(entry.token)
        return entry

    def save(self, user_id: str, entry: CachedSession) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(self.directory, 0o700)
        path = self._path(user_id)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(entry), fh)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def update(self, user_id: str, **changes: Any) -> CachedSession:
        entry = self.load(user_id)
        for key, value in changes.items():
            setattr(entry, key, value)
        self.save(user_id, entry)
        return entry

    def clear_token(self, user_id: str) -> None:
        self.update(user_id, token=None, created_at=None, expires_at=None)


def credentials_fingerprint(salt: str, *secrets: str | None) -> str:
    """A salted digest telling whether the configured credentials changed since a rejection."""
    digest = hashlib.sha256(salt.encode())
    for value in secrets:
        digest.update(b"\0" + (value or "").encode())
    return digest.hexdigest()

