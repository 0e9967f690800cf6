"""`snapshotter demo`: what it announces is what the views find."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from snapshotter.simulator.market import NIFTY50
from tests.conftest import run_cli, write_config

ANNOUNCED = re.compile(r"^(\d{4}-\d{2}-\d{2}) (DM\d{4}): 1:1 bonus/split in (\S+)$")


# (3, 2): on the split day DM0001 once bought more of the split holding; (10, 3): DM0003
# did. Either trade hid the split from corporate_actions.
@pytest.mark.parametrize(("days", "accounts"), [(3, 2), (10, 3)])
def test_every_announced_corporate_action_is_in_the_view(tmp_path: Path, days: int,
                                                         accounts: int) -> None:
    result = run_cli("demo", "--days", str(days), "--accounts", str(accounts),
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    announced = {m.groups() for line in result.stdout.splitlines()
                 if (m := ANNOUNCED.match(line))}
    assert len(announced) == accounts, result.stdout  # one split per account
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT snapshot_date, account, tradingsymbol, ratio, old_quantity, "
                "new_quantity FROM corporate_actions")).all()
    finally:
        engine.dispose()
    assert {(str(d), a, s) for d, a, s, *_ in rows} == announced
    for *_, ratio, old, new in rows:
        assert ratio == 2.0 and new == 2 * old


def test_a_one_session_demo_announces_no_split(tmp_path: Path) -> None:
    """A split needs a session before it (the view compares two snapshots)."""
    result = run_cli("demo", "--days", "1", "--accounts", "1", "--out", str(tmp_path))
    # (Its exit code is the chart's business: a one-session chart is issue 10's too.)
    assert "1 session(s) x 1 account(s)" in result.stdout, result.stdout + result.stderr
    assert "bonus/split" not in result.stdout


def test_the_demo_ends_with_its_returns_against_the_simulators_nifty(tmp_path: Path) -> None:
    """`benchmark fetch NIFTY50` through the simulator's historical route, then `report
    performance --benchmark NIFTY50` last: the same table the command prints afterwards,
    and the same figures as its JSON."""
    result = run_cli("demo", "--days", "6", "--accounts", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "performance.png").stat().st_size > 10_000
    assert f"chart: {tmp_path.resolve() / 'performance.png'}" in result.stdout

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    try:
        with engine.connect() as conn:
            sessions = sorted(date.fromisoformat(str(d)) for (d,) in conn.execute(sa.text(
                "SELECT DISTINCT snapshot_date FROM snapshots")))
            closes = {date.fromisoformat(str(d)): c for d, c in conn.execute(sa.text(
                "SELECT date, close FROM benchmark_daily WHERE name = 'NIFTY50'"))}
    finally:
        engine.dispose()
    assert len(sessions) == 6
    # The closes cover the sessions, from before the first (benchmark_return's start) on,
    # and are the simulator market's index, which its holdings move with.
    assert min(closes) < sessions[0] and max(closes) == sessions[-1]
    assert set(sessions) <= set(closes)
    assert closes == {d: NIFTY50.close(d) for d in closes}

    cfg = write_config(tmp_path / "config.yaml", {
        "database": {"url": f"sqlite:///{tmp_path / 'demo.db'}"},
        "accounts": [{"user_id": a, "auth": "manual"} for a in ("DM0001", "DM0002")]})
    table = run_cli("--config", str(cfg), "report", "performance", "--benchmark", "NIFTY50")
    assert table.returncode == 0, table.stderr
    # its last output, before the command that opens the dashboard over its database
    assert result.stdout.endswith(
        f"{table.stdout}\ndashboard: snapshotter --config {tmp_path / 'config.yaml'} serve\n")
    lines = table.stdout.splitlines()
    header = lines[0].split()
    assert header[-3:] == ["benchmark", "benchmark_return", "excess_return"]
    rows = {cells[0]: dict(zip(header, cells, strict=True))
            for line in lines[2:] if not line.startswith(("note:", "warning:"))
            for cells in [line.split()]}
    assert list(rows) == ["DM0001", "DM0002", "ALL"]

    as_json = run_cli("--config", str(cfg), "report", "performance", "--benchmark", "NIFTY50",
                      "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    records = {r["account"]: r for r in json.loads(as_json.stdout)}
    assert list(records) == list(rows)
    for account, shown in rows.items():
        record = records[account]
        assert (shown["from"], shown["to"]) == (str(sessions[0]), str(sessions[-1]))
        assert (record["from"], record["to"]) == (str(sessions[0]), str(sessions[-1]))
        assert record["benchmark"] == shown["benchmark"] == "NIFTY50"
        for key in ("start_value", "end_value", "net_flows", "market_pnl"):
            assert shown[key] == f"{record[key]:,.2f}", key
        for key in ("twr", "nav_return", "max_drawdown", "benchmark_return",
                    "excess_return"):
            assert shown[key] == f"{record[key] * 100:.2f}%", key
    assert records["ALL"]["end_value"] == pytest.approx(
        records["DM0001"]["end_value"] + records["DM0002"]["end_value"])
    assert records["ALL"]["benchmark_return"] == records["DM0001"]["benchmark_return"] != 0
