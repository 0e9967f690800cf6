"""Every error the program raises on purpose. Messages never carry secrets."""

from __future__ import annotations


class SnapshotterError(Exception):
    """Base class: an expected failure reported as one line, never a traceback."""

    exit_code = 1


class UsageError(SnapshotterError):
    """A command asked for something it must not do as asked (e.g. overwrite a file)."""

    exit_code = 2


class ConfigError(SnapshotterError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class DatabaseUnavailable(SnapshotterError):
    """The database cannot be reached or written; the message names it (password hidden)."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class LockTimeout(SnapshotterError):
    """Another run held the run lock for longer than this run may wait."""

    exit_code = 69  # EX_UNAVAILABLE


class KiteError(SnapshotterError):
    """An error answered by Kite (its envelope) or met on the way to it."""

    #: transient errors are retried with backoff; the others are not
    transient = False

    def __init__(
        self,
        message: str,
        *,
        account: str | None = None,
        status: int | None = None,
        error_type: str | None = None,
    ):
        self.message = message
        self.account = account
        self.status = status
        self.error_type = error_type
        super().__init__(message)

    def __str__(self) -> str:
        where = f"account {self.account}: " if self.account else ""
        detail = []
        if self.error_type:
            detail.append(self.error_type)
        if self.status is not None:
            detail.append(f"HTTP {self.status}")
        suffix = f" ({', '.join(detail)})" if detail else ""
        return f"{where}{self.message}{suffix}"


class TokenError(KiteError):
    """The session token is invalid or expired (Kite ``TokenException``, HTTP 403)."""


class LoginRejected(KiteError):
    """Kite rejected the user id, password or TOTP code.

    Never retried automatically: Zerodha blocks an account after five wrong 2FA
    entries, and unblocking needs a password reset.
    """

    exit_code = 78  # EX_CONFIG: systemd units list it in RestartPreventExitStatus=


class InputError(KiteError):
    """Kite refused the request itself (HTTP 400, ``InputException``)."""


class PermissionDenied(KiteError):
    """The account or app may not call this route (``PermissionException``)."""


class TransientKiteError(KiteError):
    """Worth retrying: connection errors, timeouts, 429, 5xx, unparseable bodies."""

    transient = True


class KiteProtocolError(KiteError):
    """Kite answered something this program does not understand (e.g. the login flow changed)."""
