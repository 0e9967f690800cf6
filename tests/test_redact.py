"""Secrets are masked whole, and registering one per login stays cheap with hundreds of
accounts (it ran on the fetch threads, holding the GIL)."""

from __future__ import annotations

import secrets
import time

from snapshotter import redact


def test_a_secret_containing_another_is_masked_whole() -> None:
    short, long = "Qv7pWx", "Wx3kLm9Zt2"  # the short one ends where the long one starts
    redact.register(short)
    redact.register(long)
    assert redact.redact(f"token Qv7p{long} end") == "token Qv7p*** end"


def test_thousands_of_secrets_register_and_redact_fast() -> None:
    line = "account DM0001: logged in, session cached"
    # This process's CPU time, not the wall clock: other processes' load does not count.
    started = time.process_time()
    for _ in range(3000):  # 500 accounts: password, TOTP secret, code, token, ...
        redact.register(secrets.token_urlsafe(24))
        assert redact.redact(line) == line
    assert time.process_time() - started < 5
