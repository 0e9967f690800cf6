"""Every error the program raises on purpose, and the exit code each one means.
Messages never carry secrets."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes of every command: the one table (`snapshotter --help` prints it,
    docs/operations.md "Exit codes" repeats it; tests/test_cli_conventions.py keeps them equal)."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "done: every account stored or skipped (nothing to do is success)"
    FAILURE = 1, ("some account failed (recorded; the others are stored); `status`: an "
                  "account lacks the latest session or its warnings are unconfirmed; "
                  "another command could not finish")
    USAGE = 2, ("usage or configuration: a mistyped command or option, an invalid config, "
                "an unknown --account, `report history` without a SYMBOL, no database yet for a "
                "read command")
    LOCK_TIMEOUT = 69, ("EX_UNAVAILABLE: another run held the run lock past "
                        "kite.run_timeout; nothing was fetched")
    LOCK_LOST = 74, ("the run lost its run lock mid-run (PostgreSQL: the lock's connection "
                     "ended): no further logins; finished answers stored or spooled")
    DATABASE_UNAVAILABLE = 75, ("EX_TEMPFAIL: the database is unreachable, missing or not "
                                "writable (fetched answers, if any, are in the spool)")
    CREDENTIALS_REJECTED = 78, ("EX_CONFIG: Kite rejected an account's user id, password "
                                "or TOTP code; never retried (systemd: "
                                "RestartPreventExitStatus=78)")
    INTERRUPTED = 130, "interrupted (Ctrl-C)"


class PayloadError(ValueError):
    """A payload that cannot be read as Kite's documented shape (normalize raises it;
    defined here so that the pipeline catches it without loading normalize)."""


class SnapshotterError(Exception):
    """Base class: an expected failure reported as one line, never a traceback."""

    exit_code: ExitCode = ExitCode.FAILURE


class UsageError(SnapshotterError):
    """A command asked for something it must not do as asked (e.g. overwrite a file), or
    something that does not exist (an account, a database to read)."""

    exit_code = ExitCode.USAGE


class ConfigError(SnapshotterError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class DatabaseUnavailable(SnapshotterError):
    """The database cannot be reached or written; the message names it (password hidden)."""

    exit_code = ExitCode.DATABASE_UNAVAILABLE  # EX_TEMPFAIL: try again later


class LockTimeout(SnapshotterError):
    """Another run held the run lock for longer than this run may wait."""

    exit_code = ExitCode.LOCK_TIMEOUT


class LockLost(SnapshotterError):
    """The run's lock was lost mid-run (its connection ended): another run may hold it
    now, so this one logs in no more. The message names the database (password hidden)."""

    exit_code = ExitCode.LOCK_LOST


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

    exit_code = ExitCode.CREDENTIALS_REJECTED  # systemd: RestartPreventExitStatus=
    #: the config keys Kite rejected ("user_id", "password", "totp_secret", "api_key",
    #: "api_secret", or several joined by "/"), when the login step tells (kite.auth)
    keys: str | None = None


class InputError(KiteError):
    """Kite refused the request itself (HTTP 400, ``InputException``)."""


class PermissionDenied(KiteError):
    """The account or app may not call this route (``PermissionException``)."""


class TransientKiteError(KiteError):
    """Worth retrying: connection errors, timeouts, 429, 5xx, unparseable bodies."""

    transient = True


class KiteProtocolError(KiteError):
    """Kite answered something this program does not understand (e.g. the login flow changed)."""
