"""The account's cookie jar (kite/cookies.py): Kite's cookies kept and sent back by RFC
6265's rules, and a hostile answer's cookies kept away from where they do not belong.
Also what kite/http.py does now without requests: header fields, charsets, a JSON
body's encoding, and the environment's proxy and CA bundle (compared with requests')."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator

import pytest

from snapshotter.errors import TransientKiteError
from snapshotter.kite import http as kite_http
from snapshotter.kite.cookies import CookieJar

KITE = "https://kite.zerodha.com"
NOW = 1_800_000_000.0


def _jar(*set_cookie: str, url: str = f"{KITE}/api/twofa", now: float = NOW) -> CookieJar:
    jar = CookieJar()
    jar.keep(url, set_cookie, now=now)
    return jar


def test_kites_login_cookies_go_back_on_every_route() -> None:
    jar = _jar("enctoken=a+b/c==; path=/; secure; HttpOnly; SameSite=None",
               "public_token=p1; path=/", "user_id=AB1234; path=/")
    assert jar["enctoken"] == "a+b/c==" and "user_id" in jar and len(jar) == 3
    assert jar.header(f"{KITE}/oms/portfolio/holdings", now=NOW) \
        == "enctoken=a+b/c==; public_token=p1; user_id=AB1234"


def test_a_cookie_goes_only_to_its_host_unless_its_domain_says_more() -> None:
    jar = _jar("host=1; Path=/", "wide=2; Domain=.zerodha.com; Path=/")
    assert jar.header(f"{KITE}/x", now=NOW) == "host=1; wide=2"
    assert jar.header("https://console.zerodha.com/x", now=NOW) == "wide=2"
    assert jar.header("https://zerodha.com.evil.example/x", now=NOW) is None
    assert jar.header("https://api.kite.trade/x", now=NOW) is None


@pytest.mark.parametrize("domain", ["evil.example", "com", "ite.zerodha.com",
                                    "api.kite.zerodha.com"])
def test_a_domain_that_does_not_cover_the_answering_host_is_refused(domain: str) -> None:
    jar = _jar(f"enctoken=planted; Domain={domain}; Path=/")
    assert len(jar) == 0 and jar.get("enctoken") is None


def test_an_address_takes_no_cookie_for_a_wider_domain() -> None:
    jar = _jar("a=1; Domain=0.0.1", url="http://127.0.0.1:8000/api/login")
    assert len(jar) == 0
    jar = _jar("a=1; Path=/", url="http://127.0.0.1:8000/api/login")
    assert jar.header("http://127.0.0.1:9000/oms/x", now=NOW) == "a=1"  # ports share
    assert jar.header("http://27.0.0.1/oms/x", now=NOW) is None


def test_paths_limit_a_cookie_and_the_longest_goes_first() -> None:
    jar = _jar("a=root; Path=/", "a=oms; Path=/oms", "b=deep; Path=/oms/portfolio/")
    assert jar.header(f"{KITE}/oms/portfolio/holdings", now=NOW) == "b=deep; a=oms; a=root"
    assert jar.header(f"{KITE}/omsx", now=NOW) == "a=root"
    assert jar.get("a") == "oms"
    # No Path: the directory of the address that set it.
    jar = _jar("c=1", url=f"{KITE}/connect/login?v=3")
    assert jar.header(f"{KITE}/connect/finish", now=NOW) == "c=1"
    assert jar.header(f"{KITE}/api/x", now=NOW) is None


def test_a_secure_cookie_never_goes_over_plain_http() -> None:
    jar = _jar("enctoken=t; Secure; Path=/")
    assert jar.header(f"{KITE}/oms/x", now=NOW) == "enctoken=t"
    assert jar.header("http://kite.zerodha.com/oms/x", now=NOW) is None


def test_a_cookie_set_again_is_replaced_in_its_place() -> None:
    jar = _jar("a=1; Path=/", "b=2; Path=/")
    jar.keep(f"{KITE}/api/x", ["a=3; Path=/"], now=NOW)
    assert jar.header(f"{KITE}/", now=NOW) == "a=3; b=2"


@pytest.mark.parametrize("expiry", ["Max-Age=0", "Max-Age=-1",
                                    "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                                    "Expires=Wed, 21-Oct-15 07:28:00 GMT"])
def test_an_expired_cookie_logs_out(expiry: str) -> None:
    jar = _jar("enctoken=t; Path=/", "kf_session=s; Path=/")
    jar.keep(f"{KITE}/api/logout", [f"enctoken=; Path=/; {expiry}"], now=NOW)
    assert "enctoken" not in jar
    assert jar.header(f"{KITE}/", now=NOW) == "kf_session=s"


def test_a_cookie_ends_when_it_expires() -> None:
    expires = "Fri, 15 Jan 2027 08:00:00 GMT"  # 1_800_000_000 is 2027-01-15 08:00 UTC
    jar = _jar("a=1; Max-Age=60", f"b=2; Expires={expires}", "c=3; Max-Age=60; Expires=junk",
               now=NOW - 10)
    assert jar.header(f"{KITE}/api/x", now=NOW - 1) == "a=1; b=2; c=3"
    assert jar.header(f"{KITE}/api/x", now=NOW + 49) == "a=1; c=3"
    assert jar.header(f"{KITE}/api/x", now=NOW + 50) is None
    assert len(jar) == 0


@pytest.mark.parametrize("text", ["Fri, 15 Jan 2027 08:00:00 GMT",
                                  "Friday, 15-Jan-27 08:00:00 GMT",
                                  "Fri Jan 15 08:00:00 2027", "15 jan 2027 08:00:00"])
def test_the_date_forms_kite_and_browsers_use_are_read(text: str) -> None:
    jar = _jar(f"a=1; Expires={text}", now=NOW - 10)
    [cookie] = list(jar)
    assert cookie.expires == NOW
    assert "a=1" not in repr(cookie) and "value" not in repr(cookie)


@pytest.mark.parametrize("text", ["Fri, 31 Feb 2027 08:00:00 GMT", "Fri, 15 Jan 2027 24:00:00",
                                  "15 Jan 1600 08:00:00", "tomorrow", ""])
def test_a_date_that_is_not_one_leaves_the_cookie_for_the_session(text: str) -> None:
    jar = _jar(f"a=1; Expires={text}")
    [cookie] = list(jar)
    assert cookie.expires is None


@pytest.mark.parametrize(("max_age", "kept"), [("9" * 5000, True), ("-" + "9" * 5000, False),
                                              ("0" * 30 + "1", True), ("-0", False)])
def test_any_max_age_is_read_without_error(max_age: str, kept: bool) -> None:
    """A hostile Max-Age (more digits than int() takes, or than a float holds) is "for
    ever" or "expired", never an error that loses the answer's other cookies."""
    jar = _jar(f"a=1; Max-Age={max_age}", "enctoken=t")
    assert ("a" in jar) is kept and jar["enctoken"] == "t"
    assert jar.header(f"{KITE}/api/x", now=NOW) == ("a=1; enctoken=t" if kept else "enctoken=t")


