"""`demo --days`, `report`, `export` and `chart` through the real command line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from snapshotter.reports.export import EXPORTED_TABLES, EXPORTED_VIEWS
from tests.conftest import run_cli, write_config


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    result = run_cli("demo", "--days", "12", "--accounts", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "12 session(s) x 2 account(s)" in result.stdout
    assert "split" in result.stdout
    assert (out / "portfolio.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return out / "demo.db"


@pytest.fixture
def cfg(demo_db: Path, tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.yaml", {
        "database": {"url": f"sqlite:///{demo_db}"},
        "accounts": [{"user_id": "DM0001", "auth": "manual"},
                     {"user_id": "DM0002", "auth": "manual"}],
    })


def _sql(demo_db: Path, query: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(f"sqlite:///{demo_db}")
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text(query))]
    engine.dispose()
    return rows


def test_demo_history_is_stored(demo_db: Path) -> None:
    [(sessions, accounts)] = _sql(demo_db, "SELECT COUNT(DISTINCT snapshot_date), "
                                  "COUNT(DISTINCT account) FROM snapshots WHERE status = 'ok'")
    assert (sessions, accounts) == (12, 2)
    assert _sql(demo_db, "SELECT COUNT(*) FROM corporate_actions")[0][0] >= 2


def test_report_pnl_csv_matches_the_view(cfg: Path, demo_db: Path) -> None:
    result = run_cli("--config", str(cfg), "report", "pnl", "--account", "dm0001",
                     "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    expected = _sql(demo_db, "SELECT snapshot_date, market_pnl FROM pnl_daily "
                    "WHERE account = 'DM0001' ORDER BY snapshot_date")
    assert [r["snapshot_date"] for r in rows] == [str(d) for d, _ in expected]
    assert [float(r["market_pnl"]) if r["market_pnl"] else None for r in rows] == [
        pytest.approx(v) if v is not None else None for _, v in expected]


def test_report_pnl_date_range(cfg: Path, demo_db: Path) -> None:
    dates = [d for (d,) in _sql(demo_db, "SELECT DISTINCT snapshot_date FROM snapshots "
                                "ORDER BY snapshot_date")]
    result = run_cli("--config", str(cfg), "report", "pnl", "--from", str(dates[3]),
                     "--to", str(dates[5]), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["snapshot_date"] for r in rows} == {str(d) for d in dates[3:6]}
    assert {r["account"] for r in rows} == {"DM0001", "DM0002"}


def test_report_into_a_closed_pipe_is_quiet(cfg: Path, demo_db: Path) -> None:
    """`snapshotter report pnl | head -1`: the reader stops early (here at once); no
    error, exit 0."""
    import subprocess
    import sys

    result = subprocess.run(
        ["bash", "-c", "set -o pipefail; "
         f"'{sys.executable}' -m snapshotter --config '{cfg}' report pnl --format csv | true"],
        capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (0, "")


def test_report_summary_and_holdings_tables(cfg: Path, demo_db: Path) -> None:
    summary = run_cli("--config", str(cfg), "report", "summary")
    assert summary.returncode == 0, summary.stderr
    assert "DM0001" in summary.stdout and "total_value" in summary.stdout
    data = json.loads(run_cli("--config", str(cfg), "report", "summary", "--format",
                              "json").stdout)
    [(value,)] = _sql(demo_db, "SELECT total_value FROM portfolio_daily WHERE account = "
                      "'DM0002' ORDER BY snapshot_date DESC LIMIT 1")
    assert next(r for r in data if r["account"] == "DM0002")["total_value"] == \
        pytest.approx(value)
    holdings = run_cli("--config", str(cfg), "report", "holdings", "--account", "DM0001",
                       "--format", "json")
    rows = json.loads(holdings.stdout)
    assert rows and {r["account"] for r in rows} == {"DM0001"}
    assert sum(r["weight"] for r in rows) == pytest.approx(1.0)


def test_report_history_of_a_symbol(cfg: Path, demo_db: Path) -> None:
    [(symbol,)] = _sql(demo_db, "SELECT tradingsymbol FROM holdings WHERE account = 'DM0001' "
                       "ORDER BY tradingsymbol LIMIT 1")
    result = run_cli("--config", str(cfg), "report", "history", str(symbol).lower(),
                     "--account", "DM0001", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) >= 1 and {r["tradingsymbol"] for r in rows} == {symbol}
    missing = run_cli("--config", str(cfg), "report", "history")
    assert missing.returncode == 2 and "needs a SYMBOL" in missing.stderr  # usage


@pytest.mark.parametrize(("args", "error"), [
    (("pnl", "--xirr"), "report pnl takes no --xirr: --xirr is for report holdings"),
    (("summary", "--fy", "2025-26"), "report summary takes no --fy: --fy is for report tax"),
    (("holdings", "--benchmark", "NIFTY50"),
     "report holdings takes no --benchmark: --benchmark is for report performance"),
    (("tax", "--fy", "2025-26", "--from", "2025-04-01"),
     "report tax takes no --from: --from is for report summary, holdings, pnl, history "
     "and performance"),
    (("performance", "INFY"),
     "report performance takes no SYMBOL ('INFY'): a symbol is for `report history "
     "SYMBOL` and `report holdings [SYMBOL]`"),
])
def test_an_option_a_report_does_not_take_is_a_usage_error(
        cfg: Path, args: tuple[str, ...], error: str) -> None:
    """Each report declares the options it takes (cli.commands.REPORTS): any other is
    refused in one line naming it and the report, never silently ignored."""
    result = run_cli("--config", str(cfg), "report", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"error: {error}"]
    assert result.stdout == ""


def test_the_report_choices_are_the_declared_reports() -> None:
    from snapshotter.cli import commands

    assert list(commands.REPORTS) == ["summary", "holdings", "pnl", "history",
                                      "performance", "tax"]
    result = run_cli("report", "--help")
    assert result.returncode == 0, result.stderr
    assert "{summary,holdings,pnl,history,performance,tax}" in result.stdout
    for name, declared in commands.REPORTS.items():
        assert f"{name}: {declared.help}" in " ".join(result.stdout.split())
        assert declared.name == name
        assert declared.options <= set(commands.REPORT_OPTIONS)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_every_table_and_view(cfg: Path, demo_db: Path, tmp_path: Path,
                                     fmt: str) -> None:
    out = tmp_path / "export"
    result = run_cli("--config", str(cfg), "export", "--format", fmt, "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in (*EXPORTED_TABLES, *EXPORTED_VIEWS):
        path = out / f"{name}.{fmt}"
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        [(count,)] = _sql(demo_db, f"SELECT COUNT(*) FROM {name}")
        assert len(frame) == count, name
    holdings = pd.read_parquet(out / "holdings.parquet") if fmt == "parquet" else \
        pd.read_csv(out / "holdings.csv")
    assert {"account", "snapshot_date", "tradingsymbol", "last_price"} <= set(holdings.columns)


def test_chart_is_a_png(cfg: Path, tmp_path: Path) -> None:
    for account in (None, "DM0002"):
        path = tmp_path / f"chart-{account}.png"
        args = ["--config", str(cfg), "chart", "--out", str(path)]
        if account:
            args += ["--account", account]
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
