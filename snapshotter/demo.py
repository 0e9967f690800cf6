"""`snapshotter demo` and `snapshotter simulate`: the real job against the bundled simulator."""

from __future__ import annotations

import errno
import logging
import os
import shlex
import shutil
import time as _time
from datetime import datetime, time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from snapshotter import pipeline
from snapshotter.config import Config, parse_config
from snapshotter.errors import UsageError
from snapshotter.progress import Progress
from snapshotter.reports.summary import (
    SUMMARY_NOTE,
    SUMMARY_TABLE_COLUMNS,
    report_summary,
    summary_table,
)
from snapshotter.sessions import ManualClock, Session, TradingCalendar, fire_time, utc_now
from snapshotter.simulator import (
    KiteSimulator,
    SimAccount,
    SimApp,
    demo_accounts,
    demo_apps,
    serve_forever_cli,
)
from snapshotter.simulator.market import DemoMarket
from snapshotter.store import engine as db
from snapshotter.store import migrate


def demo_config_dict(base_url: str, accounts: list[SimAccount], database_url: str,
                     state_dir: Path, apps: dict[str, SimApp] | None = None,
                     ) -> dict[str, Any]:
    """A config for the simulator's accounts; with ``apps`` (per user id), `auth: connect`
    through each account's Kite Connect app."""
    entries: list[dict[str, Any]] = []
    for a in accounts:
        entry: dict[str, Any] = {"user_id": a.user_id, "password": a.password,
                                 "totp_secret": a.totp_secret}
        if apps:
            app = apps[a.user_id]
            entry.update(auth="connect", api_key=app.api_key, api_secret=app.api_secret)
        entries.append(entry)
    return {
        "database": {"url": database_url},
        "kite": {"base_url": base_url, "api_root": base_url, "backoff": 0.05},
        "state_dir": str(state_dir),
        "accounts": entries,
    }


SIMULATE_HEADER = "# Written by `snapshotter simulate`: simulator accounts, not real ones.\n"
DEMO_HEADER = ("# Written by `snapshotter demo`: its database and simulated accounts (their\n"
               "# simulator has stopped), for `snapshotter --config THIS serve` and the reports.\n")


def write_private_yaml(path: Path, data: dict[str, Any], header: str = SIMULATE_HEADER,
                       ) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(header)
        yaml.safe_dump(data, fh, sort_keys=False)
    os.chmod(path, 0o600)


def simulate(*, port: int, accounts: int, latency: float, config_out: str | None,
             force: bool = False, auth: str = "web") -> None:
    """Serve the simulator (its Kite Connect apps too); with ``config_out``, write a
    config for it once the port is bound (``auth``: which login the accounts use)."""
    sim_accounts = demo_accounts(accounts)
    apps = demo_apps(sim_accounts)
    path = Path(config_out) if config_out else None
    if path is not None and (path.exists() or path.is_symlink()) and not force:
        # It may be the user's real config: never replace it silently.
        raise UsageError(f"{path} exists; not overwriting it (add --force to replace it)")

    def write_config(base_url: str) -> None:
        if path is None:
            return
        write_private_yaml(path, demo_config_dict(
            base_url, sim_accounts, "sqlite:///simulated.db", path.parent / "state",
            apps if auth == "connect" else None))
        print(f"wrote {path} (mode 0600) for {accounts} simulated account(s), auth: {auth}")

    try:
        serve_forever_cli(port, sim_accounts, latency, apps=apps.values(),
                          on_listening=write_config, is_session=TradingCalendar().is_session)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise UsageError(f"port {port} on 127.0.0.1 is already in use (another `snapshotter "
                         "simulate`?): choose a free one with --port N"
                         + (f"; {path} was not written" if path else "")) from None


def _demo_sessions(calendar: TradingCalendar, now: datetime, days: int) -> list[Session]:
    """The last ``days`` sessions that have closed by ``now``."""
    latest = calendar.latest_opened(now)
    if now < latest.close:
        latest = calendar.previous_session(latest.day)
    sessions = [latest]
    while len(sessions) < days:
        sessions.append(calendar.previous_session(sessions[-1].day))
    return sessions[::-1]


#: the index the demo compares the accounts with (the simulator's market moves with it)
BENCHMARK = "NIFTY50"


def run_demo(*, out_dir: str, accounts: int, days: int = 60, auth: str = "web",
             serve: bool = False, port: int | None = None) -> int:
    """The demo; then, with ``serve``, the dashboard over its database on 127.0.0.1
    (``port``, else serve.port's default) until Ctrl-C; without, the command that opens
    it. Either way it leaves ``OUT/config.yaml`` (0600) for that command."""
    code = _demo(out_dir=out_dir, accounts=accounts, days=days, auth=auth)
    config_path = Path(out_dir) / "config.yaml"
    if not serve:
        print(f"\ndashboard: snapshotter --config {shlex.quote(str(config_path))} serve")
        return code
    from snapshotter.config import load_config
    from snapshotter.serve import server

    print()
    server.serve(load_config(str(config_path)), host="127.0.0.1", port=port)
    return code