def test_an_expires_that_is_not_a_date_leaves_an_earlier_one() -> None:
    jar = _jar("a=1; Expires=Fri, 15 Jan 2027 08:00:00 GMT; Expires=soon", now=NOW - 10)
    [cookie] = list(jar)
    assert cookie.expires == NOW


def test_a_domain_with_two_leading_dots_is_refused() -> None:
    assert len(_jar("a=1; Domain=..zerodha.com")) == 0


def test_the_latest_login_s_enctoken_is_the_one_read() -> None:
    """A login whose enctoken came for the whole domain, then one that set it for the
    host: the new one is the session (both are sent, as RFC 6265 has it)."""
    jar = _jar("enctoken=old; Domain=.zerodha.com; Path=/")
    jar.keep(f"{KITE}/api/twofa", ["enctoken=new; Path=/"], now=NOW)
    assert jar.get("enctoken") == jar["enctoken"] == "new"


@pytest.fixture
def busy_switching() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_an_accounts_threads_share_its_jar(busy_switching: None) -> None:
    """An account's data routes send at once: each drops the cookies that have expired
    (a CDN's short-lived one, here) while the others read the jar."""
    jar = _jar("enctoken=t; Path=/")
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def route() -> None:
        try:
            for _ in range(1000):
                start.wait()
                assert jar.header(f"{KITE}/oms/x", now=NOW + 5) == "enctoken=t"
                assert "enctoken" in jar and jar.get("enctoken") == "t"
                start.wait()
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=route) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(1000):
            jar.keep(f"{KITE}/api/x", [f"cdn{i}=x; Path=/; Max-Age=1" for i in range(20)],
                     now=NOW)
            start.wait()
            start.wait()
    except threading.BrokenBarrierError:
        pass
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize("text", ["novalue", "=nameless", "  ; Path=/"])
def test_a_set_cookie_without_a_name_and_value_is_ignored(text: str) -> None:
    assert len(_jar(text)) == 0


