"""Secrets are masked whole, registering one per login stays cheap with hundreds of
accounts (it ran on the fetch threads, holding the GIL), and every kind of secret the
program holds is registered and masked in a logged traceback."""

from __future__ import annotations

import io
import logging
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from snapshotter import redact
from snapshotter.config import load_config
from snapshotter.kite import http as kite_http
from snapshotter.kite.client import KiteClient
from snapshotter.kite.token_cache import TokenCache
from snapshotter.sessions import ManualClock
from snapshotter.simulator import KiteSimulator, SimApp, demo_accounts
from tests.conftest import config_dict, write_config


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


def test_a_traceback_with_every_kind_of_secret_is_masked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets of a config (passwords, TOTP secrets, an app's api_secret, the
    database URL's password, a notify URL) are registered by what every command does with
    its config, and the tokens of a login (request_id, enctoken, request_token,
    access_token) by the login itself: a logged traceback quoting them all shows none."""
    registry = redact.SecretRegistry()  # this test's own: nothing registered elsewhere
    monkeypatch.setattr(redact, "PROCESS_SECRETS", registry)
    web_account, app_account = demo_accounts(2, seed=11)
    api_key, api_secret = f"app{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    db_password = secrets.token_urlsafe(12)
    notify_url = f"tgram://{secrets.randbelow(10**9)}:{secrets.token_urlsafe(27)}/-100123456"
    clock = ManualClock(datetime(2026, 11, 27, 10, 0, tzinfo=UTC))
    answers: list[kite_http.Answer] = []
    send = kite_http.send

    def recorded(*args: Any, **kwargs: Any) -> kite_http.Answer:
        answers.append(send(*args, **kwargs))
        return answers[-1]

    with KiteSimulator([web_account, app_account], clock=clock,
                       apps=[SimApp(api_key, api_secret)]) as sim:
        data = config_dict(sim, [web_account], f"postgresql://snap:{db_password}@127.0.0.1/snap",
                           tmp_path / "state", notify={"urls": [notify_url]})
        data["accounts"].append({"user_id": app_account.user_id, "auth": "connect",
                                 "password": app_account.password,
                                 "totp_secret": app_account.totp_secret,
                                 "api_key": api_key, "api_secret": api_secret})
        config = load_config(str(write_config(tmp_path / "config.yaml", data)))
        redact.register(*config.secrets())  # as every command does (cli.commands)
        monkeypatch.setattr(kite_http, "send", recorded)
        for account in config.accounts:
            KiteClient(account, config.kite, TokenCache(config.state_dir), clock=clock,
                       sleep=lambda _: None).login()

    tokens = [str(body["data"][key]) for body in _json_bodies(answers)
              for key in ("request_id", "access_token") if key in body.get("data", {})]
    tokens += [cookie.split("=", 1)[1].split(";")[0] for answer in answers
               if (cookie := answer.headers.get("Set-Cookie", "")).startswith("enctoken=")]
    tokens += [value for answer in answers
               for value in parse_qs(urlparse(answer.headers.get("Location", "")).query)
               .get("request_token", [])]
    # Both logins sign in on the web (a request_id and an enctoken each); the connect one
    # then gets a request_token and an access_token.
    assert len(tokens) == 6, tokens
    kept = [web_account.password, web_account.totp_secret, app_account.password,
            app_account.totp_secret, api_secret, db_password, notify_url, *tokens]

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(redact.RedactingFilter(registry))
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    try:
        try:
            try:
                raise ConnectionError(f"cannot reach postgresql://snap:{db_password}@127.0.0.1")
            except ConnectionError as exc:
                raise RuntimeError("failed with " + " ".join(kept[:-1])) from exc
        except RuntimeError:
            logger.exception("a run failed; it held %s", kept[-1])
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "Traceback" in text and "ConnectionError" in text and "***" in text
    assert [secret for secret in kept if secret in text] == []


def _json_bodies(answers: list[kite_http.Answer]) -> list[dict[str, Any]]:
    bodies = []
    for answer in answers:
        try:
            body = answer.json()
        except ValueError:
            continue
        if isinstance(body, dict):
            bodies.append(body)
    return bodies
