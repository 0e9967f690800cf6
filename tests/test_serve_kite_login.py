"""The daily Kite Connect login from the dashboard: the link, the simulator's Connect login
page in a real browser, the callback's exchange into the session cache, and a run that then
stores a snapshot with that session; the callback's refusals write nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pyotp
import pytest
import requests
import yaml

from snapshotter.simulator import KiteSimulator, SimAccount, SimApp, demo_accounts
from snapshotter.simulator.accounts import demo_apps
from tests.conftest import query_rows, run_cli, serving, write_config


@dataclass
class World:
    sim: KiteSimulator
    accounts: dict[str, SimAccount]
    apps: dict[str, SimApp]
    config: Path
    state: Path
    database_url: str

    def cache_file(self, user_id: str) -> Path:
        return self.state / "sessions" / f"{user_id}.json"

    def secrets(self) -> list[str]:
        found = [a.password for a in self.accounts.values()]
        found += [a.totp_secret for a in self.accounts.values()]
        found += [a.api_secret for a in self.apps.values()]
        for path in (self.state / "sessions").glob("*.json"):
            token = json.loads(path.read_text()).get("token")
            if token:
                found.append(token)
        return found


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # the machine's proxy: everything here is on 127.0.0.1
    return s


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    """DM0001 and DM0003: manual accounts with their Kite Connect app (no password in the
    config); DM0002: a web account; DM0004: a manual app without its api_secret; DM0005:
    auth: connect."""
    sims = demo_accounts(5, seed=19)
    apps = demo_apps(sims)
    with KiteSimulator(sims, apps=apps.values()) as sim:
        def manual(acc: SimAccount, secret: bool = True) -> dict[str, Any]:
            app = apps[acc.user_id]
            entry = {"user_id": acc.user_id, "auth": "manual", "api_key": app.api_key}
            return {**entry, "api_secret": app.api_secret} if secret else entry

        web = sims[1]
        config = write_config(tmp_path / "config.yaml", {
            "database": {"url": database_url},
            "kite": {"base_url": sim.base_url, "api_root": sim.base_url, "backoff": 0.01,
                     "timeout": 5},
            "state_dir": str(tmp_path / "state"),
            "accounts": [manual(sims[0]), {"user_id": web.user_id, "password": web.password,
                                           "totp_secret": web.totp_secret},
                         manual(sims[2]), manual(sims[3], secret=False),
                         {**manual(sims[4]), "auth": "connect", "password": sims[4].password,
                          "totp_secret": sims[4].totp_secret}],
        })
        done = run_cli("--config", str(config), "db", "upgrade")
        assert done.returncode == 0, done.stderr
        yield World(sim, {a.user_id: a for a in sims}, apps, config, tmp_path / "state",
                    database_url)


def _point_apps_at(world: World, dashboard: str) -> None:
    """What the user does once in the Kite developer console: the app's redirect URL."""
    for app in world.apps.values():
        app.redirect_url = f"{dashboard}/kite/callback"


def _kite_login_form(world: World, dashboard: str, user_id: str, as_user: str = "") -> str:
    """The dashboard's link, followed to Kite's login page, filled as a person does it (no
    browser): the address Kite redirects to (the dashboard's callback)."""
    s = _session()
    r = s.get(f"{dashboard}/kite/login/{user_id}", allow_redirects=False)
    assert r.status_code == 303, r.text
    r = s.get(r.headers["Location"])  # Kite's login page, after its own redirect
    assert r.status_code == 200 and 'name="twofa_value"' in r.text
    fields = {name: parse_qs(urlparse(r.url).query)[name][0] for name in ("api_key", "sess_id")}
    acc = world.accounts[as_user or user_id]
    r = s.post(f"{world.sim.base_url}/connect/login", allow_redirects=False, data={
        **fields, "user_id": acc.user_id, "password": acc.password,
        "twofa_value": pyotp.TOTP(acc.totp_secret).now()})
    assert r.status_code == 302, r.text
    return str(r.headers["Location"])


def _state_of(dashboard: str, user_id: str) -> str:
    """A fresh state, as the dashboard's link hands it to Kite."""
    r = _session().get(f"{dashboard}/kite/login/{user_id}", allow_redirects=False)
    assert r.status_code == 303
    params = parse_qs(urlparse(r.headers["Location"]).query)
    assert params["api_key"] and params["v"] == ["3"]
    return parse_qs(params["redirect_params"][0])["state"][0]


def _callback(dashboard: str, **params: str) -> requests.Response:
    query = {"action": "login", "type": "login", "status": "success", **params}
    return _session().get(f"{dashboard}/kite/callback?{urlencode(query)}",
                          allow_redirects=False)