def _demo(*, out_dir: str, accounts: int, days: int, auth: str) -> int:
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # A fresh simulator each time: start from an empty database and token cache.
    (out / "demo.db").unlink(missing_ok=True)
    shutil.rmtree(out / "state", ignore_errors=True)
    database_url = f"sqlite:///{out / 'demo.db'}"
    sim_accounts = demo_accounts(accounts)
    # auth: connect: an app per account; the simulated ones have the paid Connect plan's
    # historical data, so the demo can still fetch NIFTY 50 (a Personal app has none).
    apps = demo_apps(sim_accounts, market_data=True) if auth == "connect" else None
    calendar = TradingCalendar()
    sessions = _demo_sessions(calendar, utc_now(), max(days, 1))
    # The demo's clock is injected: it walks the real NSE calendar session by session.
    clock = ManualClock(fire_time(sessions[0], time(16, 30)))
    with KiteSimulator(sim_accounts, clock=clock, apps=(apps or {}).values(),
                       is_session=calendar.is_session) as sim:
        config = parse_config(demo_config_dict(sim.base_url, sim_accounts, database_url,
                                               out / "state", apps), "<demo>")
        engine = db.make_engine(database_url)
        try:
            migrate.upgrade(database_url, engine)
            print(f"Kite simulator on {sim.base_url}; database {out / 'demo.db'}")
            print(f"snapshotting {len(sessions)} NSE session(s), {sessions[0].day} to "
                  f"{sessions[-1].day}, for {accounts} simulated account(s), auth: {auth}")
            # The split needs a session before it: corporate_actions compares two snapshots.
            split_day = sessions[len(sessions) // 2].day if len(sessions) > 1 else None
            markets = {a.user_id: DemoMarket(seed=i, split_day=split_day)
                       for i, a in enumerate(sim_accounts, start=1)}
            t0 = _time.perf_counter()
            failures = 0
            quiet = logging.getLogger("snapshotter")
            level = quiet.level
            quiet.setLevel(logging.WARNING)
            try:
                with Progress(len(sessions), "sessions") as progress:
                    for session in sessions:
                        clock.now = fire_time(session, time(16, 30))
                        for user_id, market in markets.items():
                            for event in market.step(sim.portfolio(user_id), session.day):
                                if len(sessions) <= 5 or "split" in event:
                                    progress.note(f"{session.day} {user_id}: {event}")
                        sim.expire_tokens()  # a Kite session lasts a day
                        result = pipeline.run_snapshot(config, engine, clock=clock)
                        failures += sum(o.status == pipeline.FAILED for o in result.outcomes)
                        progress.advance()
            finally:
                quiet.setLevel(level)
            elapsed = _time.perf_counter() - t0
            print(f"{len(sessions)} session(s) x {accounts} account(s) in {elapsed:.1f}s, "
                  f"{sum(sim.login_count.values())} logins, {failures} failure(s)\n")
            print(summary_table(engine, sessions[-1].day))
            second = pipeline.run_snapshot(config, engine, clock=clock)
            skipped = sum(o.status == pipeline.SKIPPED for o in second.outcomes)
            print(f"\nrun again: {skipped} of {len(second.outcomes)} account(s) skipped "
                  "(final snapshot kept, no login)")
            _history_outputs(engine, out)
            _returns_outputs(config, engine, out, calendar, clock)
            write_private_yaml(out / "config.yaml", demo_config_dict(
                sim.base_url, sim_accounts, database_url, out / "state", apps), DEMO_HEADER)
            return 1 if failures else second.exit_code
        finally:
            engine.dispose()


def _history_outputs(engine: sa.Engine, out: Path) -> None:
    """`report summary` and `chart` of the stored history."""
    from snapshotter.reports import chart
    from snapshotter.reports.render import render

    print()
    frame = report_summary(engine)
    print(render(frame[SUMMARY_TABLE_COLUMNS], "table"))
    print(f"note: {SUMMARY_NOTE}")
    path = chart.write_chart(engine, out / "portfolio.png")
    print(f"\nchart: {path}")


def _returns_outputs(config: Config, engine: sa.Engine, out: Path, calendar: TradingCalendar,
                     clock: ManualClock) -> None:
    """`benchmark fetch NIFTY50` (Kite's historical route, which the simulator serves from
    its market's index), `chart --benchmark NIFTY50` and, last, `report performance
    --benchmark NIFTY50`."""
    from snapshotter.pipeline import benchmark
    from snapshotter.reports import chart, performance

    fetched = benchmark.fetch_closes(config, engine, BENCHMARK, clock=clock)
    stored = fetched.stored
    print(f"\nbenchmark fetch {BENCHMARK}: {stored.count} closes ({stored.first} .. "
          f"{stored.last}) from the simulator's historical route, account {fetched.account}")
    drawn = chart.build_benchmark(engine, BENCHMARK)
    print(f"chart: {chart.save(drawn, out / 'performance.png')}")
    if drawn.note:
        print(f"note: {drawn.note}")
    print(f"\nreport performance --benchmark {BENCHMARK}:\n")
    result = performance.performance(engine, calendar, benchmark=BENCHMARK)
    print(performance.render(result, "table"))
