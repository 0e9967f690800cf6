"""Keep secrets out of logs, error text and output.

A ``SecretRegistry`` holds every password, TOTP secret and token the program knows;
``redact`` replaces each with ``***``, and a ``RedactingFilter`` given the registry
applies it to every record of a handler, whatever logger emitted it.

The process has one registry, ``PROCESS_SECRETS``: the log handlers are the process's,
and a secret becomes known deep inside a login on any thread. ``register`` and
``redact`` below are that registry's; tests make registries of their own.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading

# Shapes of secrets we might see before they were registered (e.g. in a URL or header):
# a key, then its value. Only the value is masked, and only where a value stands.
_GENERIC = re.compile(
    r"(?i)(enctoken=|authorization['\"]?: ?['\"]?(?:enctoken|token) |access_token=|"
    r"request_token=|request_id=|password=|twofa_value=|"
    r"\"(?:access_token|enctoken|password|twofa_value|request_id)\": ?\")"
    r"([^\s&\"',;]+)"
)
# "enctoken VALUE" outside a header: masked when VALUE looks like a token (8+ characters
# with a digit, capital or base64 sign), never an ordinary word ("no enctoken cookie").
_AFTER_WORD = re.compile(r"\b((?i:enctoken) )(?=[^\s&\"',;]*[0-9A-Z+/=:])([^\s&\"',;]{8,})")


def _longest_first(secret: str) -> int:
    return -len(secret)


class SecretRegistry:
    """The secrets known so far, masked whole (longest first) wherever they appear."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[str] = set()
        # Longest first, so that a secret containing another is masked whole. Plain
        # substring replacement: one regex alternation of every secret, recompiled per
        # login, cost tens of milliseconds each with hundreds of accounts and starved
        # the fetch threads of the GIL.
        self._ordered: tuple[str, ...] = ()

    def register(self, *values: str | None) -> None:
        """Values shorter than 4 characters are no secret (they would mask words)."""
        with self._lock:
            new = {str(v) for v in values if v and len(v) >= 4} - self._known
            if not new:
                return
            self._known.update(new)
            ordered = list(self._ordered)
            for secret in new:
                bisect.insort(ordered, secret, key=_longest_first)
            self._ordered = tuple(ordered)  # a new tuple: redact() reads it without the lock

    def __contains__(self, value: str) -> bool:
        return value in self._known

    def redact(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, "***")
        text = _GENERIC.sub(lambda m: m.group(1) + "***", text)
        return _AFTER_WORD.sub(lambda m: m.group(1) + "***", text)


PROCESS_SECRETS = SecretRegistry()


def register(*values: str | None) -> None:
    """Make values known to the process's registry as secrets."""
    PROCESS_SECRETS.register(*values)


def redact(text: str) -> str:
    """``text`` with every secret the process knows, and every secret-shaped value,
    masked."""
    return PROCESS_SECRETS.redact(text)


class RedactingFilter(logging.Filter):
    """Masks the secrets of ``secrets`` in a record's message and traceback."""

    def __init__(self, secrets: SecretRegistry) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.secrets.redact(message)
        if record.exc_info:
            # Tracebacks may quote secrets too; render and redact them now.
            formatter = logging.Formatter()
            cleaned += "\n" + self.secrets.redact(formatter.formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg = cleaned
        record.args = None
        return True


def install(handler: logging.Handler, secrets: SecretRegistry = PROCESS_SECRETS) -> None:
    handler.addFilter(RedactingFilter(secrets))
