"""One function per command; each imports what it uses when it runs (this module loads
no third-party package)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from snapshotter import heap, redact
from snapshotter.errors import ConfigError, ExitCode, LoginRejected, SnapshotterError, UsageError

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from snapshotter.config import Config
    from snapshotter.reports.query import Filters
    from snapshotter.store.benchmarks import StoredCloses

log = logging.getLogger("snapshotter")


def _config(args: argparse.Namespace, *, secrets: bool = True) -> Config:
    """The config; ``secrets=False`` for a command that only reads the database (it
    neither logs in nor notifies): the accounts' secrets and notify.urls are left out,
    so their ${VAR}s and *_files need not be there."""
    from snapshotter.config import load_config

    config = load_config(args.config, secrets=secrets)
    redact.register(*config.secrets())
    for warning in config.warnings:
        log.warning("%s", warning)
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    elif config.log_level != "INFO":
        logging.getLogger().setLevel(config.log_level)
    # Which files a run uses (a relative SQLite path is resolved), the password hidden
    # here: the log filter leaves a secret under 4 characters as it is.
    if log.isEnabledFor(logging.DEBUG):
        from snapshotter.store.engine import describe_url

        log.debug("config %s; %s", config.path, describe_url(config.database_url))
    return config


@contextmanager
def _reachable(url: str) -> Iterator[None]:
    """A database that cannot be reached or written is one line naming it, and exit 75."""
    import sqlalchemy as sa

    from snapshotter.store import engine as db

    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        if db.is_connection_error(exc):
            raise db.unavailable(exc, url) from None
        raise


@contextmanager
def _database(args: argparse.Namespace, *, config: Config | None = None,
              deadline: float | None = None, writable: bool = False,
              create: bool = True) -> Iterator[tuple[Config, sa.Engine]]:
    """The configured database, migrated to head (and checked writable when asked);
    disposed of afterwards. An unreachable database is one line and exit 75. Read
    commands pass ``create=False``: a SQLite file that does not exist is not made, and
    the config is read without the accounts' secrets (see _config)."""
    import os

    from snapshotter.store import engine as db
    from snapshotter.store import migrate

    config = config or _config(args, secrets=create)
    url = config.database_url
    path = db.sqlite_path(url)
    if not create and path is not None and not os.path.exists(path):
        raise UsageError(f"no database at {path} (run `snapshotter run` first)")
    # A read command reads a SQLite file it cannot write (a read-only mount) read-only.
    read_only_url = None if create or writable else db.read_only_sqlite_url(url)
    engine = db.make_engine(read_only_url or url)
    try:
        with _reachable(url):
            if read_only_url is not None:
                migrate.check_at_head(engine, url)
            else:
                migrate.upgrade(url, engine, deadline=deadline)
            if writable:
                db.check_writable(engine, url)
        with _reachable(url):
            yield config, engine
    finally:
        engine.dispose()


