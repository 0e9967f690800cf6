"""The command line's options: one subcommand per function of ``commands``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from typing import Any

from snapshotter import __version__
from snapshotter.cli import commands


def _account_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", action="append", metavar="USER_ID",
                        help="only this account (repeatable)")


def _financial_year(text: str) -> str:
    """``2025-26``: India's financial year (April to March)."""
    start, _, end = text.strip().partition("-")
    if not (len(start) == 4 and start.isdigit() and len(end) == 2 and end.isdigit()
            and (int(start) + 1) % 100 == int(end)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a financial year like 2025-26")
    return text.strip()


def _command(sub: Any, name: str, func: Callable[[argparse.Namespace], int],
             help: str, description: str | None = None) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help,
                                                     description=description)
    parser.set_defaults(func=func)
    return parser


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

    run = _command(sub, "run", commands.cmd_run,
                   "snapshot every account now (applies migrations first)",
                   "Snapshot the latest NSE session that has opened, for every configured "
                   "account (or those given with --account).")
    _account_option(run)
    run.add_argument("--force", action="store_true",
                     help="replace a final snapshot of this session too")
    run.add_argument("--from-raw", action="store_true",
                     help="re-derive stored rows from the saved raw payloads (offline)")

    dbp = sub.add_parser("db", help="database maintenance")
    dbsub = dbp.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _command(dbsub, "upgrade", commands.cmd_db_upgrade, "apply pending migrations")

    _command(sub, "daemon", commands.cmd_daemon,
             "run every NSE session after the close (APScheduler), catching up",
             "Long-lived scheduler: snapshots each session at schedule.time (or the "
             "session's close plus 30 min), catches up missed sessions on start and after "
             "sleep, retries transient failures. SIGTERM/SIGINT stop it cleanly.")
    _command(sub, "status", commands.cmd_status,
             "last snapshot, last failure and next run per account",
             "Exit code 1 when an account has no complete snapshot of the latest session "
             "that has opened (for monitoring).")

    sd = _command(sub, "systemd", commands.cmd_systemd, "print hardened systemd unit files",
                  "Units for the one-shot job on a timer, or the daemon.")
    sd.add_argument("--mode", choices=["timer", "daemon"], default="timer")
    sd.add_argument("--user", help="run as this user (default: DynamicUser=yes)")
    sd.add_argument("--executable", help="path of the snapshotter command")
    sd.add_argument("--times", default="16:30,20:30", help="timer run times, IST")
    sd.add_argument("--output-dir", metavar="DIR", help="write the files here instead")

    rp = _command(sub, "report", commands.cmd_report,
                  "summary, holdings, P&L or one symbol's history",
                  "Reports from the SQL views (see README: Views).")
    rp.add_argument("kind", choices=["summary", "holdings", "pnl", "history", "tax"])
    rp.add_argument("symbol", nargs="?", help="tradingsymbol (report history)")
    _account_option(rp)
    rp.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD")
    rp.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD")
    rp.add_argument("--format", choices=["table", "csv", "json"], default="table")
    rp.add_argument("--fy", type=_financial_year, metavar="YYYY-YY",
                    help="report tax: the financial year, e.g. 2025-26")
    rp.add_argument("--xirr", action="store_true",
                    help="report holdings: each holding's XIRR from its open FIFO lots "
                    "(needs `snapshotter import tradebook`)")

    imp = _command(sub, "import", commands.cmd_import,
                   "import Console exports: tradebook, ledger, dividends, actions",
                   "Stores Zerodha Console's exports for one account (re-imports add "
                   "nothing twice), then rebuilds its FIFO lots. tradebook: the tradebook "
                   "CSV or XLSX; ledger: the funds statement CSV; dividends: the equity "
                   "dividends XLSX; actions: your own CSV of splits and bonuses "
                   "(README: Console imports).")
    imp.add_argument("kind", choices=["tradebook", "ledger", "dividends", "actions"])
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--account", required=True, metavar="USER_ID",
                     help="the configured account the files belong to")

    ex = _command(sub, "export", commands.cmd_export,
                  "write every table and view as CSV or Parquet")
    ex.add_argument("--format", choices=["csv", "parquet"], default="csv")
    ex.add_argument("--out", required=True, metavar="DIR")

    ch = _command(sub, "chart", commands.cmd_chart,
                  "PNG of total value, cumulative market P&L, drawdown")
    ch.add_argument("--out", required=True, metavar="FILE.png")
    ch.add_argument("--account", metavar="USER_ID", help="one account (default: all)")

    lg = _command(sub, "login", commands.cmd_login,
                  "log in now and cache the session (auth: manual; prompts)",
                  "Prompts for what each account needs (password and the current code from "
                  "your authenticator app; for Kite Connect, the redirected URL or "
                  "request_token), logs in and caches the session for scheduled runs. "
                  "Default: every auth: manual account.")
    _account_option(lg)
    lg.add_argument("--check", action="store_true",
                    help="only check that manual accounts' cached sessions still work "
                    "(pings healthcheck_url/fail when not); never prompts")

    sim = _command(sub, "simulate", commands.cmd_simulate,
                   "serve the Kite simulator on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--accounts", type=int, default=3, help="simulated accounts")
    sim.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    sim.add_argument("--write-config", metavar="PATH",
                     help="write a config (mode 0600) pointing at the simulator")
    sim.add_argument("--force", action="store_true",
                     help="with --write-config: replace an existing file")

    demo = _command(sub, "demo", commands.cmd_demo,
                    "run the real job against the simulator into SQLite")
    demo.add_argument("--out", default="demo-output", help="directory for the demo database")
    demo.add_argument("--accounts", type=int, default=3, help="simulated accounts")
    demo.add_argument("--days", type=int, default=60,
                      help="NSE sessions of history to simulate and snapshot (default 60)")
    return parser
