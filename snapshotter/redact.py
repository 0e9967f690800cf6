"""Keep secrets out of logs, error text and output.

Every password, TOTP secret and token the program holds is registered here as soon
as it is known; ``redact`` replaces each with ``***`` and a logging filter applies
it to every record, whatever logger emitted it.
"""

from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# Shapes of secrets we might see before they were registered (e.g. in a URL or header):
# a key, then its value. Only the value is masked, and only where a value stands.
_GENERIC = re.compile(
    r"(?i)(enctoken=|authorization['\"]?: ?['\"]?(?:enctoken|token) |access_token=|"
    r"request_token=|password=|twofa_value=|"
    r"\"(?:access_token|enctoken|password|twofa_value)\": ?\")"
    r"([^\s&\"',;]+)"
)
# "enctoken VALUE" outside a header: masked when VALUE looks like a token (8+ characters
# with a digit, capital or base64 sign), never an ordinary word ("no enctoken cookie").
_AFTER_WORD = re.compile(r"\b((?i:enctoken) )(?=[^\s&\"',;]*[0-9A-Z+/=:])([^\s&\"',;]{8,})")


def register(*values: str | None) -> None:
    global _pattern
    with _lock:
        for value in values:
            if value and len(value) >= 4:
                _secrets.add(str(value))
        if _secrets:
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub("***", text)
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
