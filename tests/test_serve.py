"""`snapshotter serve`: the dashboard through the real command, read in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import local_get, page_problems, run_cli, serving, wait_until, write_config


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database `snapshotter demo` filled (2 accounts, 15 sessions)."""
    out = tmp_path_factory.mktemp("demo")
    done = run_cli("demo", "--out", str(out), "--accounts", "2", "--days", "15", timeout=600)
    assert done.returncode == 0, done.stderr
    return out / "demo.db"


def _config(tmp_path: Path, db: Path, **extra: Any) -> Path:
    return write_config(tmp_path / "config.yaml", {
        "database": {"url": f"sqlite:///{db}"},
        # A read command: the accounts' secrets need not be there.
        "accounts": [{"user_id": user, "password": "${SERVE_TEST_UNSET_PASSWORD}",
                      "totp_secret": "${SERVE_TEST_UNSET_TOTP}"}
                     for user in ("DM0001", "DM0002")],
        **extra})


def test_overview_loads_in_the_browser(tmp_path: Path, demo_db: Path, chromium: Any) -> None:
    with serving(_config(tmp_path, demo_db)) as served:
        # the overview's figures are computed in the background (a page says so till then)
        wait_until(lambda: 'id="computing"' not in local_get(served.url + "/").text,
                   "the overview's figures")
        page = chromium.new_page()
        errors = page_problems(page)
        answer = page.goto(served.url + "/")
        assert answer is not None and answer.status == 200
        assert page.inner_text("h1") == "Overview"
        assert "DM0001" in page.inner_text("main") and "DM0002" in page.inner_text("main")
        page.click("th[data-column=account]")
        page.click("th[data-column=account]")  # descending
        first = page.inner_text("#table-accounts tbody tr:first-child td:first-child")
        assert first == "DM0002"
        assert errors == []
        csv = local_get(served.url + "/?csv=accounts")
        assert csv.status_code == 200 and csv.text.splitlines()[0].startswith(
            "account,value,carried,share,")
        missing = local_get(served.url + "/no-such-page")
        assert missing.status_code == 404 and "Traceback" not in missing.text
        # Starlette's own errors get the error page too (escaped, Allow header kept)
        session = requests.Session()
        session.trust_env = False
        refused = session.put(served.url + "/tax", timeout=300)
        assert refused.status_code == 405 and "<h1>Method Not Allowed</h1>" in refused.text
        assert "GET" in refused.headers["allow"] and "Traceback" not in refused.text
        escaped = local_get(served.url + "/static/%2e%2e/app.py")
        assert escaped.status_code == 404 and "import" not in escaped.text
        page.close()


def test_refuses_another_address_without_a_password(tmp_path: Path, demo_db: Path) -> None:
    done = run_cli("--config", str(_config(tmp_path, demo_db)), "serve", "--host", "0.0.0.0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: serve: refusing to listen")
