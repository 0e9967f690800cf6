"""Notifications through Apprise (`notify.urls`): one message per run that failed, stored
a snapshot with warnings, or, with `summary` in `notify.on`, every run.

Apprise is imported only when URLs are configured, by the commands that notify: it costs
a fifth of a second that `status` and `--help` must not pay. A notification never fails
the run: an unreachable server, a refused token or a server that never answers is one
warning line. Each URL is sent from a daemon thread that the caller polls with
``time.sleep`` for at most ``notify.timeout`` seconds (no timed thread waits: libfaketime
would freeze them); Apprise's own thread pools and deadlines are switched off for the same
reason, and because their threads would hold the process's exit. An Apprise URL carries
its service's token: it is never logged, and Apprise's log lines (which quote URLs) are
kept out of ours; a failure's reason is redacted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from snapshotter import redact
from snapshotter.errors import ConfigError

if TYPE_CHECKING:
    from snapshotter.config import Config, NotifyConfig
    from snapshotter.config.model import ServeConfig
    from snapshotter.pipeline import AccountOutcome, LoginResult, RunResult

log = logging.getLogger(__name__)

FAILURE, WARNING, SUMMARY = "failure", "warning", "summary"
POLL_SECONDS = 0.05
APP_NAME = "Kite Snapshotter"
SERVICES_HELP = "https://github.com/caronc/apprise/wiki"


@dataclass(frozen=True)
class Message:
    kind: str  # failure, warning or summary: the worst thing the run met
    title: str
    body: str


# -- what a message says ------------------------------------------------------------------


def run_message(result: RunResult, on: Sequence[str], note: str = "") -> Message | None:
    """The message about one run, or None when ``on`` does not ask for one."""
    from snapshotter.pipeline import FAILED, OK, SKIPPED

    failed = [o for o in result.outcomes if o.status == FAILED]
    warned = [o for o in result.outcomes if o.status == OK and o.warnings]
    lost = result.lock_lost
    if not (((failed or lost) and FAILURE in on) or (warned and WARNING in on)
            or SUMMARY in on):
        return None
    kind = FAILURE if failed or lost else WARNING if warned else SUMMARY
    heads = ["run lock lost"] if lost else []
    if failed:
        heads.append(f"{_count(len(failed), 'account')} failed")
    if warned:
        heads.append(f"{_count(len(warned), 'account')} with warnings")
    if not heads:
        skipped = all(o.status == SKIPPED for o in result.outcomes)
        heads.append("nothing to do" if skipped
                     else f"{_count(len(result.outcomes), 'account')} ok")
    title = f"snapshotter: {', '.join(heads)} (session {result.session.day})"

    lines, others = [], []
    for o in sorted(result.outcomes, key=lambda o: o.account):  # not in finishing order
        if o.status == FAILED:
            lines.append(f"{o.account}: failed: {_reason(o.error or 'failed', o.account)}")
        elif o.status == OK and o.warnings:
            state = "final" if o.final else "not final, fetched again later"
            lines.append(f"{o.account}: ok with {_count(len(o.warnings), 'warning')} "
                         f"({state}){_counts(o)}:")
            lines += [f"  - {_reason(w, o.account)}" for w in o.warnings]
        elif SUMMARY in on:
            lines.append(f"{o.account}: {_state(o)}{_counts(o)}")
        else:
            others.append(f"{o.account} {o.status}")
    if others:
        lines.append(f"other accounts: {', '.join(others)}")
    if lost:
        lines.insert(0, lost)
    if note:
        lines.append(note)
    return Message(kind, redact.redact(title), redact.redact("\n".join(lines)))


def failed_run_message(error: str, on: Sequence[str], what: str = "the run",
                       note: str = "") -> Message | None:
    """A run that failed as a whole (database unreachable, the run lock held too long)."""
    if FAILURE not in on:
        return None
    body = error if not note else f"{error}\n{note}"
    return Message(FAILURE, f"snapshotter: {what} failed", redact.redact(body))


def login_message(results: Sequence[LoginResult], on: Sequence[str],
                  links: Mapping[str, str] | None = None,
                  what: str = "login check") -> Message | None:
    """`login --check`, the daemon's check before the close and its `schedule.login_reminder`:
    manual accounts without a working session, each with its dashboard login link
    (``links``: account -> URL) when it has one."""
    failed = [r for r in results if not r.ok]
    if not failed or FAILURE not in on:
        return None
    links = links or {}
    title = (f"snapshotter: {_count(len(failed), 'account')} without a working session "
             f"({what})")
    lines = []
    for r in failed:
        lines.append(f"{r.account}: {r.message}")
        if r.account in links:
            lines.append(f"log in to Kite: {links[r.account]}")
    return Message(FAILURE, title, redact.redact("\n".join(lines)))


def dashboard_login_url(serve: ServeConfig, user_id: str) -> str:
    """The dashboard's "Log in to Kite" link for an account (serve.url, else the address
    `snapshotter serve` listens on)."""
    base = serve.url
    if not base:
        host = f"[{serve.host}]" if ":" in serve.host and not serve.host.startswith("[") \
            else serve.host
        base = f"http://{host}:{serve.port}"
    return f"{base.rstrip('/')}/kite/login/{quote(user_id, safe='')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _reason(text: str, account: str) -> str:
    return text.removeprefix(f"account {account}: ")


def _counts(o: AccountOutcome) -> str:
    return f" ({', '.join(f'{k} {v}' for k, v in o.counts.items())})" if o.counts else ""


def _state(o: AccountOutcome) -> str:
    if o.status == "skipped":
        return "skipped, final snapshot already stored"
    return f"{o.status}, {'final' if o.final else 'intraday (not final)'}"


# -- Apprise ------------------------------------------------------------------------------


class _Capture(logging.Handler):
    """Apprise's log lines, per thread: they may quote a URL, so they never reach our
    handlers; a failed delivery's last one becomes its (redacted) reason."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: dict[int, list[str]] = {}
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.lines.setdefault(threading.get_ident(), []).append(record.getMessage())

    def take(self) -> list[str]:
        with self._guard:
            return self.lines.pop(threading.get_ident(), [])


