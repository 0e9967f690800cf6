"""Who may see the dashboard: the password, the session cookie, the lock-out, trusted
proxies, the CSRF guard and the cross-site bounce, through the real `snapshotter serve`
and a real browser; the lock-out's and the sessions' clocks injected in unit tests."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from snapshotter.serve.auth import Lockout, Proxies, Sessions, local_path, password_matches
from tests.conftest import HANG_GUARD, run_cli, serving, wait_until, write_config

PASSWORD = "Dashb0ard-pass-7Qx"
TOTP = "JBSWY3DPEHPK3PXPJBSWY3DP"


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database `snapshotter demo` filled (1 account, 5 sessions)."""
    out = tmp_path_factory.mktemp("demo")
    done = run_cli("demo", "--out", str(out), "--accounts", "1", "--days", "5", timeout=600)
    assert done.returncode == 0, done.stderr
    return out / "demo.db"


def _config(tmp_path: Path, database_url: str, **serve: Any) -> Path:
    return write_config(tmp_path / "config.yaml", {
        "database": {"url": database_url},
        "accounts": [{"user_id": "DM0001", "password": "pw", "totp_secret": TOTP}],
        "serve": {"password": PASSWORD, **serve},
    })


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the machine's proxy: the dashboard is on 127.0.0.1
    return session


def _form_token(html: str) -> str:
    match = re.search(r'name="token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def _login(session: requests.Session, url: str, password: str = PASSWORD,
           next_path: str = "/", **headers: str) -> requests.Response:
    """The login form as a browser sends it: GET /login (its token), POST it back (with
    the form's cookie, which requests would keep to itself once it is Secure)."""
    page = session.get(f"{url}/login", headers=headers, timeout=HANG_GUARD)
    assert page.status_code == 200, page.text
    token = _form_token(page.text)
    return session.post(f"{url}/login", data={
        "token": token, "next": next_path, "password": password},
        cookies={"snapshotter_login": token}, headers=headers, allow_redirects=False,
        timeout=HANG_GUARD)


