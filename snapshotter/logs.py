"""Logging setup: one line per event on stderr, secrets redacted, optional JSON lines."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from snapshotter import redact


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="seconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}) or {})
        return json.dumps(entry, default=str)


def setup(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    redact.install(handler)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        # The zone with the time: a log read on another machine, or beside IST session
        # times, must not be guessed at.
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               "%Y-%m-%d %H:%M:%S%z"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "alembic", "apscheduler", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
