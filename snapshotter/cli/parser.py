"""The command line's options: one subcommand per function of ``commands``.

Conventions (docs/configuration.md: Command line conventions): the global options work
before and after the command; a mistyped command, choice or option gets the closest one
suggested and that command's usage; every exit code is one of ``ExitCode``.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, NoReturn

from snapshotter import __version__
from snapshotter.cli import commands
from snapshotter.errors import ExitCode

_INVALID_CHOICE = re.compile(r"^argument (.+?): invalid choice: '([^']*)'")


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 2 and suggest the closest command, choice or option. No option
    is taken from its abbreviation (`status --json` is not `--json-logs`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {self._with_hint(message)}\n")

    def _with_hint(self, message: str) -> str:
        """``message`` with "did you mean" the closest command, choice or option."""
        bad = _INVALID_CHOICE.search(message)
        if bad:
            known = [str(c) for a in self._actions if a.choices and bad.group(1) in
                     ("/".join(a.option_strings), a.metavar, a.dest) for c in a.choices]
            close = difflib.get_close_matches(bad.group(2), known, n=1)
            if close:
                at = bad.end()
                return f"{message[:at]}: did you mean {close[0]!r}?{message[at:]}"
            return message
        if message.startswith("unrecognized arguments: "):
            # compared without the dashes, which every option shares
            options = {s.lstrip("-"): s for a in self._actions for s in a.option_strings}
            for word in message.removeprefix("unrecognized arguments: ").split():
                if word.startswith("-"):
                    name = word.split("=", 1)[0].lstrip("-")
                    close = difflib.get_close_matches(name, list(options), n=1)
                    if close:
                        return f"{message} (did you mean {options[close[0]]}?)"
        return message


def parse_args(parser: argparse.ArgumentParser,
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; an option the command does not know is reported with that
    command's usage (argparse would print the top-level one)."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        owner: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        owner.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--config, -v and --json-logs, on the top-level parser and every command: given
    after the command they must not be reset by the command's defaults (SUPPRESS)."""
    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument("--config", metavar="PATH",
                       default=None if top else argparse.SUPPRESS,
                       help="config file (default: $SNAPSHOTTER_CONFIG, else ./config.yaml)")
    group.add_argument("-v", "--verbose", action="store_true",
                       default=False if top else argparse.SUPPRESS, help="debug logging")
    group.add_argument("--json-logs", action="store_true",
                       default=False if top else argparse.SUPPRESS,
                       help="log JSON lines on stderr")


def _exit_codes() -> str:
    lines = ["exit codes (docs/operations.md: Exit codes):"]
    for code in ExitCode:
        lines += textwrap.wrap(code.meaning, width=76, initial_indent=f"  {code.value:<5}",
                               subsequent_indent=" " * 7)
    return "\n".join(lines)


def _account_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", action="append", metavar="USER_ID",
                        help="only this account (repeatable)")


# The dates a date option takes: far enough for any history, near enough that a day or
# a year added to one stays a date (--from 9999-12-20 overflowed).
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2199, 12, 31)


