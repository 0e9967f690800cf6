"""Reading a Console export (CSV, or XLSX with a preamble above its header) into a
table of cells, and typed columns out of it, each checked whole: the first bad cell of
the file is one ``BadFile`` naming the file and its line (CSV) or row (XLSX).

Within bounds, whatever the file: only a regular file is read, at most
``import.max_file_mb`` of it; rows are read as a stream (a workbook through
``console.workbook``, itself bounded) and only the wanted columns of at most
``MAX_ROWS`` rows are kept; a line, a row or a text cell past its bound is a
``BadFile``."""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from snapshotter.console.workbook import MAX_COLUMNS, MAX_ROW
from snapshotter.errors import UsageError
from snapshotter.normalize.checks import MAX_KEY_LENGTH
from snapshotter.normalize.values import clean_text

IST = "Asia/Kolkata"
HEADER_SEARCH_ROWS = 100  # non-blank rows; a header further down than this is not found
MAX_UNPACKED = 64 * 2**20  # import.max_file_mb's default
MAX_ROWS = MAX_ROW  # data rows of one file, CSV or XLSX
MAX_LINE = 2**20  # characters of one CSV line
READ_CHUNK = 2**20
NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
               (stat.S_ISSOCK, "a socket"))
MAX_EXACT_FLOAT = 2**53  # a spreadsheet number above this is not an exact ID
DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%Y/%m/%d")
CLIENT_ID_LABELS = {"client_id", "client_code", "ucc"}


class BadFile(UsageError):
    """A file that cannot be imported as given: one line naming the file (and the line
    or row); nothing of that file is stored. Exit code 2."""

    def __init__(self, file: str, problem: str, *, line: int | None = None,
                 where: str = "line"):
        self.file = file
        self.line = line
        at = f" {where} {line}" if line is not None else ""
        super().__init__(f"{file}:{at}: {problem}" if at else f"{file}: {problem}")


def header_name(text: object) -> str:
    """A header cell as a column name: ``Trade Date`` -> ``trade_date``, ``Ex-Date`` ->
    ``ex_date``, ``ISIN`` -> ``isin``."""
    if text is None:
        return ""
    return re.sub(r"[^a-z0-9]+", "_", str(text).strip().lower()).strip("_")


@dataclass(frozen=True)
class Table:
    """The data rows of one export below its header, as raw cells (text for CSV, the
    cell values for XLSX), with normalized column names and each row's line number."""

    file: str
    where: str  # "line" (CSV) or "row" (a spreadsheet row)
    frame: pd.DataFrame
    lines: list[int]
    header_line: int
    client_id: str | None = None

    def bad(self, position: int | None, problem: str) -> BadFile:
        line = self.lines[position] if position is not None else self.header_line
        return BadFile(self.file, problem, line=line, where=self.where)


def is_xlsx(data: bytes, file: str) -> bool:
    return data[:4] == b"PK\x03\x04" or file.lower().endswith((".xlsx", ".xlsm"))


