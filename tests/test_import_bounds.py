"""`snapshotter import` within bounds, through the real command: hostile files (a
workbook that unpacks to gigabytes, a cell at XFD1048576, a million tiny shared strings,
/dev/zero, a FIFO, a directory) are one line and exit 2 in bounded memory; files are read
before the run lock is taken; imported text is stored alike on SQLite and PostgreSQL;
a PostgreSQL backend killed mid-import is one line saying what was stored."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from snapshotter.simulator import KiteSimulator, SimAccount
from snapshotter.store.lock import ADVISORY_KEY
from tests.conftest import config_dict, create_pg_database, drop_pg_database, run_cli, write_config

DATA = Path(__file__).resolve().parent / "data" / "console"
ACCOUNT = "ZX1234"
PEAK_RSS_MB = 400
# The child may reserve at most this much address space: a reader without bounds then
# fails fast (MemoryError) instead of taking the machine's memory.
ADDRESS_SPACE_GUARD = 2 * 2**30
MAIN = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
RELS = 'xmlns="http://schemas.openxmlformats.org/package/2006/relationships"'
DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _config(tmp_path: Path, database_url: str, **imports: Any) -> Path:
    data: dict[str, Any] = {
        "database": {"url": database_url}, "state_dir": str(tmp_path / "state"),
        "accounts": [{"user_id": ACCOUNT, "auth": "manual"}]}
    if imports:
        data["import"] = imports
    return write_config(tmp_path / "config.yaml", data)


def _count(url: str, sql: str) -> Any:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


# --- hostile workbooks, built here -------------------------------------------------------

def _zip(path: Path, parts: dict[str, str | list[tuple[bytes, int]]]) -> Path:
    """A zip of deflated members, each given as text or as runs (bytes, how many times in
    a row). A run is compressed once and its output repeated (a full flush resets the
    compressor), so a member of gigabytes costs only its compressed size to write."""
    out, directory = bytearray(), bytearray()
    for name, member in parts.items():
        runs = [(member.encode(), 1)] if isinstance(member, str) else member
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        body, crc, size = bytearray(), 0, 0
        for piece, times in runs:
            body += (packer.compress(piece) + packer.flush(zlib.Z_FULL_FLUSH)) * times
            for _ in range(times):
                crc = zlib.crc32(piece, crc)
            size += len(piece) * times
        body += packer.flush()
        raw = name.encode()
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc,
                                 len(body), size, len(raw), 0, 0, 0, 0, 0, len(out)) + raw
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(body), size,
                           len(raw), 0) + raw + body
    out += directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(parts), len(parts),
                                   len(directory), len(out), 0)
    path.write_bytes(out)
    return path


def _workbook(path: Path, sheet: str | list[tuple[bytes, int]],
              shared: str | list[tuple[bytes, int]] = f"<sst {MAIN}/>",
              styles: str = f"<styleSheet {MAIN}/>") -> Path:
    return _zip(path, {
        "[Content_Types].xml": '<Types xmlns="http://schemas.openxmlformats.org/package/'
                               '2006/content-types"/>',
        "_rels/.rels": f'<Relationships {RELS}><Relationship Id="rId1" Type="{DOC}/'
                       'officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook {MAIN} xmlns:r="{DOC}"><sheets><sheet name="Tradebook"'
                           ' sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels":
            f'<Relationships {RELS}><Relationship Id="rId1" Type="{DOC}/worksheet" '
            f'Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{DOC}/'
            f'sharedStrings" Target="sharedStrings.xml"/><Relationship Id="rId3" '
            f'Type="{DOC}/styles" Target="styles.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": sheet, "xl/sharedStrings.xml": shared,
        "xl/styles.xml": styles})


ONE_CELL = f'<worksheet {MAIN}><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>' \
           '</sheetData></worksheet>'


def _huge_shared_string(path: Path) -> Path:
    """3 MB: one shared string of 3 GB."""
    return _workbook(path, ONE_CELL, [(f"<sst {MAIN}><si><t>".encode(), 1),
                                      (b"A" * 2**20, 3 * 1024), (b"</t></si></sst>", 1)])


def _far_cell(path: Path) -> Path:
    """2 KB: a <dimension> of the whole sheet, and one cell at XFD1048576."""
    return _workbook(path, f'<worksheet {MAIN}><dimension ref="A1:XFD1048576"/><sheetData>'
                           '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t>'
                           '</is></c></row></sheetData></worksheet>')


def _tiny_shared_strings(path: Path) -> Path:
    """0.8 MB: eighteen million shared strings of one character."""
    return _workbook(path, ONE_CELL, [(f"<sst {MAIN}>".encode(), 1),
                                      (b"<si><t>a</t></si>" * 61681, 320), (b"</sst>", 1)])


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


HOSTILE = {
    "huge-shared-string.xlsx": (_huge_shared_string,
                                "a text longer than 32,767 characters (Excel's limit)"),
    "far-cell.xlsx": (_far_cell, "row 1048576: a cell in column XFD, past the 256 columns "
                                 "read (column IV)"),
    "tiny-shared-strings.xlsx": (_tiny_shared_strings, "more than 1,048,576 shared strings"),
    "fifo": (_fifo, "not a regular file (a FIFO); only regular files are imported"),
    "directory": (_directory, "not a regular file (a directory); only regular files are "
                              "imported"),
}

# Runs the command given as arguments and prints its outcome and peak RSS as JSON.
MEASURE = """
import json, resource, subprocess, sys
guard = int(sys.argv[1])
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (guard, guard))
done = subprocess.run(sys.argv[2:], capture_output=True, text=True,
                      stdin=subprocess.DEVNULL, preexec_fn=limit)