def _known_accounts(config: Config, engine: sa.Engine, wanted: Iterable[str]) -> None:
    """Raise ``UsageError`` for an account neither configured nor stored (a typo, most
    likely), as `run` does for one not configured."""
    import difflib

    import sqlalchemy as sa

    from snapshotter.store.models import Snapshot

    wanted = [a.strip().upper() for a in wanted]
    if not wanted:
        return
    with engine.connect() as conn:
        stored = set(conn.scalars(sa.select(Snapshot.account).distinct()))
    known = sorted(stored | {a.user_id for a in config.accounts})
    for account in wanted:
        if account not in known:
            close = difflib.get_close_matches(account, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else \
                f"known: {', '.join(known) or 'none'}"
            raise UsageError(f"no account {account!r} in {config.path} or the database "
                             f"({hint})")


def cmd_serve(args: argparse.Namespace) -> int:
    from snapshotter.serve import server

    config = _config(args, secrets=False)  # a read command: no account's secret needed
    return server.serve(config, host=args.host, port=args.port)


def cmd_run(args: argparse.Namespace) -> int:
    import importlib
    import time

    from snapshotter.ops import health, notify

    config = _config(args)
    for account in args.account or ():  # one not configured: exit 2 before the database
        config.account(account.strip().upper())
    notify.check(config)  # a URL Apprise refuses: exit 2 before any login
    # Loading the program is not part of the run: its deadline starts after.
    for module in ("snapshotter.pipeline", "snapshotter.store.migrate"):
        importlib.import_module(module)
    # One deadline for the whole run, waiting for another run's lock included.
    deadline = time.monotonic() + config.kite.run_timeout
    try:
        return _run(args, config, deadline)
    except Exception as exc:
        # Every failed run pings the failure URL, the database unreachable included.
        text = str(exc) if isinstance(exc, SnapshotterError) else type(exc).__name__
        health.ping(config.healthcheck_url, ok=False, message=redact.redact(text))
        notify.send(config.notify, notify.failed_run_message(text, config.notify.on))
        raise


def _run(args: argparse.Namespace, config: Config, deadline: float) -> int:
    from snapshotter import pipeline
    from snapshotter.ops import health, notify

    # --from-raw too: re-deriving rows writes them (a read-only database: one line, 75).
    with _database(args, config=config, deadline=deadline, writable=True) \
            as (config, engine):
        if args.from_raw:
            heap.loaded()  # else the run's loader of pandas does it (pipeline.run)
            replayed = pipeline.replay_raw(
                engine, [a.strip().upper() for a in args.account] if args.account else None)
            print(f"replayed {replayed.snapshots} snapshot(s) from raw payloads, "
                  f"{replayed.rows} row(s) re-derived")
            for failure in replayed.failures:
                print(f"error: {redact.redact(failure)}", file=sys.stderr)
            return ExitCode.FAILURE if replayed.failures else ExitCode.OK
        result = pipeline.run_snapshot(config, engine, accounts=args.account or None,
                                       force=args.force, on_outcome=_print_outcome,
                                       deadline=deadline)
        if all(o.status == pipeline.SKIPPED for o in result.outcomes):
            print(f"nothing to do: every account has a final snapshot of the "
                  f"{result.session.day} session")
        # Ping on every run, "nothing to do" included: a daily check must not go quiet
        # on weekends and holidays.
        summary = ", ".join(f"{o.account}={o.status}" for o in result.outcomes)
        if result.lock_lost:
            summary = f"run lock lost; {summary}"
        health.ping(config.healthcheck_url, ok=result.exit_code == ExitCode.OK,
                    message=f"session {result.session.day}: {summary}")
        notify.send(config.notify, notify.run_message(result, config.notify.on))
        return result.exit_code


def _print_outcome(outcome: object) -> None:
    from snapshotter.pipeline import FAILED, SKIPPED, AccountOutcome

    assert isinstance(outcome, AccountOutcome)
    counts = ", ".join(f"{k} {v}" for k, v in outcome.counts.items())
    day = outcome.snapshot_date.isoformat()
    if outcome.status == FAILED:
        print(f"error: {redact.redact(outcome.error or 'failed')}", file=sys.stderr)
        log.info("account %s session %s: failed", outcome.account, day)
    elif outcome.status == SKIPPED:
        print(f"{outcome.account} {day}: skipped, final snapshot already stored ({counts})")
    else:
        for warning in outcome.warnings:
            print(f"warning: {redact.redact(warning)}", file=sys.stderr)
        kind = "final" if outcome.final else "intraday (not final)"
        if outcome.warnings and not outcome.final:
            kind = ("not final because of the warning(s) above: a later run fetches again "
                    "and keeps it once the same answer comes 30 minutes apart")
        elif outcome.warnings:
            kind = "final (the same answer came 30 minutes apart: kept, warnings and all)"
        print(f"{outcome.account} {day}: ok, {kind} ({counts})")


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from snapshotter.store import migrate

    config = _config(args)
    with _reachable(config.database_url):
        applied = migrate.upgrade(config.database_url)
    print("database migrated to head" if applied else "database already at head")
    return ExitCode.OK


def cmd_daemon(args: argparse.Namespace) -> int:
    from snapshotter.ops import notify
    from snapshotter.ops.daemon import Daemon, run_forever

    config = _config(args)
    notify.check(config)
    with _database(args, config=config) as (config, engine):
        return run_forever(Daemon(config, engine))


def cmd_status(args: argparse.Namespace) -> int:
    from snapshotter.ops import status
    from snapshotter.sessions import utc_now

    with _database(args, create=False) as (config, engine):
        report = status.build_status(config, engine, utc_now())
    print(status.as_json(report) if args.format == "json" else status.render(report))
    return ExitCode.OK if report.healthy else ExitCode.FAILURE


def cmd_systemd(args: argparse.Namespace) -> int:
    import os
    import shutil
    from pathlib import Path

    from snapshotter.ops.systemd_units import (
        UnitOptions,
        install_warnings,
        render_units,
        unit_config,
    )

    source = args.config or os.environ.get("SNAPSHOTTER_CONFIG")
    # Not _config(): the service reads the secret files (LoadCredential=), not this command.
    config = unit_config(source) if source else None
    accounts = list(config.accounts) if config else []
    config_path = str(Path(source).resolve()) if source else "/etc/snapshotter/config.yaml"
    beside_python = Path(sys.executable).with_name("snapshotter")
    exe = args.executable or (str(beside_python) if beside_python.exists() else None) \
        or shutil.which("snapshotter") or f"{sys.executable} -m snapshotter"
    options = UnitOptions(mode=args.mode, executable=exe, config_path=config_path,
                          user=args.user, run_times=args.times)
    try:
        units = render_units(options, accounts, config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    for warning in install_warnings(options, config):
        print(f"warning: {warning}", file=sys.stderr)
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            (out / name).write_text(text, encoding="utf-8")
            print(f"wrote {out / name}")
    else:
        for name, text in units.items():
            print(f"# /etc/systemd/system/{name}\n{text}")
    return ExitCode.OK


@contextmanager
def _database_if_reachable(args: argparse.Namespace,
                           ) -> Iterator[tuple[Config, sa.Engine | None]]:
    """As _database, but a database that cannot be opened gives None and a warning."""
    import sqlalchemy as sa

    from snapshotter.config import load_config

    with ExitStack() as stack:
        try:
            config, engine = stack.enter_context(_database(args))
        except ConfigError:
            raise
        except (SnapshotterError, sa.exc.SQLAlchemyError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("cannot open the database (%s); logging in without it",
                        redact.redact(first))
            yield load_config(args.config), None
            return
        yield config, engine


def cmd_login(args: argparse.Namespace) -> int:
    from snapshotter import pipeline
    from snapshotter.ops import login
    from snapshotter.sessions import utc_now

    if args.check:
        from snapshotter.ops import notify

        config = _config(args)
        notify.check(config)
        results = login.check_manual_sessions(config, args.account or None, utc_now)
        if not results:
            print("no account uses auth: manual")
    else:
        # The database holds the ledger's copy of a rejection, which a login clears.
        with _database_if_reachable(args) as (config, engine):
            results = pipeline.login_accounts(config, args.account or None,
                                              login.TerminalPrompt(), utc_now, engine)
        if not results:
            print("no account uses auth: manual; name one with --account to log it in now")
    for r in results:
        if r.ok:
            print(f"{r.account}: {r.message}")
        else:
            print(f"error: account {r.account}: {r.message}", file=sys.stderr)
    if any(r.rejected for r in results):
        return LoginRejected.exit_code
    return ExitCode.OK if all(r.ok for r in results) else ExitCode.FAILURE


@dataclass(frozen=True)
class Report:
    """One `snapshotter report NAME`: its line of help, the options it takes (by dest,
    as in REPORT_OPTIONS; every report takes --format and the global options) and the
    function that prints it. The parser's choices come from REPORTS, and any other
    option given is a usage error naming it and the report."""

    name: str
    help: str
    options: frozenset[str]
    run: Callable[[argparse.Namespace], int]


# The options a report may take: dest -> how a user writes it.
REPORT_OPTIONS = {"symbol": "SYMBOL", "account": "--account", "start": "--from",
                  "end": "--to", "benchmark": "--benchmark", "fy": "--fy", "xirr": "--xirr",
                  "group": "--group"}
_WINDOW = frozenset({"account", "start", "end"})


def reports_taking(dest: str) -> str:
    """The reports that take the option ``dest``, in words: ``report pnl and tax``."""
    names = [r.name for r in REPORTS.values() if dest in r.options]
    return "report " + (f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1
                        else names[0])


def cmd_report(args: argparse.Namespace) -> int:
    report = REPORTS[args.kind]
    for dest, written in REPORT_OPTIONS.items():
        if dest not in report.options and getattr(args, dest, None) not in (None, False):
            if dest == "symbol":
                raise UsageError(f"report {report.name} takes no SYMBOL ({args.symbol!r}): "
                                 "a symbol is for `report history SYMBOL` and "
                                 "`report holdings [SYMBOL]`")
            raise UsageError(f"report {report.name} takes no {written}: {written} is for "
                             f"{reports_taking(dest)}")
    return report.run(args)


def _view_report(args: argparse.Namespace,
                 build: Callable[[sa.Engine, Filters], pd.DataFrame]) -> pd.DataFrame:
    """A report of the views over the window: the rows ``build`` reads, each account's
    label beside it; no rows, said why when the question cannot have any. Returns the
    rows shown."""
    from snapshotter.reports.query import Filters
    from snapshotter.reports.render import with_labels

    with _database(args, create=False) as (config, engine):
        _known_accounts(config, engine, args.account or ())
        filters = Filters(tuple(a.strip().upper() for a in args.account or ()),
                          args.start, args.end)
        frame = build(engine, filters)
        why = None
        if frame.empty:
            from snapshotter.reports.empty import why_empty

            why = why_empty(engine, filters, args.symbol)
    if why and args.format == "table":
        print(f"(no rows: {why})")
    else:
        _print_report(with_labels(frame, _labels(config)), args.format)
        if why:  # stdout stays machine-readable
            print(f"note: no rows: {why}", file=sys.stderr)
    return frame


def _report_summary(args: argparse.Namespace) -> int:
    from snapshotter.reports import summary

    def build(engine: sa.Engine, filters: Filters) -> pd.DataFrame:
        frame = summary.report_summary(engine, filters)
        if args.format == "table" and not frame.empty:
            frame = frame[summary.SUMMARY_TABLE_COLUMNS]
        return frame

    shown = _view_report(args, build)
    if args.format == "table" and not shown.empty:
        print(f"note: {summary.SUMMARY_NOTE}")
    return ExitCode.OK


def _report_holdings(args: argparse.Namespace) -> int:
    from snapshotter.reports import daily

    def build(engine: sa.Engine, filters: Filters) -> pd.DataFrame:
        frame = daily.holdings(engine, filters)
        if args.symbol:
            chosen = frame["tradingsymbol"].str.upper() == args.symbol.strip().upper()
            frame = frame[chosen].reset_index(drop=True)
        return daily.with_xirr(engine, frame) if args.xirr else frame

    _view_report(args, build)
    return ExitCode.OK


def _report_pnl(args: argparse.Namespace) -> int:
    from snapshotter.reports import daily

    _view_report(args, daily.pnl)
    return ExitCode.OK


def _report_history(args: argparse.Namespace) -> int:
    from snapshotter.reports import daily

    if not args.symbol:
        raise UsageError("report history needs a SYMBOL, e.g. "
                         "`snapshotter report history INFY`")
    _view_report(args, lambda engine, filters: daily.history(engine, args.symbol, filters))
    return ExitCode.OK


def _report_performance(args: argparse.Namespace) -> int:
    from snapshotter.reports import performance
    from snapshotter.reports.query import Filters
    from snapshotter.reports.render import with_labels
    from snapshotter.sessions import calendar_for

    if args.group is not None and args.account:
        raise UsageError("report performance takes --group or --account, not both: "
                         "--group shows the group's row and its members'")
    with _database(args, create=False) as (config, engine):
        filters = Filters(tuple(a.strip().upper() for a in args.account or ()),
                          args.start, args.end)
        if args.group is not None:
            name, members = _group(config, args.group)
            result = performance.group_performance(engine, calendar_for(config), name,
                                                   members, filters, args.benchmark)
        else:
            # `--account ALL`: the all-accounts row alone
            _known_accounts(config, engine, [a for a in args.account or ()
                                             if a.strip().upper() != "ALL"])
            result = performance.performance(engine, calendar_for(config), filters,
                                             args.benchmark)
        labels = _labels(config)
        result.frame = with_labels(result.frame, labels)
        if args.group is not None and "label" in result.frame.columns \
                and not result.frame.empty:
            result.frame.loc[0, "label"] = None  # the group's row, not an account's
    print(performance.render(result, args.format))
    if args.format != "table":  # stdout stays machine-readable
        for note in [*result.notes, *performance.non_finite_notes(result)]:
            print(f"note: {note}", file=sys.stderr)
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return ExitCode.OK


def _group(config: Config, wanted: str) -> tuple[str, tuple[str, ...]]:
    """The group ``wanted`` names (as written, else the one equal ignoring case) and its
    members; an unknown one is a UsageError listing the groups."""
    groups = config.groups()
    wanted = wanted.strip()
    matches = [g for g in groups if g == wanted] or \
        [g for g in groups if g.upper() == wanted.upper()]
    if len(matches) != 1:
        raise UsageError(f"no group {wanted!r} in {config.path} (accounts[].group; "
                         f"known: {', '.join(groups) or 'none'})")
    return matches[0], groups[matches[0]]


def _report_tax(args: argparse.Namespace) -> int:
    from snapshotter.reports import tax
    from snapshotter.reports.render import with_labels

    if not args.fy:
        raise UsageError("report tax needs --fy, e.g. `snapshotter report tax --fy 2025-26`")
    with _database(args, create=False) as (config, engine):
        _known_accounts(config, engine, args.account or ())
        frame = tax.tax(engine, args.fy, tuple(a.strip().upper() for a in args.account or ()))
        frame = with_labels(frame, _labels(config))
    note = tax.tax_note(args.fy)
    if args.format == "table":
        print(f"{note}\n")
        _print_report(frame, args.format)
    else:  # stdout stays machine-readable
        _print_report(frame, args.format)
        print(f"note: {note}", file=sys.stderr)
    return ExitCode.OK


REPORTS = {report.name: report for report in (
    Report("summary", "each account, and ALL, over the window: value, P&L, return",
           _WINDOW, _report_summary),
    Report("holdings", "each account's holdings on the last session in the window",
           _WINDOW | {"symbol", "xirr"}, _report_holdings),
    Report("pnl", "each account's daily value, cash flow and market P&L", _WINDOW,
           _report_pnl),
    Report("history", "one symbol's holding, session by session", _WINDOW | {"symbol"},
           _report_history),
    Report("performance", "returns (NAV, TWR, XIRR, CAGR), drawdown, volatility",
           _WINDOW | {"benchmark", "group"}, _report_performance),
    Report("tax", "realised P&L and dividends of a financial year (an estimate)",
           frozenset({"account", "fy"}), _report_tax),
)}


def _labels(config: Config) -> dict[str, str]:
    """accounts[].label by user id: shown beside the account in reports and exports."""
    return {a.user_id: a.label for a in config.accounts if a.label}


def _print_report(frame: pd.DataFrame, fmt: str) -> None:
    """A report's rows, and a note (on stderr) for each figure left empty because it is
    not a finite number."""
    from snapshotter.reports.render import non_finite, render

    print(render(frame, fmt))
    for note in non_finite(frame)[1]:
        print(f"note: {note}", file=sys.stderr)


def _closes_line(stored: StoredCloses, verb: str, by: str = "") -> str:
    changed = f", {stored.changed} changed" if stored.changed else ""
    closes = "close" if stored.count == 1 else "closes"
    return (f"{stored.name}: {stored.count} {closes} {verb}{by} ({stored.first} .. "
            f"{stored.last}), {stored.new} new{changed}")


def cmd_benchmark_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from snapshotter.normalize.benchmark import benchmark_name
    from snapshotter.pipeline import benchmark

    name = benchmark_name(args.name)
    closes = benchmark.read_index_file(Path(args.file))  # a bad file: before the database
    with _database(args, writable=True) as (_, engine):
        stored = benchmark.store_closes(engine, name, closes)
    print(_closes_line(stored, "imported"))
    return ExitCode.OK


def cmd_benchmark_fetch(args: argparse.Namespace) -> int:
    from snapshotter.pipeline import benchmark

    with _database(args, writable=True) as (config, engine):
        fetched = benchmark.fetch_closes(config, engine, args.name, account=args.account,
                                         start=args.start, end=args.end)
    by = f" from Kite with account {fetched.account}"
    if not fetched.stored.count:
        print(f"{fetched.stored.name}: no closes{by} for {fetched.start} .. {fetched.end} "
              "(no session in that range)")
    else:
        print(_closes_line(fetched.stored, "fetched", by))
    return ExitCode.OK


def cmd_import(args: argparse.Namespace) -> int:
    from snapshotter.pipeline import imports
    from snapshotter.sessions import utc_now

    config = _config(args)
    account = config.account(args.account.strip().upper()).user_id  # unknown: exit 2
    with _database(args, config=config, writable=True) as (config, engine):
        if args.kind == "forget":
            result = imports.forget_files(config, engine, args.files, account)
        else:
            result = imports.import_files(config, engine, args.kind, args.files, account,
                                          clock=utc_now)
    for done in result.files:
        print(done.line())
    for line in result.forgotten:
        print(line)
    for warning in result.warnings:
        print(f"warning: {redact.redact(warning)}", file=sys.stderr)
    for error in result.errors:
        print(f"error: {redact.redact(error)}", file=sys.stderr)
    if result.lots is not None:
        print(result.lots.line())
    if result.lost:
        print(f"error: {redact.redact(result.lost)}", file=sys.stderr)
        return ExitCode.DATABASE_UNAVAILABLE
    return ExitCode.USAGE if result.errors else ExitCode.OK


def cmd_household_leave(args: argparse.Namespace) -> int:
    from snapshotter.store import household

    account = args.account.strip().upper()
    with _database(args, writable=True) as (config, engine):
        _known_accounts(config, engine, [account])
        left = household.leave(engine, account, args.left_on)
    print(f"{left.account} leaves the household on {left.left_on}: its last value counted, "
          f"{left.last_value:,.2f} (snapshot of {left.last_date}), is a withdrawal from the "
          "all-accounts figures on the first session from then")
    return ExitCode.OK


def cmd_household_rejoin(args: argparse.Namespace) -> int:
    from snapshotter.store import household

    account = args.account.strip().upper()
    with _database(args, writable=True) as (config, engine):
        _known_accounts(config, engine, [account])
        left_on = household.rejoin(engine, account)
    print(f"{account} counts in the household again (it had left on {left_on})" if left_on
          else f"{account} had not left the household: nothing to undo")
    return ExitCode.OK


def cmd_export(args: argparse.Namespace) -> int:
    from snapshotter.reports import export

    with _database(args, create=False) as (config, engine):
        out = export.output_dir(args.out)
        written = export.export(engine, out, args.format, _labels(config))
    print(f"wrote {len(written)} files to {out.resolve()}")
    return ExitCode.OK


def cmd_chart(args: argparse.Namespace) -> int:
    from snapshotter.reports import chart

    account = args.account.strip().upper() if args.account else None
    if args.benchmark and args.per_account:
        raise UsageError("--benchmark draws one NAV line; leave out --per-account")
    path = chart.output_path(args.out, account, args.per_account, args.benchmark)
    with _database(args, create=False) as (config, engine):
        _known_accounts(config, engine, [account] if account else [])
        if args.benchmark:
            drawn = chart.build_benchmark(engine, args.benchmark, account)
        else:
            drawn = chart.build(engine, account, args.per_account)
    print(f"wrote {chart.save(drawn, path)}")
    if drawn.note:
        print(f"note: {drawn.note}")
    return ExitCode.OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from snapshotter import demo

    demo.simulate(port=args.port, accounts=args.accounts, latency=args.latency,
                  config_out=args.write_config, force=args.force, auth=args.auth)
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> int:
    from snapshotter import demo

    if args.port is not None and not args.serve:
        raise UsageError("demo: --port is for --serve")
    return demo.run_demo(out_dir=args.out, accounts=args.accounts, days=args.days,
                         auth=args.auth, serve=args.serve, port=args.port)