_capture = _Capture()


def _apprise() -> Any:
    import apprise

    logger = logging.getLogger(apprise.LOGGER_NAME)
    if _capture not in logger.handlers:
        logger.propagate = False
        logger.addHandler(_capture)
    return apprise


def _asset(apprise: Any) -> Any:
    """No thread pools, no deadlines of Apprise's own (we bound the time), nothing on disk."""
    common = {"app_id": APP_NAME, "app_desc": APP_NAME, "async_mode": False,
              "storage_mode": "memory"}
    try:
        return apprise.AppriseAsset(service_timeout=0, **common)
    except (TypeError, AttributeError):  # Apprise 1.x: no service deadline to switch off
        return apprise.AppriseAsset(**common)


def _instantiate(apprise: Any, asset: Any, url: str) -> Any:
    plugin = apprise.Apprise.instantiate(url, asset=asset)
    _capture.take()  # "Unparseable URL tgram://...": Apprise's reason quotes the URL
    return plugin


def check(config: Config) -> None:
    """Every URL in notify.urls one Apprise accepts, else one line per URL naming its key
    (exit 2). Run by the commands that notify, before they log in."""
    if not config.notify.urls:
        return
    source = config.path or "<config>"
    try:
        apprise = _apprise()
    except ImportError:
        raise ConfigError([f"{source}: notify.urls: needs the apprise package "
                           "(pip install apprise)"]) from None
    asset = _asset(apprise)
    problems = []
    known: dict[str, str] = {}
    for i, url in enumerate(config.notify.urls):
        if _instantiate(apprise, asset, url) is not None:
            continue
        scheme = url.split("://", 1)[0].lower()
        known = known or _known_schemes(apprise)
        why = (f"Apprise does not accept this {known[scheme]} URL: a part is missing or "
               "malformed" if scheme in known else
               f"Apprise has no service {scheme}://") + \
            f" (see {SERVICES_HELP}; the value is not shown: it may hold a token)"
        problems.append(f"{source}: notify.urls[{i}]: {why}")
    if problems:
        raise ConfigError(problems)


def _known_schemes(apprise: Any) -> dict[str, str]:
    manager = apprise.manager_plugins.NotificationManager()
    return {scheme: str(getattr(manager[scheme], "service_name", scheme))
            for scheme in manager.schemas()}


def send(config: NotifyConfig, message: Message | None,
         should_stop: Callable[[], bool] = lambda: False) -> bool:
    """Deliver ``message`` to every URL, all at once, for at most ``config.timeout``
    seconds (or until ``should_stop``: the daemon's shutdown); never raises. False (and
    one warning line) when a URL was not reached."""
    if message is None or not config.urls:
        return True
    try:
        apprise = _apprise()
        asset = _asset(apprise)
        kind = {FAILURE: apprise.NotifyType.FAILURE, WARNING: apprise.NotifyType.WARNING,
                SUMMARY: apprise.NotifyType.INFO}[message.kind]
        deliveries = [_Delivery(i, _instantiate(apprise, asset, url))
                      for i, url in enumerate(config.urls)]
        for delivery in deliveries:
            delivery.start(apprise, asset, message, kind)
    except Exception as exc:  # Apprise itself broken: still never the run's problem
        log.warning("notification not sent: Apprise failed (%s)", type(exc).__name__)
        return False
    deadline = time.monotonic() + config.timeout
    while any(d.running for d in deliveries) and time.monotonic() < deadline \
            and not should_stop():
        time.sleep(POLL_SECONDS)
    unanswered = ("abandoned: shutting down" if should_stop() else
                  f"no answer within {config.timeout:g} s (notify.timeout)")
    failures = [f"notify.urls[{d.index}] ({d.name}): "
                f"{unanswered if d.running else d.reason}"
                for d in deliveries if not d.delivered]
    if failures:
        log.warning("notification not delivered: %s; the run's result stands",
                    redact.redact("; ".join(failures)))
    return not failures


class _Delivery:
    """One URL's delivery, in a daemon thread (abandoned if it outlives the timeout)."""

    def __init__(self, index: int, plugin: Any):
        self.index = index
        self.plugin = plugin
        self.name = str(getattr(plugin, "service_name", None) or "unknown service")
        self.delivered = False
        self.reason = "Apprise does not accept this URL"
        self._thread: threading.Thread | None = None

    def start(self, apprise: Any, asset: Any, message: Message, kind: Any) -> None:
        if self.plugin is None:
            return
        notifier = apprise.Apprise(asset=asset)
        notifier.add(self.plugin)
        self._thread = threading.Thread(
            target=self._run, args=(notifier, message, kind, apprise.NotifyFormat.TEXT),
            name=f"notify-{self.index}", daemon=True)
        self._thread.start()

    def _run(self, notifier: Any, message: Message, kind: Any, body_format: Any) -> None:
        try:
            self.delivered = bool(notifier.notify(body=message.body, title=message.title,
                                                  notify_type=kind, body_format=body_format))
            if not self.delivered:
                lines = _capture.take()
                self.reason = lines[-1].strip().rstrip(".") if lines else "not delivered"
        except Exception as exc:
            self.reason = f"Apprise failed ({type(exc).__name__})"
        finally:
            _capture.take()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