print(json.dumps({"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def _measured(*args: str) -> dict[str, Any]:
    """The real command in a process of its own, with its peak resident memory. The
    timeout only keeps a hang (the FIFO, before) from stalling the suite."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(ADDRESS_SPACE_GUARD), sys.executable, "-m",
         "snapshotter", *args], capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_file_is_one_line_in_bounded_memory(tmp_path: Path, name: str) -> None:
    make, problem = HOSTILE[name]
    path = make(tmp_path / name)
    cfg = _config(tmp_path, f"sqlite:///{tmp_path / 'snapshots.db'}")
    result = _measured("--config", str(cfg), "import", "tradebook", str(path),
                       str(DATA / "tradebook-fo.csv"), "--account", ACCOUNT)
    errors = [line for line in result["stderr"].splitlines() if " INFO " not in line]
    assert (result["code"], errors) == (2, [f"error: {path}: {problem}"]), result
    assert result["peak_kb"] < PEAK_RSS_MB * 1024, result
    # The other file given is imported.
    assert result["stdout"].splitlines()[0] == \
        f"{DATA / 'tradebook-fo.csv'}: 2 new, 0 already known"


def test_a_device_is_refused_before_it_is_read(tmp_path: Path) -> None:
    cfg = _config(tmp_path, f"sqlite:///{tmp_path / 'snapshots.db'}")
    result = _measured("--config", str(cfg), "import", "ledger", "/dev/zero",
                       "--account", ACCOUNT)
    assert result["code"] == 2, result
    assert result["stderr"].strip().splitlines()[-1] == (
        "error: /dev/zero: not a regular file (a character device); only regular files "
        "are imported")
    assert result["peak_kb"] < PEAK_RSS_MB * 1024, result


def test_the_size_cap_is_checked_before_reading_and_for_workbooks_unpacked(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'snapshots.db'}"
    cfg = _config(tmp_path, url, max_file_mb=0.01)  # 10,485 bytes
    big = tmp_path / "big.csv"
    big.write_bytes((DATA / "tradebook.csv").read_bytes() + b"\n" * 10_000)
    result = run_cli("--config", str(cfg), "import", "tradebook", str(big), "--account", ACCOUNT)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (
        2, f"error: {big}: larger than 0.01 MB (import.max_file_mb); not read")
    # A 2 KB workbook whose sheet unpacks to 1 MB of (valid) XML.
    padded = _workbook(tmp_path / "padded.xlsx", [
        (f"<worksheet {MAIN}><sheetData>".encode(), 1), (b" " * 2**16, 16),
        (b"</sheetData></worksheet>", 1)])
    assert padded.stat().st_size < 10_000
    result = run_cli("--config", str(cfg), "import", "tradebook", str(padded),
                     "--account", ACCOUNT)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (
        2, f"error: {padded}: unpacks to more than 0.01 MB of XML (at "
           "xl/worksheets/sheet1.xml; import.max_file_mb)")
    assert _count(url, "SELECT COUNT(*) FROM console_files") == 0
    bad = write_config(tmp_path / "bad.yaml", {"import": {"max_file_mb": "lots"},
                                               "accounts": [{"user_id": ACCOUNT,
                                                             "auth": "manual"}]})
    result = run_cli("--config", str(bad), "import", "tradebook", str(big), "--account", ACCOUNT)
    assert (result.returncode, result.stderr.strip()) == (
        2, f"error: {bad}: import.max_file_mb: must be a number, got 'lots'")


def test_a_workbook_as_excel_writes_it(tmp_path: Path, database_url: str) -> None:
    """Shared strings (one in rich-text runs with a phonetic run), prefixed elements,
    dates as serial numbers under a date style, a number format of its own, and a
    <dimension> that lies: read as openpyxl reads it."""
    strings = ["Symbol", "ISIN", "Trade Date", "Exchange", "Segment", "Series", "Trade Type",
               "Auction", "Quantity", "Price", "Trade ID", "Order ID", "Order Execution Time",
               "INFY", "INE009A01021", "NSE", "EQ", "buy", "10000001", "1100000000000001",
               "2023-05-10T10:01:12", "Client ID"]
    items = "".join(f"<x:si><x:t>{s}</x:t></x:si>" for s in strings)
    items += '<x:si><x:r><x:t>ZX</x:t></x:r><x:r><x:t xml:space="preserve">1234</x:t></x:r>' \
             '<x:rPh sb="0" eb="1"><x:t>ignored</x:t></x:rPh></x:si>'
    shared = f'<x:sst xmlns:x="{MAIN[7:-1]}">{items}</x:sst>'

    def cell(ref: str, value: str, kind: str = "s", style: str = "") -> str:
        return f'<x:c r="{ref}" t="{kind}"{style}><x:v>{value}</x:v></x:c>'

    header = "".join(cell(f"{chr(66 + i)}3", str(i)) for i in range(13))
    trade = "".join([cell("B4", "13"), cell("C4", "14"), cell("D4", "45056", "n", ' s="1"'),
                     cell("E4", "15"), cell("F4", "16"), cell("G4", "16"), cell("H4", "17"),
                     cell("I4", "0", "b"), cell("J4", "6", "n"), cell("K4", "1200.5", "n"),
                     cell("L4", "18"), cell("M4", "19"), cell("N4", "20")])
    sheet = (f'<x:worksheet xmlns:x="{MAIN[7:-1]}"><x:dimension ref="A1:B2"/><x:sheetData>'
             f'<x:row r="1">{cell("A1", "21")}{cell("B1", "22")}</x:row>'
             f'<x:row r="3">{header}</x:row><x:row r="4">{trade}</x:row>'
             '</x:sheetData></x:worksheet>')
    styles = (f'<styleSheet {MAIN}><numFmts count="1"><numFmt numFmtId="170" '
              'formatCode="dd/mm/yyyy"/></numFmts><cellXfs count="2"><xf numFmtId="0"/>'
              '<xf numFmtId="170"/></cellXfs></styleSheet>')
    book = _workbook(tmp_path / "excel.xlsx", sheet, shared, styles)
    cfg = _config(tmp_path, database_url)
    result = run_cli("--config", str(cfg), "import", "tradebook", str(book),
                     "--account", ACCOUNT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{book}: 1 new, 0 already known"
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT tradingsymbol, isin, trade_date, exchange, auction, quantity, price, "
                "trade_id, order_id FROM trades")).one()
    finally:
        engine.dispose()
    assert (*(str(v) for v in row[:4]), bool(row[4]), *row[5:]) == (
        "INFY", "INE009A01021", "2023-05-10", "NSE", False, 6.0, 1200.5, "10000001",
        "1100000000000001")


# --- the run lock ---------------------------------------------------------------------------

@contextlib.contextmanager
def _holding_the_run_lock(url: str) -> Iterator[None]:
    """What another snapshotter run holding the lock looks like."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        fd = os.open(Path(str(parsed.database)).with_suffix(".lock"), os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.close(fd)
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
    finally:
        engine.dispose()


def test_files_are_read_before_the_run_lock_is_taken(tmp_path: Path,
                                                     database_url: str) -> None:
    """While another run holds the lock, the import has already read and checked its
    file when it starts waiting: the file can go, and what it held is still stored."""
    cfg = _config(tmp_path, database_url)
    assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
    path = tmp_path / "tradebook.csv"
    path.write_bytes((DATA / "tradebook.csv").read_bytes())
    with _holding_the_run_lock(database_url):
        importing = subprocess.Popen(
            [sys.executable, "-m", "snapshotter", "--config", str(cfg), "import", "tradebook",
             str(path), "--account", ACCOUNT], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        try:
            assert importing.stderr is not None
            seen = []
            for line in importing.stderr:  # until it waits for the lock (or ends)
                seen.append(line)
                if "holds the run lock" in line:
                    break
            assert "holds the run lock" in seen[-1], seen
            path.unlink()
        except BaseException:
            importing.kill()
            raise
    out, err = importing.communicate(timeout=300)
    assert importing.returncode == 0, "".join(seen) + err
    assert out.splitlines()[0] == f"{path}: 19 new, 0 already known"
    assert _count(database_url, "SELECT COUNT(*) FROM trades") == 19


# --- text alike on both databases -----------------------------------------------------------

HEADER = ("symbol,isin,trade_date,exchange,segment,series,trade_type,auction,quantity,price,"
          "trade_id,order_id,order_execution_time")
TRADE = "INFY,INE009A01021,2023-05-10,NSE,EQ,{series},buy,false,6,1200,{trade_id},1,"


def test_imported_text_is_stored_alike_on_both_databases(tmp_path: Path,
                                                         database_url: str) -> None:
    cfg = _config(tmp_path, database_url)
    nul = tmp_path / "nul.csv"
    nul.write_text(f"{HEADER}\n" + TRADE.format(series="E\x00Q", trade_id="1") + "\n",
                   encoding="utf-8")
    result = run_cli("--config", str(cfg), "import", "tradebook", str(nul), "--account", ACCOUNT)
    assert result.returncode == 0, result.stderr
    assert _count(database_url, "SELECT series FROM trades") == "E\ufffdQ"

    long_id = tmp_path / "long.csv"
    long_id.write_text("\n".join([HEADER, TRADE.format(series="EQ", trade_id="2"),
                                  TRADE.format(series="EQ", trade_id="9" * 9000)]) + "\n")
    result = run_cli("--config", str(cfg), "import", "tradebook", str(long_id),
                     "--account", ACCOUNT)
    assert (result.returncode, result.stderr.strip()) == (
        2, f"error: {long_id}: line 3: trade_id is 9,000 characters long, more than the 256 "
           "a text column holds")
    assert _count(database_url, "SELECT COUNT(*) FROM trades") == 1


# --- a backend killed mid-import -----------------------------------------------------------

@pytest.mark.parametrize(("table", "said"), [
    ("trades", "{path}: not stored (nothing of it; import it again)"),
    ("realised_lots", "{path}: file stored; lots not rebuilt, the next run rebuilds them"),
])
def test_a_backend_killed_during_an_import(postgres_server: str, sim: KiteSimulator,
                                           sim_accounts: list[SimAccount], tmp_path: Path,
                                           table: str, said: str) -> None:
    """The import's backend is terminated while it waits on a lock this test holds on
    ``table``: while storing the file's trades or rebuilding the lots
    (realised_lots). One line saying what is stored, exit 75; the next run rebuilds."""
    url = create_pg_database(postgres_server)
    try:
        cfg = write_config(tmp_path / "config.yaml", config_dict(
            sim, sim_accounts, url, tmp_path / "state"))
        account = sim_accounts[0].user_id
        assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
        path = tmp_path / "tradebook.csv"
        path.write_bytes((DATA / "tradebook.csv").read_bytes())
        if table == "trades":  # more rows than the socket buffers hold: the killed
            # connection fails mid-send, inside psycopg's pipeline
            with path.open("a", encoding="utf-8") as out:
                out.writelines(TRADE.format(series="EQ", trade_id=f"9{n:07}") + "\n"
                               for n in range(50_000))
        holder = sa.create_engine(url, poolclass=sa.pool.NullPool)
        result: dict[str, Any] = {}
        try:
            with holder.connect() as conn:
                conn.execute(sa.text(f"LOCK TABLE {table} IN SHARE MODE"))  # blocks writes
                importing = threading.Thread(target=lambda: result.update(done=run_cli(
                    "--config", str(cfg), "import", "tradebook", str(path),
                    "--account", account)))
                importing.start()
                blocked = _blocked_backend(holder, importing)
                with holder.connect() as admin:
                    admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": blocked})
                    admin.commit()
                conn.rollback()
            importing.join()
        finally:
            holder.dispose()
        done = result["done"]
        assert done.returncode == 75, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith(f"error: database unreachable or not writable: {url}: "), line
        assert line.endswith(said.format(path=path)), line
        stored = _count(url, "SELECT COUNT(*) FROM trades")
        assert stored == (0 if table == "trades" else 19)
        assert _count(url, "SELECT COUNT(*) FROM realised_lots") == 0
        if stored:
            run = run_cli("--config", str(cfg), "run", "--force")
            assert run.returncode == 0, run.stderr
            assert _count(url, "SELECT COUNT(*) FROM realised_lots") == 14
    finally:
        drop_pg_database(postgres_server, url)


def _blocked_backend(engine: sa.Engine, importing: threading.Thread) -> int:
    """The backend of the import once it waits on this test's table lock."""
    while importing.is_alive():
        with engine.connect() as conn:
            pid = conn.execute(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalar()
        if pid is not None:
            return int(pid)
        time.sleep(0.05)
    raise AssertionError("the import ended without waiting on the lock")
