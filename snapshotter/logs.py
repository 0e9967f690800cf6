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


class _ErrorsWhileCleaningUp(logging.Filter):
    """psycopg logs, as a WARNING, the error it meets while leaving a pipeline or a
    transaction after another error (the connection lost mid-write: "error ignored
    terminating <psycopg.Pipeline ...>"). The first error is reported on its own line;
    this echo of it shows only with --verbose."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "psycopg" and str(record.msg).startswith("error ignored"):
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def setup(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ErrorsWhileCleaningUp())
    redact.install(handler, redact.PROCESS_SECRETS)
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