def _day(text: str) -> date:
    """A date option's ``YYYY-MM-DD``, between FIRST_DAY and LAST_DAY."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: give YYYY-MM-DD, e.g. 2026-03-31") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range (a date from {FIRST_DAY} to {LAST_DAY})")
    return day


def _financial_year(text: str) -> str:
    """``2025-26``: India's financial year (April to March), within the dates' range."""
    start, _, end = text.strip().partition("-")
    if not (len(start) == 4 and start.isdigit() and len(end) == 2 and end.isdigit()
            and (int(start) + 1) % 100 == int(end)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a financial year like 2025-26")
    if not FIRST_DAY.year <= int(start) < LAST_DAY.year:
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range (a financial year from {FIRST_DAY.year}-"
            f"{(FIRST_DAY.year + 1) % 100:02d} to {LAST_DAY.year - 1}-{LAST_DAY.year % 100:02d})")
    return text.strip()


def _subcommand(sub: Any, name: str, help: str,
                description: str | None = None) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help,
                                                     description=description)
    _global_options(parser, top=False)
    parser.set_defaults(command_parser=parser)
    return parser


def _command(sub: Any, name: str, func: Callable[[argparse.Namespace], int],
             help: str, description: str | None = None) -> argparse.ArgumentParser:
    parser = _subcommand(sub, name, help, description)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="snapshotter",
        description="Keep a dated, queryable history of Zerodha (Kite) accounts.",
        epilog=_exit_codes(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"snapshotter {__version__}")
    _global_options(parser, top=True)
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

    dbp = _subcommand(sub, "db", "database maintenance")
    dbsub = dbp.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    _command(dbsub, "upgrade", commands.cmd_db_upgrade, "apply pending migrations")

    _command(sub, "daemon", commands.cmd_daemon,
             "run every NSE session after the close (APScheduler), catching up",
             "Long-lived scheduler: snapshots each session at schedule.time (or the "
             "session's close plus 30 min), catches up missed sessions on start and after "
             "sleep, retries transient failures. SIGTERM/SIGINT stop it cleanly.")
    st = _command(sub, "status", commands.cmd_status,
                  "last snapshot, last failure and next run per account",
                  "Exit code 1 when an account has no complete snapshot of the latest "
                  "session that has opened (for monitoring).")
    st.add_argument("--format", choices=["table", "json"], default="table")
    st.add_argument("--json", dest="format", action="store_const", const="json",
                    help="the same as --format json")

    sd = _command(sub, "systemd", commands.cmd_systemd, "print hardened systemd unit files",
                  "Units for the one-shot job on a timer, or the daemon; --mode serve: "
                  "the dashboard's unit (snapshotter-serve.service), to run beside either.")
    sd.add_argument("--mode", choices=["timer", "daemon", "serve"], default="timer")
    sd.add_argument("--user", help="run as this user (default: DynamicUser=yes)")
    sd.add_argument("--executable", help="path of the snapshotter command")
    sd.add_argument("--times", default="16:30,20:30", help="timer run times, IST")
    sd.add_argument("--output-dir", metavar="DIR", help="write the files here instead")

    rp = _command(sub, "report", commands.cmd_report,
                  "summary, holdings, P&L, one symbol's history, returns or tax",
                  "Reports from the SQL views (see docs/schema.md: Views). `performance`: per "
                  "account and for ALL accounts, the NAV return, TWR, XIRR, CAGR, "
                  "drawdown, volatility and sessions missing over the window "
                  "(`--account ALL`: only the all-accounts row; `--group NAME`: a group "
                  "of accounts (accounts[].group) as one, then each of them). `tax`: "
                  "realised P&L "
                  "of a financial year from imported trades (an estimate).")
    rp.add_argument("kind", choices=list(commands.REPORTS),
                    help="; ".join(f"{r.name}: {r.help}" for r in commands.REPORTS.values()))
    rp.add_argument("symbol", nargs="?",
                    help="tradingsymbol: report history's, or only it in report holdings")
    _account_option(rp)
    rp.add_argument("--from", dest="start", type=_day, metavar="YYYY-MM-DD")
    rp.add_argument("--to", dest="end", type=_day, metavar="YYYY-MM-DD")
    rp.add_argument("--format", choices=["table", "csv", "json"], default="table")
    rp.add_argument("--benchmark", metavar="NAME",
                    help=f"{commands.reports_taking('benchmark')}: compare with this "
                    "index's closes (benchmark_daily)")
    rp.add_argument("--group", metavar="NAME",
                    help=f"{commands.reports_taking('group')}: this group's accounts "
                    "(accounts[].group) together, as ALL is every account's, then each")

    bm = _subcommand(sub, "benchmark", "daily closes of an index (NIFTY 50...) to compare "
                     "returns with: import a CSV or fetch from Kite",
                     "Daily closes of a benchmark index, kept in table benchmark_daily "
                     "under NAME (trimmed, upper-cased).")
    bmsub = bm.add_subparsers(dest="benchmark_command", metavar="ACTION", required=True)
    bi = _command(bmsub, "import", commands.cmd_benchmark_import,
                  "daily closes from an index CSV (as NSE's index pages export it)",
                  "Reads the Date and Close columns (others ignored) of a CSV such as "
                  "niftyindices.com or nseindia.com export (dates like 01 Dec 2026, "
                  "01-Dec-2026 or 2026-12-01) and upserts them. A bad file is refused whole "
                  "(exit 2).")
    bi.add_argument("name", metavar="NAME", help="benchmark name, e.g. NIFTY50")
    bi.add_argument("file", metavar="FILE.csv")
    bf = _command(bmsub, "fetch", commands.cmd_benchmark_fetch,
                  "daily closes from Kite's historical data (a web session)",
                  "Reads daily candles of a known index (NIFTY50, NIFTYBANK) through an "
                  "account's Kite session, logging in as `run` does, and upserts the closes. "
                  "Kite Connect's Personal plan has no market data: use `benchmark import` "
                  "(exit 2).")
    bf.add_argument("name", metavar="NAME", help="NIFTY50 or NIFTYBANK")
    bf.add_argument("--account", metavar="USER_ID",
                    help="the account whose session reads it (default: the first web one)")
    bf.add_argument("--from", dest="start", type=_day, metavar="YYYY-MM-DD",
                    help="first date (default: the latest stored close, else 14 days before "
                    "the first snapshot, else a year ago)")
    bf.add_argument("--to", dest="end", type=_day, metavar="YYYY-MM-DD",
                    help="last date (default: today)")
    rp.add_argument("--fy", type=_financial_year, metavar="YYYY-YY",
                    help=f"{commands.reports_taking('fy')}: the financial year, e.g. 2025-26")
    rp.add_argument("--xirr", action="store_true",
                    help=f"{commands.reports_taking('xirr')}: each holding's XIRR from its "
                    "open FIFO lots (needs `snapshotter import tradebook`)")

    hh = _subcommand(sub, "household", "which accounts the all-accounts (ALL) figures count",
                     "An account counts in the all-accounts figures (portfolio_daily_all, "
                     "nav_daily_all, report performance's ALL, chart) from its first "
                     "complete snapshot, at its last value on a session it missed, until "
                     "it leaves: then its last value leaves as a withdrawal (docs/schema.md: "
                     "Accounts joining, missing a session, leaving).")
    hhsub = hh.add_subparsers(dest="household_command", metavar="ACTION", required=True)
    hl = _command(hhsub, "leave", commands.cmd_household_leave,
                  "an account that stopped for good leaves the household",
                  "From the first session on or after --on, the account's last value "
                  "counted leaves the all-accounts figures as a withdrawal, and its "
                  "snapshots from --on on count no more.")
    hl.add_argument("account", metavar="USER_ID")
    hl.add_argument("--on", dest="left_on", type=date.fromisoformat, metavar="YYYY-MM-DD",
                    help="the day it left (default: the day after its last complete "
                    "snapshot)")
    hr = _command(hhsub, "rejoin", commands.cmd_household_rejoin,
                  "undo `household leave`: the account counts again")
    hr.add_argument("account", metavar="USER_ID")

    imp = _command(sub, "import", commands.cmd_import,
                   "import Console exports: tradebook, ledger, dividends, actions",
                   "Stores Zerodha Console's exports for one account (re-imports add "
                   "nothing twice), then rebuilds its FIFO lots. tradebook: the tradebook "
                   "CSV or XLSX; ledger: the funds statement CSV; dividends: the equity "
                   "dividends XLSX; actions: your own CSV of splits and bonuses; forget: "
                   "removes what imported files added (FILE: the file, matched by its "
                   "bytes, or the name it was imported under) (docs/console-imports.md).")
    imp.add_argument("kind", choices=["tradebook", "ledger", "dividends", "actions",
                                      "forget"])
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--account", required=True, metavar="USER_ID",
                     help="the configured account the files belong to")

    ex = _command(sub, "export", commands.cmd_export,
                  "write every table and view as CSV or Parquet")
    ex.add_argument("--format", choices=["csv", "parquet"], default="csv")
    ex.add_argument("--out", required=True, metavar="DIR",
                    help="directory for the files (created when missing)")

    ch = _command(sub, "chart", commands.cmd_chart,
                  "PNG of total value, cumulative market P&L, drawdown")
    ch.add_argument("--out", required=True, metavar="FILE.png|DIR",
                    help="the image file, or a directory (existing, or ending in /) to "
                    "write portfolio.png (portfolio-ACCOUNT.png, portfolio-per-account.png, "
                    "portfolio-vs-NAME.png) in")
    ch.add_argument("--account", metavar="USER_ID", help="one account (default: all, summed)")
    ch.add_argument("--per-account", action="store_true",
                    help="one line per account instead of their sum")
    ch.add_argument("--benchmark", metavar="NAME",
                    help="instead: the NAV against this index, both rebased to 100")

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

    sv = _command(sub, "serve", commands.cmd_serve,
                  "a read-only web dashboard over the database (and the daily Kite login)",
                  "Serves the history as web pages (docs/dashboard.md) on 127.0.0.1 by "
                  "default. Another address needs serve.password or serve.password_file. "
                  "Never migrates the database and needs none of the accounts' secrets.")
    sv.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
    sv.add_argument("--port", type=int, help="port (default: serve.port, 8000)")

    sim = _command(sub, "simulate", commands.cmd_simulate,
                   "serve the Kite simulator on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--accounts", type=int, default=3, help="simulated accounts")
    sim.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    sim.add_argument("--write-config", metavar="PATH",
                     help="write a config (mode 0600) pointing at the simulator")
    sim.add_argument("--force", action="store_true",
                     help="with --write-config: replace an existing file")
    sim.add_argument("--auth", choices=["web", "connect"], default="web",
                     help="with --write-config: the accounts' login; connect: each through "
                     "its simulated Kite Connect app (api_key/api_secret written)")

    demo = _command(sub, "demo", commands.cmd_demo,
                    "run the real job against the simulator into SQLite")
    demo.add_argument("--out", default="demo-output", help="directory for the demo database")
    demo.add_argument("--accounts", type=int, default=3, help="simulated accounts")
    demo.add_argument("--days", type=int, default=60,
                      help="NSE sessions of history to simulate and snapshot (default 60)")
    demo.add_argument("--auth", choices=["web", "connect"], default="web",
                      help="the accounts' login: web, or connect (Kite Connect apps, "
                      "simulated)")
    demo.add_argument("--serve", action="store_true",
                      help="then serve the dashboard over the demo database on 127.0.0.1 "
                      "until Ctrl-C")
    demo.add_argument("--port", type=int,
                      help="with --serve: the dashboard's port (default: serve.port, 8000)")
    return parser
