"""Logging in on a person's request (`snapshotter login`, auth: manual prompts) and
checking cached sessions (`login --check`, the daemon's check before the close)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from snapshotter import redact
from snapshotter.config import AccountConfig, Config
from snapshotter.errors import KiteError, LoginRejected
from snapshotter.kite.auth import UNRESERVED, Prompt, auth_for
from snapshotter.kite.client import KiteClient
from snapshotter.kite.token_cache import TokenCache
from snapshotter.pipeline.run import respect_other_hosts_totp, select_accounts
from snapshotter.pipeline.storing import step_reserver
from snapshotter.sessions import IST
from snapshotter.store import writes as store

log = logging.getLogger(__name__)


@dataclass
class LoginResult:
    account: str
    ok: bool
    message: str
    rejected: bool = False


def _describe(exc: KiteError, user_id: str) -> str:
    """The error's text without its "account X: " prefix (the caller names the account)."""
    return redact.redact(str(exc).removeprefix(f"account {user_id}: "))


def _targets(config: Config, user_ids: list[str] | None) -> list[AccountConfig]:
    if user_ids:
        return select_accounts(config, user_ids)
    return manual_accounts(config.accounts)


def manual_accounts(accounts: Iterable[AccountConfig]) -> list[AccountConfig]:
    """The accounts a person logs in (`snapshotter login`); runs only reuse their session."""
    return [a for a in accounts if auth_for(a).needs_person]


def login_accounts(config: Config, user_ids: list[str] | None, prompt: Prompt,
                   clock: Callable[[], datetime],
                   engine: sa.Engine | None = None) -> list[LoginResult]:
    """Log each account in now. A person at the prompt is a deliberate try, so credentials
    Kite rejected before are tried again; success clears the rejection from the session
    cache and from the ledger (``engine``; None when the database could not be opened)."""
    cache = TokenCache(config.state_dir)
    targets = _targets(config, user_ids)
    if engine is not None and targets:
        try:  # a session a run just made must not see its TOTP step sent again
            respect_other_hosts_totp(engine, cache, [a.user_id for a in targets], clock())
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not read recent attempts from the database: %s",
                        redact.redact(str(exc).splitlines()[0]))
    results = []
    for acc in targets:
        # The cached session stays until the new one replaces it: a mistyped code or a bad
        # paste must not throw away a session that still works.
        # Without the database there is nowhere to reserve the TOTP step: a refused code
        # is then not taken as a rejection of the credentials (kite.auth).
        reserve = step_reserver(engine, config.database_url, acc.user_id, clock) \
            if engine is not None else (lambda _step: UNRESERVED)
        client = KiteClient(acc, config.kite, cache, clock=clock, prompt=prompt,
                            reserve_totp_step=reserve)
        try:
            entry = cache.load(acc.user_id)
            was_rejected = entry.rejected_at is not None
            client.login(entry)
            until = "until Kite ends it"
            if entry.expires_at:
                expiry = datetime.fromisoformat(entry.expires_at).astimezone(IST)
                until = f"until {expiry:%Y-%m-%d %H:%M} IST"
            message = f"logged in; session cached {until}"
            message += _forget_rejection(engine, acc, was_rejected)
            results.append(LoginResult(acc.user_id, True, message))
        except KiteError as exc:
            results.append(LoginResult(acc.user_id, False, _describe(exc, acc.user_id),
                                       rejected=isinstance(exc, LoginRejected)))
        finally:
            client.close()
    return results


def _forget_rejection(engine: sa.Engine | None, acc: AccountConfig,
                      was_rejected: bool) -> str:
    """Clear the ledger's copy of a rejection (the cache's went with the login); what to
    tell the person about it."""
    cleared = "; the remembered rejection is cleared"
    if engine is None:
        if auth_for(acc).needs_person:  # runs never log it in: no ledger copy
            return cleared if was_rejected else ""
        return ("; the database could not be opened, so a rejection the ledger may remember "
                "was not cleared: run this again once the database is reachable")
    try:
        rows = store.clear_rejected_credentials(engine, acc.user_id)
    except sa.exc.SQLAlchemyError as exc:
        first = redact.redact(str(exc).splitlines()[0])
        return f"; could not clear a rejection the ledger remembers ({first}): run this again"
    return cleared if rows or was_rejected else ""


def check_sessions(config: Config, user_ids: list[str] | None,
                   clock: Callable[[], datetime]) -> list[LoginResult]:
    """For manual accounts: is the cached session still good? (Never logs in.)"""
    cache = TokenCache(config.state_dir)
    targets = manual_accounts(select_accounts(config, user_ids))
    results = []
    for acc in targets:
        client = KiteClient(acc, config.kite, cache, clock=clock)
        try:
            ok = client.check_session()
            message = "session valid" if ok else \
                f"no valid session: run `snapshotter login --account {acc.user_id}`"
        except KiteError as exc:
            ok, message = False, f"could not check the session: {_describe(exc, acc.user_id)}"
        finally:
            client.close()
        results.append(LoginResult(acc.user_id, ok, message))
    return results
