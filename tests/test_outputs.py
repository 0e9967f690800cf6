"""Outputs that hold (issue 10), through the real command on SQLite and PostgreSQL:

- `chart` right after the first run (one session per account): the point, a note, a date
  axis around that session; `--out DIR`; `--per-account`; and over several sessions;
- CSV and JSON without float noise (rounded as the views round) or a trailing blank line;
- `export`: every table and view, raw_payloads as JSON text, Parquet files typed by the
  schema (the same from both databases);
- an `--out` that cannot be is one line and exit 2.

The history of several sessions is stored by `snapshotter run` under a shifted clock
(libfaketime), one evening after another, the simulated market moving in between.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.image as mpimg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from snapshotter.reports import chart, performance, render
from snapshotter.reports.export import EXPORTED_TABLES, EXPORTED_VIEWS
from snapshotter.simulator import KiteSimulator, demo_accounts
from snapshotter.simulator.market import DemoMarket
from snapshotter.store import views
from snapshotter.store.writes import decompress
from tests.conftest import (
    IN_CI,
    LOCAL_ONLY,
    PG_ADMIN_URL,
    ShiftedClock,
    _faketime_lib,
    _offset_to,
    _postgres_available,
    config_dict,
    create_pg_database,
    drop_pg_database,
    run_cli,
    write_config,
)

PNG = b"\x89PNG\r\n\x1a\n"
# Three NSE sessions (Tuesday 24 November 2026 is a holiday), snapshotted at 17:00 IST.
SESSIONS = [date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 27)]
KINDS = ["sqlite", "postgres"]


@dataclass(frozen=True)
class Stored:
    kind: str
    url: str
    config: Path
    accounts: list[str]
    sessions: list[date]


@contextmanager
def _databases(tmp: Path) -> Iterator[dict[str, str | None]]:
    """A fresh SQLite database, and a PostgreSQL one when a server is reachable."""
    urls: dict[str, str | None] = {"sqlite": f"sqlite:///{tmp / 'snapshots.db'}",
                                   "postgres": None}
    problem = _postgres_available()
    if problem and IN_CI:
        pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
    if not problem:
        urls["postgres"] = create_pg_database(PG_ADMIN_URL)
    try:
        yield urls
    finally:
        if urls["postgres"]:
            drop_pg_database(PG_ADMIN_URL, urls["postgres"])


def _run(config: Path, env: dict[str, str] | None = None) -> None:
    result = run_cli("--config", str(config), "run", env={**LOCAL_ONLY, **(env or {})})
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def first_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stored | None]]:
    """One `snapshotter run` (the user's first) into each database, same accounts."""
    tmp = tmp_path_factory.mktemp("first-run")
    stored: dict[str, Stored | None] = {}
    with _databases(tmp) as urls:
        for kind, url in urls.items():
            if url is None:
                stored[kind] = None
                continue
            # A simulator each: the same accounts, and a TOTP code is good for one login.
            accounts = demo_accounts(2, seed=7)
            with KiteSimulator(accounts) as sim:
                config = write_config(tmp / f"{kind}.yaml", config_dict(
                    sim, accounts, url, tmp / f"state-{kind}"))
                _run(config)
            [day] = _sql(url, "SELECT DISTINCT snapshot_date FROM snapshots")[0]
            stored[kind] = Stored(kind, url, config, [a.user_id for a in accounts],
                                  [date.fromisoformat(str(day))])
        yield stored


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stored | None]]:
    """`snapshotter run` on three session evenings (shifted clock), the market moving
    between them, into each database."""
    lib = _faketime_lib()
    if lib is None:
        if IN_CI:
            pytest.fail("libfaketime (Debian package faketime) is required in CI")
        pytest.skip("libfaketime not installed (apt-get install faketime)")
    tmp = tmp_path_factory.mktemp("history")
    stored: dict[str, Stored | None] = {}
    with _databases(tmp) as urls:
        for kind, url in urls.items():
            if url is None:
                stored[kind] = None
                continue
            accounts = demo_accounts(2, seed=7)
            markets = {a.user_id: DemoMarket(seed=i) for i, a in enumerate(accounts, 1)}
            clock = ShiftedClock(0)
            with KiteSimulator(accounts, clock=clock) as sim:
                config = write_config(tmp / f"{kind}.yaml", config_dict(
                    sim, accounts, url, tmp / f"state-{kind}"))
                for day in SESSIONS:
                    clock.offset = _offset_to(datetime.combine(day, time(11, 30), UTC))
                    for user_id, market in markets.items():
                        market.step(sim.portfolio(user_id), day)
                    sim.expire_tokens()  # a Kite session lasts a day
                    _run(config, {"LD_PRELOAD": lib, "FAKETIME": f"{clock.offset:+d}",
                                  "FAKETIME_DONT_FAKE_MONOTONIC": "0"})
            stored[kind] = Stored(kind, url, config, [a.user_id for a in accounts], SESSIONS)
        yield stored