def _answer(body: bytes, content_type: str) -> kite_http.Answer:
    headers = kite_http.Headers()
    headers["content-type"] = content_type
    return kite_http.Answer(200, headers, body)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be",
                                      "utf-32", "utf-32-le", "utf-32-be"])
def test_a_json_body_is_read_in_the_encoding_it_is_in(encoding: str) -> None:
    """RFC 4627's detection when the Content-Type names no charset."""
    body = json.dumps({"status": "success", "data": {"name": "Zerodha ₹"}},
                      ensure_ascii=False).encode(encoding)
    assert kite_http.parse_envelope(_answer(body, "application/octet-stream"), "AB1234") \
        == {"name": "Zerodha ₹"}


def test_the_charset_a_content_type_names_wins() -> None:
    answer = _answer('{"status": "success", "data": "é"}'.encode("latin-1"),
                     'application/json; Charset="ISO-8859-1"')
    assert answer.encoding == "ISO-8859-1" and kite_http.parse_envelope(answer, "X") == "é"
    assert _answer(b"", "text/html").encoding == "ISO-8859-1"
    assert _answer(b"", "application/json").encoding == "utf-8"
    assert _answer(b"", "application/json; charset").encoding == "utf-8"
    assert _answer(b"", "image/png").encoding is None
    assert _answer(b"", "application/json;\tcharset=utf-16").encoding == "utf-16"


def test_a_charset_python_does_not_know_is_a_transient_answer_not_a_crash() -> None:
    answer = _answer(b"<html>maintenance</html>", "text/html; charset=nope")
    assert answer.text == "<html>maintenance</html>"
    with pytest.raises(TransientKiteError, match="HTML page"):
        kite_http.parse_envelope(answer, "AB1234")


def test_header_fields_are_found_whatever_their_case() -> None:
    headers = kite_http.Headers()
    headers["Set-Cookie"] = "a=1"
    headers["date"] = "Tue, 08 Dec 2026 10:00:00 GMT"
    assert headers["SET-COOKIE"] == "a=1" and "DATE" in headers and "Location" not in headers
    assert list(headers) == ["Set-Cookie", "date"] and headers.get("x") is None


def _requests_settings(url: str) -> dict[str, object]:
    import requests

    with requests.Session() as reader:
        merged = reader.merge_environment_settings(url, {}, None, None, None)
    return {"proxy": requests.utils.select_proxy(url, merged["proxies"] or {}) or "",
            "verify": merged["verify"]}


@pytest.mark.parametrize("environment", [
    {},
    {"NO_PROXY": "*", "no_proxy": ""},
    {"REQUESTS_CA_BUNDLE": "/etc/ca.pem", "CURL_CA_BUNDLE": "/etc/other.pem"},
    {"CURL_CA_BUNDLE": "/etc/other.pem"},
    {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""},
    {"HTTPS_PROXY": "http://proxy.example:3128"},
    {"https_proxy": "http://proxy.example:3128", "NO_PROXY": "zerodha.com"},
    {"ALL_PROXY": "http://proxy.example:3128", "no_proxy": "10.0.0.0/8,.kite.trade"},
    {"HTTPS_PROXY": "http://proxy.example:3128", "https_proxy": ""},
    {"HTTP_PROXY": "", "http_proxy": ""},
])
def test_proxy_and_ca_bundle_are_chosen_as_requests_chooses_them(
        environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """requests is loaded only when a proxy variable is set; either way the settings
    are requests' own."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.endswith("CA_BUNDLE"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for url in (f"{KITE}/oms/user/margins", "https://api.kite.trade/session/token",
                "http://10.1.2.3:8000/api/login"):
        monkeypatch.setattr(kite_http, "_ENVIRONMENT", {})
        assert kite_http.environment_settings(url) == _requests_settings(url), url