def _main_text(html: str) -> str:
    return html.split("<main>", 1)[1].split("</main>", 1)[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_log_in_from_the_dashboard_in_a_browser_then_a_run_stores_a_snapshot(
        world: World, chromium: Any) -> None:
    with serving(world.config) as served:
        _point_apps_at(world, served.url)
        page = chromium.new_page(viewport={"width": 390, "height": 844})  # a phone
        pages: list[str] = []
        callbacks: list[str] = []
        page.on("request", lambda r: callbacks.append(r.url) if "/kite/callback" in r.url
                else None)
        page.goto(served.url + "/")
        # the overview says who needs today's login (once its figures are computed)
        banner = page.locator("#kite-logins", has_text="DM0001")
        banner.wait_for()
        assert "DM0002" not in banner.inner_text()  # a web account logs itself in
        assert banner.locator("a", has_text="Log in to Kite").first.get_attribute("href") \
            == "/kite/login/DM0001"
        page.click("nav >> text=Kite login")
        assert page.inner_text("h1") == "Kite login"
        row = page.locator("tr", has_text="DM0001")
        assert "no Kite session for today" in row.inner_text()
        assert f"{served.url}/kite/callback" in page.inner_text("main")
        assert page.locator("tr", has_text="DM0002").count() == 0  # a web account
        pages.append(page.content())
        row.locator("text=Log in to Kite").click()

        # Kite's login page (the simulator's), as a person fills it on the phone.
        page.wait_for_selector("input[name=twofa_value]")
        acc = world.accounts["DM0001"]
        page.fill("input[name=user_id]", "DM0001")
        page.fill("input[name=password]", acc.password)
        page.fill("input[name=twofa_value]", pyotp.TOTP(acc.totp_secret).now())
        page.click("button[type=submit]")

        page.wait_for_url(f"{served.url}/kite/logged-in/DM0001")
        text = page.inner_text("main")
        assert text.startswith("Logged in to Kite")
        assert "Logged in to Kite as DM0001; today's runs use this session (valid until " \
               "06:00 IST on " in text
        pages.append(page.content())
        assert len(callbacks) == 1 and "request_token=" in callbacks[0]
        assert parse_qs(urlparse(callbacks[0]).query)["account"] == ["DM0001"]
        assert "request_token" not in page.url  # a clean address after the exchange

        # The cache holds the session exactly as `snapshotter login` leaves it.
        entry = json.loads(world.cache_file("DM0001").read_text())
        assert entry["mode"] == "connect" and entry["token"] and entry["expires_at"]
        assert oct(world.cache_file("DM0001").stat().st_mode & 0o777) == "0o600"
        page.goto(served.url + "/kite")
        assert "logged in until 06:00 IST" in page.locator("tr", has_text="DM0001").inner_text()
        assert "no Kite session" in page.locator("tr", has_text="DM0003").inner_text()
        pages.append(page.content())
        page.close()

    run = run_cli("--config", str(world.config), "run", "--account", "DM0001")
    assert run.returncode == 0, run.stderr
    [ledger] = query_rows(world.database_url, "SELECT * FROM snapshots WHERE account = 'DM0001'")
    assert ledger["status"] == "ok"
    holdings = query_rows(world.database_url,
                          "SELECT tradingsymbol FROM holdings WHERE snapshot_id = :id",
                          id=ledger["id"])
    expected = {h["tradingsymbol"] for h in world.sim.portfolio("DM0001")["holdings"]}
    assert {h["tradingsymbol"] for h in holdings} == expected and expected
    assert ledger["holdings_count"] == len(expected)
    # The run used the dashboard's session: no login of its own.
    assert world.sim.login_count["DM0001"] == 1
    assert [p for m, p, u in world.sim.requests_log
            if u == "DM0001" and p == "/session/token"] == ["/session/token"]

    said = served.output() + run.stdout + run.stderr + "".join(pages) + callbacks[0]
    token = parse_qs(urlparse(callbacks[0]).query)["request_token"][0]
    for secret in world.secrets():
        assert secret not in said.replace(callbacks[0], "")
    assert token not in served.output() + "".join(pages)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_the_callback_refuses_what_it_cannot_trust_and_caches_nothing(world: World) -> None:
    with serving(world.config) as served:
        _point_apps_at(world, served.url)
        url = served.url

        # A forged state with a request_token Kite really issued: refused, nothing cached.
        landed = _kite_login_form(world, url, "DM0003")
        params = {k: v[0] for k, v in parse_qs(urlparse(landed).query).items()}
        assert params["account"] == "DM0003" and params["status"] == "success"
        forged = _callback(url, **{**params, "state": "forged-state"})
        assert forged.status_code == 400
        assert "was not started here, has expired or was already used: nothing was cached" \
            in forged.text
        assert not world.cache_file("DM0003").exists()
        # The state of another account's link does not do either.
        other = _callback(url, **{**params, "state": _state_of(url, "DM0001")})
        assert other.status_code == 400 and not world.cache_file("DM0003").exists()

        # The real state with that token: logged in (so the refusals were the state's).
        ok = _session().get(landed, allow_redirects=False)
        assert ok.status_code == 303 and ok.headers["Location"] == "/kite/logged-in/DM0003"
        cached = world.cache_file("DM0003").read_bytes()
        assert json.loads(cached)["token"]

        # The same address again (a reload, the browser's history): its state is used.
        again = _session().get(landed, allow_redirects=False)
        assert again.status_code == 400 and "already used" in again.text
        # A replayed request_token with a fresh state: Kite refuses it, nothing cached.
        replayed = _callback(url, account="DM0003", state=_state_of(url, "DM0003"),
                             request_token=params["request_token"])
        assert replayed.status_code == 400
        assert "Kite refused the login of DM0003 (Token is invalid or has expired.): " \
               "nothing was cached" in replayed.text
        assert world.cache_file("DM0003").read_bytes() == cached
        wrong = _callback(url, account="DM0001", state=_state_of(url, "DM0001"),
                          request_token="NotAToken123")
        assert wrong.status_code == 400 and "Kite refused the login of DM0001" in wrong.text
        assert not world.cache_file("DM0001").exists()

        # DM0001's link, but the person logged in to Kite as DM0004: not DM0001's session.
        stranger = _session().get(_kite_login_form(world, url, "DM0001", as_user="DM0004"),
                                  allow_redirects=False)
        assert stranger.status_code == 400
        assert "Kite logged in DM0004, not DM0001: nothing was cached" in stranger.text
        assert not world.cache_file("DM0001").exists()

        # An account not configured, or not one the dashboard logs in.
        unknown = _callback(url, account="ZZ9999", state=_state_of(url, "DM0001"),
                            request_token=params["request_token"])
        assert unknown.status_code == 404 and "no account ZZ9999 in the config" in unknown.text
        assert _session().get(f"{url}/kite/login/ZZ9999", allow_redirects=False
                              ).status_code == 404
        web = _session().get(f"{url}/kite/login/DM0002", allow_redirects=False)
        assert web.status_code == 400
        assert "account DM0002 does not log in through a Kite Connect app" in web.text
        # Kite said the person cancelled: no exchange.
        cancelled = _callback(url, account="DM0001", state=_state_of(url, "DM0001"),
                              status="cancelled", request_token="x")
        assert cancelled.status_code == 400 and "did not complete the login" in cancelled.text

        # The api_secret is read only now: its absence is one line naming the key.
        missing = _callback(url, account="DM0004", state=_state_of(url, "DM0004"),
                            request_token="AnyToken123")
        assert missing.status_code == 500
        assert "account DM0004 has no api_secret in the config (accounts[3].api_secret" \
            in missing.text
        pages = [forged, other, again, replayed, wrong, stranger, unknown, web, cancelled,
                 missing]
        for answer in pages:
            assert answer.text.count('class="error"') == 1
            assert "Traceback" not in answer.text
            assert answer.headers["Referrer-Policy"] == "no-referrer"
        said = served.output() + "".join(_main_text(a.text) for a in pages)
    for secret in [*world.secrets(), params["request_token"]]:
        assert secret not in said
    assert "account DM0003: logged in to Kite from the dashboard" in said
    assert world.sim.login_count["DM0001"] == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_connect_account_whose_automated_login_failed_is_logged_in_by_hand(
        world: World) -> None:
    world.sim.fail_next(100, "503", "/api/login", user_id="DM0005")  # Kite's login is down
    failed = run_cli("--config", str(world.config), "run", "--account", "DM0005")
    assert failed.returncode != 0 and "DM0005" in failed.stderr
    with serving(world.config) as served:
        _point_apps_at(world, served.url)
        listed = _session().get(f"{served.url}/kite")
        row = _main_text(listed.text).split("<td>DM0005</td>", 1)[1].split("</tr>", 1)[0]
        assert "its automated login failed; no Kite session" in row
        assert "Log in to Kite" in row
        # The person logs in on Kite's page (the browser's form, not the failing API).
        done = _session().get(_kite_login_form(world, served.url, "DM0005"),
                              allow_redirects=False)
        assert done.status_code == 303, done.text
        listed = _session().get(f"{served.url}/kite")
        row = _main_text(listed.text).split("<td>DM0005</td>", 1)[1].split("</tr>", 1)[0]
        assert "logged in until 06:00 IST" in row and "Log in to Kite" not in row
    logins = world.sim.login_count["DM0005"]
    run = run_cli("--config", str(world.config), "run", "--account", "DM0005")
    assert run.returncode == 0, run.stderr
    assert world.sim.login_count["DM0005"] == logins  # today's session: the dashboard's
    statuses = query_rows(world.database_url,
                          "SELECT status FROM snapshots WHERE account = 'DM0005' ORDER BY id")
    assert [r["status"] for r in statuses] == ["failed", "ok"]


def test_the_simulated_kite_login_page_refuses_like_kite_and_returns_redirect_params() -> None:
    [acc] = demo_accounts(1, seed=23)
    app = SimApp("pagekey", "pagesecret", redirect_url="http://127.0.0.1:9/cb")
    with KiteSimulator([acc], apps=[app]) as sim:
        s = _session()
        page = s.get(f"{sim.base_url}/connect/login", params={
            "v": "3", "api_key": app.api_key, "redirect_params": "account=DM0001&state=st8"})
        assert page.status_code == 200 and "<form" in page.text
        fields = {k: parse_qs(urlparse(page.url).query)[k][0] for k in ("api_key", "sess_id")}

        def submit(password: str, code: str) -> requests.Response:
            return s.post(f"{sim.base_url}/connect/login", allow_redirects=False, data={
                **fields, "user_id": acc.user_id.lower(), "password": password,
                "twofa_value": code})

        wrong = submit("not-the-password", "123456")
        assert wrong.status_code == 403 and "Invalid `password`." in wrong.text
        assert 'name="twofa_value"' in wrong.text  # the page again, to try once more
        totp = pyotp.TOTP(acc.totp_secret)
        bad_code = totp.generate_otp(totp.timecode(sim.clock()) + 5)
        refused = submit(acc.password, bad_code)
        assert refused.status_code == 403 and "Invalid TOTP" in refused.text
        assert sim.twofa_failures == {acc.user_id: 1}  # counts towards Kite's block
        done = submit(acc.password, totp.now())
        assert done.status_code == 302
        location = urlparse(done.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == app.redirect_url
        query = {k: v[0] for k, v in parse_qs(location.query).items()}
        assert query.pop("request_token")
        assert query == {"account": "DM0001", "state": "st8", "action": "login",
                         "type": "login", "status": "success"}
        # The sess_id is used up.
        again = submit(acc.password, totp.now())
        assert again.status_code == 400 and "Invalid `sess_id`." in again.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_kite_login_behind_the_dashboard_password_across_sites(
        world: World, chromium: Any) -> None:
    """With serve.password set: Kite (here the simulator on 127.0.0.1, another site than
    the dashboard reached as `localhost`) redirects the phone to the callback without the
    SameSite=Strict cookie; the dashboard bounces once, the cookie comes, the token is
    exchanged and cached."""
    config = yaml.safe_load(world.config.read_text())
    config["serve"] = {"password": "${DASHBOARD_PW}"}
    # serve needs no other account's secret, even to finish this account's login
    config["accounts"][1]["password"] = "${KITE_LOGIN_TEST_UNSET}"
    write_config(world.config, config)
    password = "a long dashboard password"
    with serving(world.config, env={"DASHBOARD_PW": password}) as served:
        dashboard = served.url.replace("127.0.0.1", "localhost")
        _point_apps_at(world, dashboard)
        page = chromium.new_page(viewport={"width": 390, "height": 844})
        callbacks: list[str] = []
        page.on("request", lambda r: callbacks.append(r.url) if "/kite/callback" in r.url
                else None)
        page.goto(dashboard + "/kite")
        assert "/login" in page.url
        page.fill("#password", password)
        page.click("section.login button")
        page.wait_for_url(f"{dashboard}/kite")
        page.locator("tr", has_text="DM0001").locator("text=Log in to Kite").click()
        page.wait_for_selector("input[name=twofa_value]")
        assert page.url.startswith(world.sim.base_url)
        acc = world.accounts["DM0001"]
        page.fill("input[name=user_id]", "DM0001")
        page.fill("input[name=password]", acc.password)
        page.fill("input[name=twofa_value]", pyotp.TOTP(acc.totp_secret).now())
        page.click("button[type=submit]")
        page.wait_for_url(f"{dashboard}/kite/logged-in/DM0001")
        assert "Logged in to Kite as DM0001; today's runs use this session" in \
            page.inner_text("main")
        # Kite's redirect came without the cookie (another site), the bounce with it.
        assert len(callbacks) == 2
        page.close()
        output = served.output()
    assert world.cache_file("DM0001").exists()
    assert password not in output