def read_file(path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them (checked
    before reading, and again while reading: the file may grow). A FIFO, a device, a
    directory or a socket is refused before it is opened for reading, and again after
    (O_NONBLOCK: opening a FIFO must not wait for a writer)."""
    limit = round(max_bytes / 2**20, 3)
    too_big = BadFile(path, f"larger than {limit:g} MB (import.max_file_mb); not read")
    try:
        _check_file(path, os.stat(path), max_bytes, too_big)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            _check_file(path, os.fstat(fd), max_bytes, too_big)  # what was opened
            chunks: list[bytes] = []
            total = 0
            while chunk := os.read(fd, min(READ_CHUNK, max_bytes + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise too_big
            return b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BadFile(path, f"cannot read: {exc.strerror or exc}") from None


def _check_file(path: str, found: os.stat_result, max_bytes: int,
                   too_big: BadFile) -> None:
    if not stat.S_ISREG(found.st_mode):
        kind = next((what for test, what in NOT_REGULAR if test(found.st_mode)), "unknown")
        raise BadFile(path, f"not a regular file ({kind}); only regular files are imported")
    if found.st_size > max_bytes:
        raise too_big


def read_table(data: bytes, file: str, required: Sequence[str], *,
               optional: Sequence[str] = (), sheet: str | None = None,
               what: str = "Console export", max_unpacked: int = MAX_UNPACKED) -> Table:
    """The rows below the first row that names every ``required`` column (rows above it
    are a preamble; a "Client ID" there is kept). Blank rows are skipped; of the rows
    below the header only the ``required`` and ``optional`` columns are kept. A workbook
    is read sheet by sheet (``sheet`` first) until one has such a header, unpacking at
    most ``max_unpacked`` bytes of XML."""
    columns = [*required, *optional]
    if is_xlsx(data, file):
        table = _from_workbook(data, file, required, columns, sheet, max_unpacked)
    else:
        table = _below_header(file, "line", _csv_rows(data, file), required, columns)
    if table is None:
        raise BadFile(file, f"not a {what}: no header row with the columns "
                            f"{', '.join(required)}")
    return table


def _csv_rows(data: bytes, file: str) -> Iterator[tuple[int, list[Any]]]:
    """(first line, fields) of each CSV record, decoded and split as they are read."""
    try:
        data.decode("utf-8-sig")  # checked whole first: the first bad byte is named
    except UnicodeDecodeError as exc:
        raise BadFile(file, f"not UTF-8 text (byte {exc.start})") from None
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    reader = csv.reader(_bounded_lines(text, file))
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise BadFile(file, f"not CSV: {exc}", line=start) from None


def _bounded_lines(text: Iterable[str], file: str) -> Iterator[str]:
    for number, line in enumerate(text, start=1):
        if len(line) > MAX_LINE:
            raise BadFile(file, f"longer than {MAX_LINE:,} characters", line=number)
        yield line


def _from_workbook(data: bytes, file: str, required: Sequence[str], columns: list[str],
                   sheet: str | None, max_unpacked: int) -> Table | None:
    from xml.parsers.expat import ExpatError

    from snapshotter.console.workbook import Workbook, WorkbookError

    try:
        with Workbook(data, max_unpacked) as book:
            names = list(book.sheets)
            for name in ([sheet] if sheet in names else []) + [n for n in names
                                                               if n != sheet]:
                table = _below_header(file, "row", book.rows(name), required, columns)
                if table is not None:
                    return table
            return None
    except BadFile:
        raise
    except WorkbookError as exc:
        raise BadFile(file, exc.problem, line=exc.row, where="row") from None
    except ExpatError:  # an XML part cut short or not XML
        raise BadFile(file, "not a readable XLSX workbook (ParseError)") from None
    except Exception as exc:  # zipfile's errors, a part missing: not a workbook
        raise BadFile(file, f"not a readable XLSX workbook ({type(exc).__name__})") from None


def _below_header(file: str, where: str, rows: Iterable[tuple[int, list[Any]]],
                  required: Sequence[str], columns: Sequence[str]) -> Table | None:
    """The Table below the first of the first HEADER_SEARCH_ROWS non-blank rows that
    names every required column; None when none does."""
    wanted = set(required)
    preamble: list[list[Any]] = []
    rows = iter(rows)
    for line, cells in rows:
        _check_width(file, where, line, cells)
        if all(_blank(c) for c in cells):
            continue
        names = [header_name(c) for c in cells]
        if wanted <= set(names):
            break
        preamble.append(cells)
        if len(preamble) >= HEADER_SEARCH_ROWS:
            return None
    else:
        return None
    header_line = line
    position = {name: names.index(name) for name in columns if name in names}
    width = len(names)
    kept: list[list[Any]] = []
    lines: list[int] = []
    for line, cells in rows:
        if all(_blank(c) for c in cells):
            continue
        if where == "line" and len(cells) != width and not (
                len(cells) > width and all(_blank(c) for c in cells[width:])):
            _check_width(file, where, line, cells)
            raise BadFile(file, f"{len(cells)} fields where the header has {width}",
                          line=line, where=where)
        if len(kept) >= MAX_ROWS:
            raise BadFile(file, f"more than {MAX_ROWS:,} rows below the header "
                                "(Excel's limit); split the export by date")
        kept.append([cells[i] if i < len(cells) else None for i in position.values()])
        lines.append(line)
    frame = pd.DataFrame(kept, columns=list(position), dtype=object)
    return Table(file, where, frame, lines, header_line, _client_id(preamble))


def _check_width(file: str, where: str, line: int, cells: list[Any]) -> None:
    if len(cells) > MAX_COLUMNS:
        raise BadFile(file, f"{len(cells):,} fields, more than the {MAX_COLUMNS} read",
                      line=line, where=where)


def _blank(cell: object) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _client_id(preamble: list[list[Any]]) -> str | None:
    for cells in preamble:
        for i, cell in enumerate(cells):
            if header_name(cell) in CLIENT_ID_LABELS:
                rest = [c for c in cells[i + 1:] if not _blank(c)]
                if rest:
                    return str(rest[0]).strip().upper()
    return None


def _as_text(cell: object) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, datetime):
        return cell.date().isoformat() if cell.time() == datetime.min.time() \
            else cell.isoformat()
    if isinstance(cell, date):
        return cell.isoformat()
    if isinstance(cell, float) and cell.is_integer() and abs(cell) < MAX_EXACT_FLOAT:
        return str(int(cell))
    return str(cell).strip()


def _aware(text: str) -> datetime | None:
    """An ISO date and time with its offset, India's time where it gives none."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(IST))


class Cells:
    """Typed columns out of a Table. Each method converts a whole column and notes its
    first bad cell; ``done()`` raises the bad cell that comes first in the file."""

    def __init__(self, table: Table):
        self.table = table
        self.frame = table.frame
        self._first: tuple[int, str] | None = None

    def __len__(self) -> int:
        return len(self.frame)

    def problem(self, mask: pd.Series, describe: Any) -> None:
        """Note the first row where ``mask`` is true; ``describe(position)`` says what
        is wrong with it."""
        if len(mask) and bool(mask.any()):
            position = int(mask.to_numpy().argmax())
            if self._first is None or position < self._first[0]:
                self._first = (position, describe(position))

    def done(self) -> None:
        if self._first is not None:
            raise self.table.bad(*self._first)

    def raw(self, column: str) -> pd.Series:
        if column in self.frame.columns:
            return self.frame[column]
        return pd.Series([None] * len(self.frame), index=self.frame.index, dtype=object)

    def text(self, column: str, *, required: bool = True, upper: bool = False) -> pd.Series:
        """Text as both databases store it: NUL -> U+FFFD; at most MAX_KEY_LENGTH
        characters (text columns are keys or parts of one, and PostgreSQL refuses an
        index entry over ~2,700 bytes)."""
        raw = self.raw(column)
        self.problem(raw.map(lambda c: isinstance(c, float) and abs(c) >= MAX_EXACT_FLOAT
                             and c.is_integer()),
                     lambda p: f"{column} {raw.iloc[p]!r} is a spreadsheet number too large "
                               "to be exact (export the CSV, which keeps it as text)")
        values = raw.map(lambda c: clean_text(_as_text(c))).astype(object)
        if upper:
            values = values.str.upper()
        length = values.str.len()
        self.problem(length > MAX_KEY_LENGTH,
                     lambda p: f"{column} is {length.iloc[p]:,} characters long, more than "
                               f"the {MAX_KEY_LENGTH} a text column holds")
        if required:
            self.problem(values == "", lambda p: f"{column} is blank")
        return values.where(values != "", None)

    def number(self, column: str, *, positive: bool = False,
               required: bool = True) -> pd.Series:
        text = self.raw(column).map(_as_text).astype(object)
        values = pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce")
        values = values.astype("float64")
        given = text != ""
        bad = (given & (values.isna() | ~values.abs().lt(float("inf"))))
        self.problem(bad, lambda p: f"{column} {text.iloc[p]!r} is not a number")
        if required:
            self.problem(~given, lambda p: f"{column} is blank")
        if positive:
            self.problem(given & ~bad & (values <= 0),
                         lambda p: f"{column} {text.iloc[p]} is not more than 0")
        return values

    def date(self, column: str, *, required: bool = True) -> pd.Series:
        text = self.raw(column).map(_as_text).astype(object)
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[s]")
        for fmt in DATE_FORMATS:
            todo = parsed.isna() & (text != "")
            if not todo.any():
                break
            parsed[todo] = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        given = text != ""
        self.problem(given & parsed.isna(),
                     lambda p: f"{column} {text.iloc[p]!r} is not a date (YYYY-MM-DD)")
        if required:
            self.problem(~given, lambda p: f"{column} is blank")
        return parsed.dt.date.astype(object).where(parsed.notna(), None)

    def timestamp(self, column: str, *, required: bool = True) -> pd.Series:
        """ISO date and time; without an offset it is India's time (Console's)."""
        text = self.raw(column).map(_as_text).astype(object)
        given = text != ""
        try:
            parsed = pd.to_datetime(text.where(given, None), format="ISO8601",
                                    errors="coerce")
        except ValueError:  # offsets that differ from row to row, or rows without one
            parsed = pd.to_datetime(text.map(_aware), utc=True)
        if parsed.dt.tz is None:
            parsed = parsed.dt.tz_localize(IST, ambiguous="NaT", nonexistent="NaT")
        parsed = parsed.dt.tz_convert("UTC")
        self.problem(given & parsed.isna(),
                     lambda p: f"{column} {text.iloc[p]!r} is not a date and time "
                               "(YYYY-MM-DDTHH:MM:SS)")
        if required:
            self.problem(~given, lambda p: f"{column} is blank")
        return parsed.astype(object).where(parsed.notna(), None)

    def choice(self, column: str, allowed: Sequence[str], *, required: bool = True,
               ) -> pd.Series:
        values = self.text(column, required=required)
        lowered = values.str.lower()
        self.problem(values.notna() & ~lowered.isin(allowed),
                     lambda p: f"{column} {values.iloc[p]!r} is not one of "
                               f"{', '.join(allowed)}")
        return lowered.where(values.notna(), None)

    def boolean(self, column: str) -> pd.Series:
        values = self.choice(column, ("true", "false", "yes", "no", "1", "0"),
                             required=False)
        return values.map({"true": True, "yes": True, "1": True, "false": False,
                           "no": False, "0": False}).astype(object).where(values.notna(), None)
