"""Command line: parses options and calls one library function per command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import date

import sqlalchemy as sa

from snapshotter import __version__, logs, redact
from snapshotter.config import Config, load_config
from snapshotter.errors import (
    ConfigError,
    DatabaseUnavailable,
    LoginRejected,
    SnapshotterError,
)
from snapshotter.ops import health
from snapshotter.store import engine as db
from snapshotter.store import migrate

log = logging.getLogger("snapshotter")


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    redact.register(*config.secrets())
    for warning in config.warnings:
        log.warning("%s", warning)
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    elif config.log_level != "INFO":
        logging.getLogger().setLevel(config.log_level)
    return config


@contextmanager
def _database(args: argparse.Namespace, *, config: Config | None = None,
              deadline: float | None = None,
              writable: bool = False) -> Iterator[tuple[Config, sa.Engine]]:
    """The configured database, migrated to head (and checked writable when asked);
    disposed of afterwards. An unreachable database is one line and exit 75."""
    config = config or _config(args)
    url = config.database_url
    engine = db.make_engine(url)
    try:
        try:
            migrate.upgrade(url, engine, deadline=deadline)
            if writable:
                db.check_writable(engine, url)
        except sa.exc.SQLAlchemyError as exc:
            if db.is_connection_error(exc):
                raise db.unavailable(exc, url) from None
            raise
        try:
            yield config, engine
        except sa.exc.SQLAlchemyError as exc:
            if db.is_connection_error(exc):
                raise db.unavailable(exc, url) from None
            raise
    finally:
        engine.dispose()


def cmd_run(args: argparse.Namespace) -> int:
    import time

    config = _config(args)
    # One deadline for the whole run, waiting for another run's lock included.
    deadline = time.monotonic() + config.kite.run_timeout
    try:
        return _run(args, config, deadline)
    except Exception as exc:
        # Every failed run pings the failure URL, the database unreachable included.
        text = str(exc) if isinstance(exc, SnapshotterError) else type(exc).__name__
        health.ping(config.healthcheck_url, ok=False, message=redact.redact(text))
        raise


def _run(args: argparse.Namespace, config: Config, deadline: float) -> int:
    from snapshotter import pipeline

    with _database(args, config=config, deadline=deadline, writable=not args.from_raw) \
            as (config, engine):
        if args.from_raw:
            replayed = pipeline.replay_raw(
                engine, [a.strip().upper() for a in args.account] if args.account else None)
            print(f"replayed {replayed.snapshots} snapshot(s) from raw payloads, "
                  f"{replayed.rows} row(s) re-derived")
            for failure in replayed.failures:
                print(f"error: {redact.redact(failure)}", file=sys.stderr)
            return 1 if replayed.failures else 0
        result = pipeline.run_snapshot(config, engine, accounts=args.account or None,
                                       force=args.force, on_outcome=_print_outcome,
                                       deadline=deadline)
        if all(o.status == pipeline.SKIPPED for o in result.outcomes):
            print(f"nothing to do: every account has a final snapshot of the "
                  f"{result.session.day} session")
        # Ping on every run, "nothing to do" included: a daily check must not go quiet
        # on weekends and holidays.
        summary = ", ".join(f"{o.account}={o.status}" for o in result.outcomes)
        health.ping(config.healthcheck_url, ok=result.exit_code == 0,
                    message=f"session {result.session.day}: {summary}")
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
    config = _config(args)
    applied = migrate.upgrade(config.database_url)
    print("database migrated to head" if applied else "database already at head")
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    from snapshotter.ops.daemon import Daemon, run_forever

    with _database(args) as (config, engine):
        return run_forever(Daemon(config, engine))


def cmd_status(args: argparse.Namespace) -> int:
    from snapshotter.ops import status
    from snapshotter.sessions import utc_now

    with _database(args) as (config, engine):
        report = status.build_status(config, engine, utc_now())
    print(status.render(report))
    return 0 if report.healthy else 1


def cmd_systemd(args: argparse.Namespace) -> int:
    import os
    import shutil
    from pathlib import Path

    from snapshotter.ops.systemd_units import (
        UnitOptions,
        config_accounts,
        install_warnings,
        render_units,
    )

    source = args.config or os.environ.get("SNAPSHOTTER_CONFIG")
    # Not _config(): the service reads the secret files (LoadCredential=), not this command.
    accounts = config_accounts(source) if source else []
    config_path = str(Path(source).resolve()) if source else "/etc/snapshotter/config.yaml"
    beside_python = Path(sys.executable).with_name("snapshotter")
    exe = args.executable or (str(beside_python) if beside_python.exists() else None) \
        or shutil.which("snapshotter") or f"{sys.executable} -m snapshotter"
    options = UnitOptions(mode=args.mode, executable=exe, config_path=config_path,
                          user=args.user, run_times=args.times)
    try:
        units = render_units(options, accounts)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in install_warnings(options):
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
    return 0


@contextmanager
def _database_if_reachable(args: argparse.Namespace,
                           ) -> Iterator[tuple[Config, sa.Engine | None]]:
    """As _database, but a database that cannot be opened gives None and a warning."""
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
        config = _config(args)
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
    return 0 if all(r.ok for r in results) else 1


def cmd_report(args: argparse.Namespace) -> int:
    from snapshotter.reports import tables as reports

    with _database(args) as (_, engine):
        filters = reports.Filters(tuple(a.upper() for a in args.account or ()),
                                  args.start, args.end)
        if args.kind == "history":
            if not args.symbol:
                raise SnapshotterError("report history needs a SYMBOL, e.g. "
                                       "`snapshotter report history INFY`")
            frame = reports.history(engine, args.symbol, filters)
        else:
            frame = {"summary": reports.summary, "holdings": reports.holdings,
                     "pnl": reports.pnl}[args.kind](engine, filters)
            if args.kind == "summary" and args.format == "table" and not frame.empty:
                frame = frame[reports.SUMMARY_TABLE_COLUMNS]
        print(reports.render(frame, args.format))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from snapshotter.reports import tables as reports

    with _database(args) as (_, engine):
        written = reports.export(engine, Path(args.out), args.format)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def cmd_chart(args: argparse.Namespace) -> int:
    from pathlib import Path

    from snapshotter.reports import chart

    account = args.account.upper() if args.account else None
    with _database(args) as (_, engine):
        try:
            path = chart.write_chart(engine, Path(args.out), account)
        except ValueError as exc:
            raise SnapshotterError(str(exc)) from None
    print(f"wrote {path}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from snapshotter import demo

    demo.simulate(port=args.port, accounts=args.accounts, latency=args.latency,
                  config_out=args.write_config)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from snapshotter import demo

    return demo.run_demo(out_dir=args.out, accounts=args.accounts, days=args.days)


def _account_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", action="append", metavar="USER_ID",
                        help="only this account (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snapshotter",
        description="Keep a dated, queryable history of Zerodha (Kite) accounts.")
    parser.add_argument("--version", action="version", version=f"snapshotter {__version__}")
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $SNAPSHOTTER_CONFIG, else ./config.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--json-logs", action="store_true", help="log JSON lines on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="snapshot every account now (applies migrations first)",
                         description="Snapshot the latest NSE session that has opened, for "
                         "every configured account (or those given with --account).")
    _account_option(run)
    run.add_argument("--force", action="store_true",
                     help="replace a final snapshot of this session too")
    run.add_argument("--from-raw", action="store_true",
                     help="re-derive stored rows from the saved raw payloads (offline)")
    run.set_defaults(func=cmd_run)

    dbp = sub.add_parser("db", help="database maintenance")
    dbsub = dbp.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="apply pending migrations")
    up.set_defaults(func=cmd_db_upgrade)

    daemon = sub.add_parser(
        "daemon", help="run every NSE session after the close (APScheduler), catching up",
        description="Long-lived scheduler: snapshots each session at schedule.time (or the "
        "session's close plus 30 min), catches up missed sessions on start and after sleep, "
        "retries transient failures. SIGTERM/SIGINT stop it cleanly.")
    daemon.set_defaults(func=cmd_daemon)

    st = sub.add_parser("status", help="last snapshot, last failure and next run per account",
                        description="Exit code 1 when an account has no complete snapshot "
                        "of the latest session that has opened (for monitoring).")
    st.set_defaults(func=cmd_status)

    sd = sub.add_parser("systemd", help="print hardened systemd unit files",
                        description="Units for the one-shot job on a timer, or the daemon.")
    sd.add_argument("--mode", choices=["timer", "daemon"], default="timer")
    sd.add_argument("--user", help="run as this user (default: DynamicUser=yes)")
    sd.add_argument("--executable", help="path of the snapshotter command")
    sd.add_argument("--times", default="16:30,20:30", help="timer run times, IST")
    sd.add_argument("--output-dir", metavar="DIR", help="write the files here instead")
    sd.set_defaults(func=cmd_systemd)

    rp = sub.add_parser("report", help="summary, holdings, P&L or one symbol's history",
                        description="Reports from the SQL views (see README: Views).")
    rp.add_argument("kind", choices=["summary", "holdings", "pnl", "history"])
    rp.add_argument("symbol", nargs="?", help="tradingsymbol (report history)")
    _account_option(rp)
    rp.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD")
    rp.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD")
    rp.add_argument("--format", choices=["table", "csv", "json"], default="table")
    rp.set_defaults(func=cmd_report)

    ex = sub.add_parser("export", help="write every table and view as CSV or Parquet")
    ex.add_argument("--format", choices=["csv", "parquet"], default="csv")
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.set_defaults(func=cmd_export)

    ch = sub.add_parser("chart", help="PNG of total value, cumulative market P&L, drawdown")
    ch.add_argument("--out", required=True, metavar="FILE.png")
    ch.add_argument("--account", metavar="USER_ID", help="one account (default: all)")
    ch.set_defaults(func=cmd_chart)

    lg = sub.add_parser(
        "login", help="log in now and cache the session (auth: manual; prompts)",
        description="Prompts for what each account needs (password and the current code from "
        "your authenticator app; for Kite Connect, the redirected URL or request_token), logs "
        "in and caches the session for scheduled runs. Default: every auth: manual account.")
    _account_option(lg)
    lg.add_argument("--check", action="store_true",
                    help="only check that manual accounts' cached sessions still work "
                    "(pings healthcheck_url/fail when not); never prompts")
    lg.set_defaults(func=cmd_login)

    sim = sub.add_parser("simulate", help="serve the Kite simulator on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--accounts", type=int, default=3, help="simulated accounts")
    sim.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    sim.add_argument("--write-config", metavar="PATH",
                     help="write a config (mode 0600) pointing at the simulator")
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="run the real job against the simulator into SQLite")
    demo.add_argument("--out", default="demo-output", help="directory for the demo database")
    demo.add_argument("--accounts", type=int, default=3, help="simulated accounts")
    demo.add_argument("--days", type=int, default=60,
                      help="NSE sessions of history to simulate and snapshot (default 60)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup("INFO", json_lines=args.json_logs)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"error: {redact.redact(line)}", file=sys.stderr)
        return exc.exit_code
    except SnapshotterError as exc:
        print(f"error: {redact.redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line, no secrets
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            if db.is_connection_error(exc):
                print(f"error: {redact.redact(str(db.unavailable(exc, '')))}", file=sys.stderr)
                return DatabaseUnavailable.exit_code
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"error: database: {redact.redact(first)}", file=sys.stderr)
            return 1
        log.debug("unexpected error", exc_info=True)
        print(f"error: {type(exc).__name__}: {redact.redact(str(exc))}", file=sys.stderr)
        return 1
