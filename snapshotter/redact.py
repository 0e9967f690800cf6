"""Keep secrets out of logs, error text and output.

Every password, TOTP secret and token the program holds is registered here as soon
as it is known; ``redact`` replaces each with ``***`` and a logging filter applies
it to every record, whatever logger emitted it.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
# Longest first, so that a secret containing another is masked whole. Plain substring
# replacement: one regex alternation of every secret, recompiled per login, cost tens of
# milliseconds each with hundreds of accounts and starved the fetch threads of the GIL.
_ordered: tuple[str, ...] = ()

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


def register(*values: str | None) -> None:
    global _ordered
    with _lock:
        new = {str(v) for v in values if v and len(v) >= 4} - _secrets
        if not new:
            return
        _secrets.update(new)
        ordered = list(_ordered)
        for secret in new:
            bisect.insort(ordered, secret, key=_longest_first)
        _ordered = tuple(ordered)  # a new tuple: redact() reads it without the lock


def _longest_first(secret: str) -> int:
    return -len(secret)


def redact(text: str) -> str:
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, "***")
    text = _GENERIC.sub(lambda m: m.group(1) + "***", text)
    return _AFTER_WORD.sub(lambda m: m.group(1) + "***", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info:
            # Tracebacks may quote secrets too; render and redact them now.
            formatter = logging.Formatter()
            cleaned += "\n" + redact(formatter.formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg = cleaned
        record.args = None
        return True


def install(handler: logging.Handler) -> None:
    handler.addFilter(RedactingFilter())