def _set_cookies(response: requests.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the raw header, flags included)."""
    found = {}
    for header in response.raw.headers.getlist("set-cookie"):
        found[header.split("=", 1)[0]] = header
    return found


def _submit(page: Any) -> Any:
    """Send the login form; the answer to the POST, once its page has loaded."""
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("section.login button")
    page.wait_for_load_state()
    return answer.value


# -- the real command --------------------------------------------------------------------


def test_another_address_needs_a_password(tmp_path: Path, demo_db: Path) -> None:
    bare = write_config(tmp_path / "bare.yaml", {
        "database": {"url": f"sqlite:///{demo_db}"},
        "accounts": [{"user_id": "DM0001", "password": "pw", "totp_secret": TOTP}]})
    refused = run_cli("--config", str(bare), "serve", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: serve: refusing to listen on 0.0.0.0")
    assert "Traceback" not in refused.stderr

    cfg = _config(tmp_path, f"sqlite:///{demo_db}", password="${DASHBOARD_PW}")
    with serving(cfg, "--host", "0.0.0.0", env={"DASHBOARD_PW": PASSWORD}) as served:
        url = served.url.replace("0.0.0.0", "127.0.0.1")
        session = _session()
        first = session.get(url + "/", allow_redirects=False, timeout=HANG_GUARD)
        assert first.status_code == 303 and first.headers["location"] == "/login?next=/"
        assert _login(session, url).status_code == 303
        assert "DM0001" in session.get(url + "/status", timeout=HANG_GUARD).text


def test_login_flow_in_the_browser(tmp_path: Path, demo_db: Path, chromium: Any) -> None:
    with serving(_config(tmp_path, f"sqlite:///{demo_db}")) as served:
        context = chromium.new_context()
        page = context.new_page()
        seen: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: seen.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(served.url + "/")
        assert urlsplit(page.url).path == "/login"
        assert page.inner_text("h1") == "Log in"
        assert parse_qs(urlsplit(page.url).query) == {"next": ["/"]}

        page.fill("#password", "not the password")
        _submit(page)
        assert urlsplit(page.url).path == "/login"  # refused: still the login page
        assert page.inner_text("p.error") == "wrong password"
        assert context.cookies() and all(c["name"] != "snapshotter_session"
                                         for c in context.cookies())

        page.fill("#password", PASSWORD)
        page.click("section.login button")
        page.wait_for_url(served.url + "/")
        assert page.inner_text("h1") == "Overview"
        # (its figures may still be computing: the page reloads itself until they are)
        page.locator("main", has_text="DM0001").wait_for()
        [cookie] = [c for c in context.cookies() if c["name"] == "snapshotter_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert not cookie["secure"]  # plain http, no proxy
        assert cookie["path"] == "/"
        page_html = page.content()

        page.click("form.logout button")
        page.wait_for_url(re.compile(r".*/login$"))
        assert all(c["name"] != "snapshotter_session" for c in context.cookies())
        page.goto(served.url + "/")
        assert urlsplit(page.url).path == "/login"  # the session has ended
        assert errors == []
        context.close()

        # The password is in no page, no URL, no log line; the cookie's value in no log.
        assert PASSWORD not in page_html
        assert not [u for u in seen if PASSWORD in u or "password" in u.lower()]
        wait_until(lambda: "serve: login from 127.0.0.1" in served.output(), "the login line")
        output = served.output()
        assert PASSWORD not in output and cookie["value"] not in output
        assert "wrong dashboard password from 127.0.0.1" in output
        assert "not the password" not in output


def test_lockout_per_client_in_the_browser(tmp_path: Path, demo_db: Path,
                                           chromium: Any) -> None:
    """Behind a trusted proxy each forwarded client has its own count; a locked client
    gets 429 even with the right password."""
    cfg = _config(tmp_path, f"sqlite:///{demo_db}", trusted_proxy=["127.0.0.1"])
    with serving(cfg) as served:
        locked = chromium.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.7"})
        page = locked.new_page()
        page.goto(served.url + "/login")
        for _ in range(5):
            page.fill("#password", "guess")
            _submit(page)
            assert page.inner_text("p.error") == "wrong password"
        page.fill("#password", PASSWORD)
        assert _submit(page).status == 429
        assert page.inner_text("p.error").startswith(
            "too many wrong passwords from 203.0.113.7: locked for 15 more minutes")
        assert all(c["name"] != "snapshotter_session" for c in locked.cookies())
        locked.close()

        other = chromium.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.8"})
        page = other.new_page()
        page.goto(served.url + "/login")
        page.fill("#password", PASSWORD)
        page.click("section.login button")
        page.wait_for_url(served.url + "/")
        assert page.inner_text("h1") == "Overview"
        other.close()
        wait_until(lambda: "203.0.113.7 locked out for 15 minutes after 5 wrong passwords"
                   in served.output(), "the lock-out line")
        assert PASSWORD not in served.output()


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(tmp_path: Path,
                                                              demo_db: Path) -> None:
    cfg = _config(tmp_path, f"sqlite:///{demo_db}", trusted_proxy=["10.0.0.0/8"])
    with serving(cfg) as served:
        session = _session()
        for hop in range(5):  # a new made-up client each time: still one peer
            wrong = _login(session, served.url, "guess", **{"X-Forwarded-For": f"198.51.100.{hop}"})
            assert wrong.status_code == 200 and "wrong password" in wrong.text
        locked = _login(session, served.url, **{"X-Forwarded-For": "198.51.100.99"})
        assert locked.status_code == 429 and "from 127.0.0.1:" in locked.text
        assert int(locked.headers["retry-after"]) > 0
        # X-Forwarded-Proto from that peer does not make the cookie Secure either.
        fresh = _session()
        form = fresh.get(served.url + "/login", headers={"X-Forwarded-Proto": "https"},
                         timeout=HANG_GUARD)
        assert "Secure" not in _set_cookies(form)["snapshotter_login"]


def test_secure_cookie_behind_a_tls_proxy(tmp_path: Path, demo_db: Path) -> None:
    cfg = _config(tmp_path, f"sqlite:///{demo_db}", trusted_proxy=["127.0.0.0/8"])
    with serving(cfg) as served:
        session = _session()
        done = _login(session, served.url, **{"X-Forwarded-Proto": "https",
                                              "X-Forwarded-For": "192.0.2.10, 127.0.0.5"})
        assert done.status_code == 303
        cookie = _set_cookies(done)["snapshotter_session"]
        assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        wait_until(lambda: "login from 192.0.2.10" in served.output(), "the login line")


def test_forged_posts_and_open_redirects_are_refused(tmp_path: Path, demo_db: Path) -> None:
    with serving(_config(tmp_path, f"sqlite:///{demo_db}")) as served:
        url = served.url
        session = _session()
        token = _form_token(session.get(url + "/login", timeout=HANG_GUARD).text)
        form = {"token": token, "next": "/", "password": PASSWORD}
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                        {"Origin": "http://evil.example"}):
            forged = session.post(url + "/login", data=form, headers=headers,
                                  allow_redirects=False, timeout=HANG_GUARD)
            assert forged.status_code == 403, headers
        # Without the form's cookie (a page elsewhere posting the form): refused.
        bare = _session().post(url + "/login", data=form, allow_redirects=False,
                               timeout=HANG_GUARD)
        assert bare.status_code == 403 and "snapshotter_session" not in _set_cookies(bare)
        assert PASSWORD not in served.output()

        for target in ("//evil.example/", "https://evil.example/", "/\\evil.example",
                       "http:/evil.example", "javascript:alert(1)", "/login"):
            done = _login(_session(), url, next_path=target)
            assert done.status_code == 303 and done.headers["location"] == "/", target
        kept = _login(_session(), url, next_path="/?account=DM0001")
        assert kept.headers["location"] == "/?account=DM0001"

        # Logout needs the page's token too.
        assert _login(session, url).status_code == 303
        refused = session.post(url + "/logout", data={"token": "forged"},
                               allow_redirects=False, timeout=HANG_GUARD)
        assert refused.status_code == 403
        assert session.get(url + "/", allow_redirects=False, timeout=HANG_GUARD).status_code \
            == 200
        # A POST to any other path from another site: refused before it is routed.
        other = session.post(url + "/", headers={"Sec-Fetch-Site": "cross-site"},
                             allow_redirects=False, timeout=HANG_GUARD)
        assert other.status_code == 403


def test_open_paths_and_unknown_pages(tmp_path: Path, demo_db: Path) -> None:
    with serving(_config(tmp_path, f"sqlite:///{demo_db}")) as served:
        session = _session()
        css = session.get(served.url + "/static/dashboard.css", timeout=HANG_GUARD)
        assert css.status_code == 200  # the login page's style, without a session
        hidden = session.get(served.url + "/no-such-page", allow_redirects=False,
                             timeout=HANG_GUARD)
        assert hidden.status_code == 303  # nothing about the site before a login
        assert _login(session, served.url).status_code == 303
        missing = session.get(served.url + "/no-such-page", timeout=HANG_GUARD)
        assert missing.status_code == 404 and "Traceback" not in missing.text


# -- the cross-site bounce (SameSite=Strict and Kite's redirect) ---------------------------


def test_cross_site_arrival_gets_the_refresh_page(tmp_path: Path, demo_db: Path) -> None:
    with serving(_config(tmp_path, f"sqlite:///{demo_db}")) as served:
        target = "/kite/callback?request_token=abc123&action=login&status=success"
        bounce = _session().get(served.url + target, headers={"Sec-Fetch-Site": "cross-site"},
                                allow_redirects=False, timeout=HANG_GUARD)
        assert bounce.status_code == 200
        assert ('<meta http-equiv="refresh" content="0;url=\'/kite/callback?request_token='
                'abc123&amp;action=login&amp;status=success\'">') in bounce.text
        assert "<script" not in bounce.text
        # The callback with no cookie at all (a browser without Sec-Fetch-Site): the same.
        session = _session()
        again = session.get(served.url + target, allow_redirects=False, timeout=HANG_GUARD)
        assert again.status_code == 200 and 'http-equiv="refresh"' in again.text
        # Re-navigated and still no session: the login page, the whole URL as next.
        login = session.get(served.url + target, allow_redirects=False, timeout=HANG_GUARD)
        assert login.status_code == 303
        assert parse_qs(urlsplit(login.headers["location"]).query) == {"next": [target]}
        # What the browser fetches for a page by itself (its icon) gets no login page:
        # that page's new form token would replace the one the person is typing into.
        icon = _session().get(served.url + "/favicon.ico", allow_redirects=False,
                              headers={"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image",
                                       "Sec-Fetch-Site": "same-origin"}, timeout=HANG_GUARD)
        assert icon.status_code == 401 and "set-cookie" not in icon.headers
        page = _session().get(served.url + "/favicon.ico", allow_redirects=False,
                              headers={"Sec-Fetch-Mode": "navigate"}, timeout=HANG_GUARD)
        assert page.status_code == 303  # typed into the address bar: the login page
        assert 'rel="icon"' in bounce.text  # the refresh page names its icon
        # A same-site request without a session is not bounced.
        plain = _session().get(served.url + "/?x=1", headers={"Sec-Fetch-Site": "same-origin"},
                               allow_redirects=False, timeout=HANG_GUARD)
        assert plain.status_code == 303
        assert "abc123" not in served.output()


@pytest.fixture
def other_site() -> Iterator[Any]:
    """Another site (http://localhost:PORT, not 127.0.0.1: another host, so cross-site)
    whose page links to the URL given in its path."""

    class Links(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            targets = parse_qs(urlsplit(self.path).query).get("to")
            if not targets:
                self.send_error(404)
                return
            target = targets[0]
            body = f'<!doctype html><a id="go" href="{target}">dashboard</a>'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Links)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_navigation_from_another_site_in_the_browser(tmp_path: Path, demo_db: Path,
                                                     chromium: Any, other_site: str) -> None:
    with serving(_config(tmp_path, f"sqlite:///{demo_db}")) as served:
        wanted = served.url + "/?from=elsewhere"
        context = chromium.new_context()
        page = context.new_page()
        answers: list[Any] = []
        page.on("response", lambda answer: answers.append(answer))

        def arrivals() -> list[tuple[int, str | None]]:
            """The dashboard's answers to the link's URL: status, Sec-Fetch-Site."""
            return [(a.status, a.request.all_headers().get("sec-fetch-site"))
                    for a in answers if a.url == wanted]

        # Not logged in: the bounce, the login page, then the page the link named.
        page.goto(f"{other_site}/?to={wanted}")
        page.click("#go")
        page.wait_for_url(re.compile(r".*/login\?next=.*"))
        assert parse_qs(urlsplit(page.url).query) == {"next": ["/?from=elsewhere"]}
        # The refresh page, then (no session) the way to the login page.
        assert arrivals() == [(200, "cross-site"), (303, "same-origin")]
        page.fill("#password", PASSWORD)
        page.click("section.login button")
        page.wait_for_url(wanted)
        assert page.inner_text("h1") == "Overview"

        # Logged in: the cookie (SameSite=Strict) is not sent from another site; the
        # refresh page's navigation is same-site, and it is.
        answers.clear()
        page.goto(f"{other_site}/?to={wanted}")
        page.click("#go")
        page.wait_for_url(wanted)
        page.wait_for_selector("h1")
        assert page.inner_text("h1") == "Overview"
        assert arrivals() == [(200, "cross-site"), (200, "same-origin")]
        assert "snapshotter_bounce" not in [c["name"] for c in context.cookies()]
        context.close()


# -- the PostgreSQL side ------------------------------------------------------------------


def test_login_over_either_database(tmp_path: Path, database_url: str) -> None:
    cfg = _config(tmp_path, database_url)
    upgraded = run_cli("--config", str(cfg), "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    with serving(cfg) as served:
        session = _session()
        assert "wrong password" in _login(session, served.url, "wrong").text
        assert _login(session, served.url).status_code == 303
        overview = session.get(served.url + "/", timeout=HANG_GUARD)
        assert overview.status_code == 200 and "Overview" in overview.text
        assert PASSWORD not in served.output()


# -- the parts, with their clocks injected --------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockout_counts_a_window_and_expires() -> None:
    clock = FakeClock()
    lockout = Lockout(clock, failures=5, window=900, locked_for=900)
    for _ in range(4):
        assert not lockout.fail("a")
    clock.now += 901  # the first four fall out of the window
    assert not lockout.fail("a")
    assert lockout.locked("a") == 0
    for _ in range(3):
        assert not lockout.fail("a")
    assert lockout.fail("a")  # five within 15 minutes
    assert lockout.locked("a") == 900 and lockout.locked("b") == 0
    clock.now += 899
    assert lockout.locked("a") == 1
    clock.now += 1
    assert lockout.locked("a") == 0
    assert not lockout.fail("a")  # a fresh count after the lock-out
    lockout.clear("a")
    for _ in range(4):
        assert not lockout.fail("a")


def test_sessions_end_when_idle_or_old() -> None:
    clock = FakeClock()
    sessions = Sessions(clock, idle=3600, max_age=3 * 3600)
    token = sessions.start()
    assert sessions.get(token) is not None and sessions.get("forged") is None
    for _ in range(3):  # used every 50 minutes: never idle for an hour
        clock.now += 3000
        assert sessions.get(token) is not None
    clock.now += 3000  # but 200 minutes old
    assert sessions.get(token) is None
    idle = sessions.start()
    clock.now += 3600
    assert sessions.get(idle) is None
    ended = sessions.start()
    sessions.end(ended)
    assert sessions.get(ended) is None
    assert len(sessions) == 0


def test_client_behind_proxies() -> None:
    proxies = Proxies(["10.0.0.0/8", "::1"])
    assert proxies.client("192.0.2.1", ["198.51.100.1"]) == "192.0.2.1"  # not a proxy
    assert proxies.client("10.1.1.1", ["198.51.100.1"]) == "198.51.100.1"
    # The client wrote the left part itself: the right-most untrusted hop is believed.
    assert proxies.client("10.1.1.1", ["6.6.6.6, 198.51.100.1, 10.2.2.2"]) == "198.51.100.1"
    assert proxies.client("10.1.1.1", ["6.6.6.6", "198.51.100.1"]) == "198.51.100.1"
    assert proxies.client("::1", ["[2001:db8::1]:4711"]) == "2001:db8::1"
    assert proxies.client("::ffff:10.0.0.1", ["198.51.100.1:80"]) == "198.51.100.1"
    assert proxies.client("10.1.1.1", []) == "10.1.1.1"
    assert proxies.client("10.1.1.1", ["10.3.3.3"]) == "10.3.3.3"
    assert proxies.client("10.1.1.1", ["unknown"]) == "unknown"
    assert proxies.client("10.1.1.1", ["forged\nline"]) == "forged?line"  # one log line


def test_local_path_and_password() -> None:
    assert local_path("/account/DM0001?from=2026-01-01") == "/account/DM0001?from=2026-01-01"
    for bad in (None, "", "//evil", "/\\evil", "https://evil/", "evil", "/a b", "/\tx",
                "/login", "http:/x"):
        assert local_path(bad) == "/", bad
    assert password_matches(PASSWORD, PASSWORD)
    assert not password_matches(PASSWORD + "x", PASSWORD)
    assert not password_matches("", PASSWORD)