def _pick(stored: dict[str, Stored | None], kind: str) -> Stored:
    found = stored[kind]
    if found is None:
        pytest.skip("PostgreSQL not reachable")
    return found


@pytest.fixture(params=KINDS)
def first_run(request: pytest.FixtureRequest, first_runs: dict[str, Stored | None]) -> Stored:
    return _pick(first_runs, request.param)


@pytest.fixture(params=KINDS)
def history(request: pytest.FixtureRequest, histories: dict[str, Stored | None]) -> Stored:
    return _pick(histories, request.param)


def _sql(url: str, query: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


@contextmanager
def _engine(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG
    height, width, _ = mpimg.imread(path).shape
    assert (width, height) == (1100, 660)  # 10 x 6 inches at 110 dpi


def _date_labels(svg: Path) -> set[str]:
    """The texts matplotlib writes into an SVG (each one also as a comment)."""
    return set(re.findall(r"<!-- (.*?) -->", svg.read_text(encoding="utf-8")))


# --- chart ------------------------------------------------------------------------------

def test_chart_after_the_first_run(first_run: Stored, tmp_path: Path) -> None:
    """The all-accounts chart crashed (TypeError: ufunc 'isfinite'), one account's was
    empty over 2025-2029: now each draws the point, says why it is alone, and --out DIR
    writes inside DIR."""
    config, [one, _] = str(first_run.config), first_run.accounts
    cases = [((), "portfolio.png"), (("--account", one.lower()), f"portfolio-{one}.png"),
             (("--per-account",), "portfolio-per-account.png")]
    for extra, name in cases:
        result = run_cli("--config", config, "chart", "--out", str(tmp_path), *extra)
        assert result.returncode == 0, result.stderr
        day = first_run.sessions[0].isoformat()
        assert result.stdout.splitlines() == [
            f"wrote {tmp_path.resolve() / name}",
            f"note: one session so far ({day}): the lines start with the next session's "
            "snapshot"], extra
        _assert_png(tmp_path / name)
    # A directory that does not exist yet, named as one (a trailing /).
    result = run_cli("--config", config, "chart", "--out", f"{tmp_path / 'new'}/")
    assert result.returncode == 0, result.stderr
    _assert_png(tmp_path / "new" / "portfolio.png")
    assert f"wrote {tmp_path.resolve() / 'new' / 'portfolio.png'}" in result.stdout


def test_chart_of_one_session_spans_days_not_years(first_run: Stored,
                                                   tmp_path: Path) -> None:
    day = first_run.sessions[0]
    # Through the command: an SVG's texts are its tick labels (ConciseDateFormatter:
    # days, and the month once).
    svg = tmp_path / "one.svg"
    result = run_cli("--config", str(first_run.config), "chart", "--out", str(svg),
                     "--account", first_run.accounts[0])
    assert result.returncode == 0, result.stderr
    texts = _date_labels(svg)
    assert f"{day:%Y-%b}" in texts
    assert f"{day:%d}" in texts
    assert not {t for t in texts if re.fullmatch(r"20\d\d", t)}  # no year ticks
    # In the library: the x-axis spans a few days around the session.
    with _engine(first_run.url) as engine:
        for account, per_account in ((first_run.accounts[0], False), (None, False),
                                     (None, True)):
            drawn = chart.build(engine, account, per_account)
            assert drawn.sessions == 1 and drawn.note
            low, high = (d.date() for d in mdates.num2date(drawn.figure.axes[0].get_xlim()))
            assert low < day < high and (high - low).days <= 7


def test_chart_over_several_sessions(history: Stored, tmp_path: Path) -> None:
    config = str(history.config)
    for extra, name in (((), "portfolio.png"), (("--per-account",), "portfolio-per-account.png"),
                        (("--account", history.accounts[1]),
                         f"portfolio-{history.accounts[1]}.png")):
        result = run_cli("--config", config, "chart", "--out", str(tmp_path), *extra)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"wrote {tmp_path.resolve() / name}"]
        _assert_png(tmp_path / name)
    with _engine(history.url) as engine:
        drawn = chart.build(engine, per_account=True)
        assert drawn.sessions == len(SESSIONS) and drawn.note is None
        top = drawn.figure.axes[0]
        # One total-value line per account, each with a point per session (dashed: the
        # value without market moves).
        assert [len(line.get_xdata()) for line in top.get_lines()
                if line.get_linestyle() == "-"] == [3, 3]
        low, high = (d.date() for d in mdates.num2date(top.get_xlim()))
        assert low <= SESSIONS[0] and SESSIONS[-1] <= high and (high - low).days < 10
        summed = chart.chart_data(engine)
        assert summed["drawdown"].dtype == "float64" and len(summed) == 3


def test_chart_options_that_cannot_be(first_runs: dict[str, Stored | None],
                                      tmp_path: Path) -> None:
    first_run = _pick(first_runs, "sqlite")  # the options, not the database
    config = str(first_run.config)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [
        (("--out", str(blocker / "chart.png")),
         f"error: --out {blocker / 'chart.png'}: a parent of it is a file, not a directory"),
        (("--out", str(tmp_path / "chart.txt")),
         f"error: --out {tmp_path / 'chart.txt'}: cannot draw a .txt file; "
         "use .png (or .svg, .pdf)"),
        (("--out", str(tmp_path), "--account", "ZZ9999"),
         f"error: no account 'ZZ9999' in {first_run.config} or the database (known: "
         f"{', '.join(first_run.accounts)})"),
        (("--out", str(tmp_path), "--account", first_run.accounts[0], "--per-account"),
         "error: --per-account draws every account; leave out --account"),
    ]
    for args, message in cases:
        result = run_cli("--config", config, "chart", *args)
        assert (result.returncode, result.stderr.strip().splitlines()[-1:]) == (2, [message])
        assert "Traceback" not in result.stderr
    assert blocker.read_text() == "x" and not (tmp_path / "chart.txt").exists()


# --- CSV and JSON -----------------------------------------------------------------------

DECIMALS = re.compile(r"^-?\d+\.(\d+)$")


def _places(text: str) -> int:
    found = DECIMALS.match(text)
    return len(found.group(1)) if found else 0


def test_csv_and_json_have_no_float_noise(first_run: Stored, tmp_path: Path) -> None:
    [one, _] = first_run.accounts
    # The view itself rounds its money as the other views do (quantity * price in
    # doubles showed -6272.00000000003 in sqlite3 and psql).
    raw = _sql(first_run.url, "SELECT invested, value, unrealised_pnl, day_pnl "
                              "FROM holding_daily")
    assert raw and max(_places(repr(v)) for row in raw for v in row) <= 6
    config = str(first_run.config)
    result = run_cli("--config", config, "report", "holdings", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and not result.stdout.endswith("\n\n")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(raw)
    for row in rows:
        for column in ("average_price", "price", "value", "unrealised_pnl", "day_pnl"):
            assert _places(row[column]) <= 6, (column, row[column])
        assert _places(row["weight"]) <= 10
        assert row["quantity"].isdigit() and row["quantity_change"] == ""
    # Rounded as the views round (6 decimals), so the same as the view to the micro-rupee.
    view = {(a, s): round(v, 6) for a, s, v in _sql(
        first_run.url, "SELECT account, tradingsymbol, day_pnl FROM holding_daily")}
    assert {(r["account"], r["tradingsymbol"]): float(r["day_pnl"]) for r in rows} == view
    out = run_cli("--config", config, "report", "summary", "--format", "csv").stdout
    assert out.startswith("account,") and out.endswith("\n") and not out.endswith("\n\n")
    data = run_cli("--config", config, "report", "holdings", "--account", one, "--format",
                   "json").stdout
    numbers = re.findall(r": (-?\d+\.\d+)", data)
    assert numbers and max(_places(n) for n in numbers) <= 10
    assert max(_places(n) for n in re.findall(r'"day_pnl": (-?\d+\.\d+)', data)) <= 6
    # The export's CSV files too.
    out = tmp_path / "csv"
    assert run_cli("--config", config, "export", "--out", str(out)).returncode == 0
    text = (out / "holding_daily.csv").read_text()
    assert not text.endswith("\n\n")
    exported = pd.read_csv(out / "holding_daily.csv", dtype=str, keep_default_na=False)
    assert max(_places(v) for v in exported["day_pnl"]) <= 6


def test_one_rounding_rule_for_every_report() -> None:
    """report performance writes its numbers by render.decimals, as the other reports:
    its ratios to 10 decimals, its money to 6."""
    assert {c: render.decimals(c) for c in performance.RATIOS} == \
        dict.fromkeys(performance.RATIOS, render.RATIO_DECIMALS)
    assert {c: render.decimals(c) for c in performance.MONEY} == \
        dict.fromkeys(performance.MONEY, render.MONEY_DECIMALS)


# --- export -----------------------------------------------------------------------------

def test_export_has_every_table_and_raw_payloads_as_json(first_run: Stored,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = run_cli("--config", str(first_run.config), "export", "--format", "csv",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    exported = len(EXPORTED_TABLES) + len(EXPORTED_VIEWS)
    assert result.stdout.strip() == f"wrote {exported} files to {out}"
    assert "raw_payloads" in EXPORTED_TABLES
    stored = {(sid, name): decompress(body) for sid, name, body in _sql(
        first_run.url, "SELECT snapshot_id, name, body FROM raw_payloads")}
    exported = pd.read_csv(out / "raw_payloads.csv")
    assert len(exported) == len(stored) > 0
    assert {(int(r.snapshot_id), r.name): json.loads(r.body)
            for r in exported.itertuples()} == stored


def _export_parquet(stored: Stored, out: Path) -> dict[str, pa.Schema]:
    result = run_cli("--config", str(stored.config), "export", "--format", "parquet",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    return {name: pq.read_schema(out / f"{name}.parquet")
            for name in (*EXPORTED_TABLES, *EXPORTED_VIEWS)}


def test_parquet_types_are_the_same_from_sqlite_and_postgres(
        first_runs: dict[str, Stored | None], tmp_path: Path) -> None:
    sqlite = _pick(first_runs, "sqlite")
    postgres = _pick(first_runs, "postgres")
    schemas = {kind: _export_parquet(stored, tmp_path / kind)
               for kind, stored in (("sqlite", sqlite), ("postgres", postgres))}
    for name in (*EXPORTED_TABLES, *EXPORTED_VIEWS):
        assert schemas["sqlite"][name].remove_metadata() == \
            schemas["postgres"][name].remove_metadata(), name
    schema = schemas["sqlite"]
    known = {
        ("snapshots", "snapshot_date"): pa.date32(),
        ("snapshots", "taken_at"): pa.timestamp("us", tz="UTC"),
        ("snapshots", "final"): pa.bool_(),
        ("snapshots", "error"): pa.string(),  # NULL on every row
        ("holdings", "quantity"): pa.int64(),
        ("holdings", "last_price"): pa.float64(),
        ("holdings", "extra"): pa.string(),
        ("raw_payloads", "body"): pa.string(),
        ("pnl_daily", "market_pnl"): pa.float64(),  # NULL after one session
        ("pnl_daily", "previous_snapshot_date"): pa.date32(),  # NULL too
        ("holding_daily", "quantity_change"): pa.int64(),  # NULL too
        ("portfolio_daily", "final"): pa.bool_(),
        ("corporate_actions", "ratio"): pa.float64(),  # no rows
    }
    for (name, column), kind in known.items():
        assert schema[name].field(column).type == kind, (name, column)
    # And the values agree: the same run, read back from both files.
    frames = {kind: pq.read_table(tmp_path / kind / "pnl_daily.parquet").to_pandas()
              for kind in schemas}
    pd.testing.assert_frame_equal(frames["sqlite"].drop(columns="snapshot_id"),
                                  frames["postgres"].drop(columns="snapshot_id"))


def test_view_columns_are_declared(first_run: Stored) -> None:
    """store.views.COLUMNS (the export's types) lists each view's columns, in order."""
    assert list(views.COLUMNS) == list(views.VIEWS)
    with _engine(first_run.url) as engine, engine.connect() as conn:
        for name, columns in views.COLUMNS.items():
            result = conn.execute(sa.text(f"SELECT * FROM {name} LIMIT 0"))
            assert list(result.keys()) == list(columns), name


def test_export_out_that_is_a_file(first_runs: dict[str, Stored | None],
                                   tmp_path: Path) -> None:
    """Was `FileExistsError: [Errno 17]`."""
    config = str(_pick(first_runs, "sqlite").config)
    existing = tmp_path / "exports.zip"
    existing.write_bytes(b"keep me")
    is_a_file = f"error: --out {existing} is a file; give a directory"
    cases = [(existing, "csv", is_a_file), (existing, "parquet", is_a_file),
             (existing / "sub", "csv", f"error: --out {existing / 'sub'}: cannot create "
                                       "that directory (Not a directory); give another")]
    for out, fmt, message in cases:
        result = run_cli("--config", config, "export", "--format", fmt, "--out", str(out))
        assert (result.returncode, result.stderr.splitlines()) == (2, [message])
        assert result.stdout == ""
    assert existing.read_bytes() == b"keep me"
