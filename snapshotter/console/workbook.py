"""An XLSX workbook read as a stream, within bounds: its rows, sheet by sheet, as cell
values (text, numbers, booleans, datetimes), without ever holding a sheet's XML.

A workbook is a zip of XML parts, and a few kilobytes of it can unpack to gigabytes or
name a cell a million rows down. So every part is unpacked through one budget
(``max_unpacked`` bytes for the whole workbook), parsed incrementally, and each bound is
checked as the XML arrives: a text longer than Excel's 32,767 characters, more shared
strings than a sheet could use, a cell past column ``MAX_COLUMNS`` or row 1,048,576.
A ``<dimension>`` is never trusted (rows are read as they come, empty ones skipped).
Any of these is a ``WorkbookError``; a zip or XML that does not parse raises what
zipfile or expat raise.
"""

from __future__ import annotations

import io
import posixpath
import re
import struct
import zipfile
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any
from xml.parsers import expat

MAX_COLUMNS = 256  # column IV; Console's exports have fewer than 20
MAX_ROW = 1_048_576  # Excel's last row
MAX_TEXT = 32_767  # Excel's limit on the characters of one cell
MAX_SHARED_STRINGS = 1_048_576
MAX_PARTS = 1_000  # zip members; an XLSX has about ten
CHUNK = 64 * 1024

_COLUMN = re.compile(r"([A-Z]{1,3})(\d*)$")


class WorkbookError(ValueError):
    """A workbook beyond a bound (or not shaped like one): the problem in words, and the
    sheet row it was found at, if any."""

    def __init__(self, problem: str, row: int | None = None):
        self.problem = problem
        self.row = row
        super().__init__(problem)


class Workbook:
    """``Workbook(data, max_unpacked)``: open, read the workbook's parts that say where
    the sheets are, its styles and shared strings; then ``rows(name)`` streams a sheet."""

    def __init__(self, data: bytes, max_unpacked: int):
        _check_part_count(data)
        self.max_unpacked = max_unpacked
        self.unpacked = 0
        self.zip = zipfile.ZipFile(io.BytesIO(data))  # BytesIO shares the bytes
        try:
            self._names = set(self.zip.namelist())
            book = _target("", self._relationships("_rels/.rels").get("officeDocument"),
                           default="xl/workbook.xml")
            links = self._relationships(_rels_of(book))
            listing = _WorkbookListing()
            self._parse(book, listing)
            self.epoch = _epoch(listing.date1904)
            folder = posixpath.dirname(book)
            self.sheets: dict[str, str] = {}
            for name, link in listing.sheets:
                part = _target(folder, links.get(link))
                if part in self._names:
                    self.sheets.setdefault(name, part)
            self.date_styles = self._date_styles(
                _target(folder, links.get("styles"), default=f"{folder}/styles.xml"))
            self.shared = self._shared_strings(
                _target(folder, links.get("sharedStrings"),
                        default=f"{folder}/sharedStrings.xml"))
        except BaseException:
            self.zip.close()
            raise

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def rows(self, sheet: str) -> Iterator[tuple[int, list[Any]]]:
        """(row number, cells) of each row that has a cell, in the order the sheet gives
        them; ``cells[0]`` is column A. Parsed as it is read: a caller that stops early
        reads no more of the sheet."""
        reader = _SheetReader(self.shared, self.date_styles, self.epoch)
        parser = _parser(reader.start, reader.end, reader.text, prefixed=False)
        with self.zip.open(self.sheets[sheet]) as stream:
            while chunk := self._read(stream, self.sheets[sheet]):
                parser.Parse(chunk, False)
                yield from reader.take()
            parser.Parse(b"", True)
            yield from reader.take()

    # --- the parts other than sheets ----------------------------------------------------

    def _read(self, stream: IO[bytes], part: str) -> bytes:
        chunk = stream.read(CHUNK)
        self.unpacked += len(chunk)
        if self.unpacked > self.max_unpacked:
            limit = round(self.max_unpacked / 2**20, 3)
            raise WorkbookError(f"unpacks to more than {limit:g} MB of XML (at {part}; "
                                "import.max_file_mb)")
        return chunk

    def _parse(self, part: str, handler: _Handler | _SharedStrings) -> None:
        parser = _parser(handler.start, handler.end, handler.text,
                         prefixed=handler.prefixed)
        with self.zip.open(part) as stream:
            while chunk := self._read(stream, part):
                parser.Parse(chunk, False)
        parser.Parse(b"", True)

    def _relationships(self, part: str) -> dict[str, str]:
        """A rels part: each relationship's type (its last word: ``styles``,
        ``officeDocument``...) and id, each mapped to its target."""
        if part not in self._names:
            return {}
        found: dict[str, str] = {}

        def start(name: str, attrs: dict[str, str]) -> None:
            if name == "Relationship" and "Target" in attrs:
                if attrs.get("Id"):
                    found.setdefault(attrs["Id"], attrs["Target"])
                kind = attrs.get("Type", "").rsplit("/", 1)[-1]
                if kind:
                    found.setdefault(kind, attrs["Target"])

        self._parse(part, _Handler(start))
        return found

    def _date_styles(self, part: str) -> dict[int, bool]:
        """The cell styles (``s`` of a cell) whose number format shows a date or time:
        style -> whether it is a duration (``[h]:mm``)."""
        from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format

        if part not in self._names:
            return {}
        custom: dict[int, str] = {}
        styles: list[int] = []
        depth: list[str] = []

        def start(name: str, attrs: dict[str, str]) -> None:
            depth.append(name)
            if name == "numFmt" and _whole(attrs.get("numFmtId", "")) is not None:
                custom[int(attrs["numFmtId"])] = attrs.get("formatCode", "")
            elif name == "xf" and len(depth) >= 2 and depth[-2] == "cellXfs":
                if len(styles) >= MAX_SHARED_STRINGS:
                    raise WorkbookError("more cell styles than a workbook holds")
                styles.append(_whole(attrs.get("numFmtId", "0")) or 0)

        def end(name: str) -> None:
            depth.pop()

        self._parse(part, _Handler(start, end))
        found: dict[int, bool] = {}
        for index, number in enumerate(styles):
            code = custom.get(number, BUILTIN_FORMATS.get(number))
            if is_date_format(code):
                found[index] = bool(is_timedelta_format(code))
        return found

    def _shared_strings(self, part: str) -> list[str]:
        if part not in self._names:
            return []
        reader = _SharedStrings()
        self._parse(part, reader)
        return reader.strings


def _check_part_count(data: bytes) -> None:
    """A zip's directory is read whole when it is opened: count its entries first (the
    end record, within the last 64 KB), so that a million empty members are refused."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end >= 0 and end + 12 <= len(data):
        (count,) = struct.unpack_from("<H", data, end + 10)
        if count > MAX_PARTS:
            raise WorkbookError(f"a zip of {count} parts, more than the {MAX_PARTS} read")


def _whole(text: str) -> int | None:
    """A row number, column count or index as the XML writes it; None if it is not one."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def _rels_of(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", f"{name}.rels")


def _target(folder: str, target: str | None, default: str = "") -> str:
    if not target:
        return default
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(folder, target))


def _epoch(date1904: bool) -> datetime:
    from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900

    return CALENDAR_MAC_1904 if date1904 else CALENDAR_WINDOWS_1900


def _local(name: str) -> str:
    """``x:c`` -> ``c``: parts may prefix their elements and attributes, or not."""
    return name.rpartition(":")[2]


def _local_attrs(attrs: dict[str, str]) -> dict[str, str]:
    return {_local(k): v for k, v in attrs.items()} if attrs else attrs


def _no_dtd(*_: object) -> None:
    raise WorkbookError("an XML part declares a DTD, which a workbook never does")


def _parser(start: Callable[[str, dict[str, str]], None], end: Callable[[str], None],
            text: Callable[[str], None], *, prefixed: bool = True) -> Any:
    """An expat parser calling ``start``/``end`` with local names and attributes, or
    (``prefixed=False``: the big parts, where each call counts) with them as written."""
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.buffer_size = CHUNK
    parser.StartDoctypeDeclHandler = _no_dtd
    parser.EntityDeclHandler = _no_dtd
    if prefixed:
        parser.StartElementHandler = lambda name, attrs: start(_local(name),
                                                               _local_attrs(attrs))
        parser.EndElementHandler = lambda name: end(_local(name))
    else:
        parser.StartElementHandler = start
        parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    return parser


class _Handler:
    prefixed = True

    def __init__(self, start: Callable[[str, dict[str, str]], None],
                 end: Callable[[str], None] | None = None):
        self.start = start
        self.end = end or (lambda name: None)

    def text(self, data: str) -> None:
        pass


class _WorkbookListing(_Handler):
    """workbook.xml: the sheets in order (name, relationship id), and the date system."""

    def __init__(self) -> None:
        super().__init__(self._start)
        self.sheets: list[tuple[str, str]] = []
        self.date1904 = False

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if name == "sheet" and len(self.sheets) < MAX_PARTS:
            self.sheets.append((attrs.get("name", ""), attrs.get("id", "")))
        elif name == "workbookPr":
            self.date1904 = attrs.get("date1904", "").lower() in ("1", "true")


class _Text:
    """The text of string items (``<si>``, or an inline ``<is>``), one at a time: their
    ``<t>`` runs, phonetic runs (``<rPh>``) left out, at most MAX_TEXT characters."""

    __slots__ = ("inside", "length", "phonetic", "pieces")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.length = 0
        self.inside = False  # in a <t> that counts
        self.phonetic = 0

    def start(self, name: str) -> None:
        if name == "t":
            self.inside = not self.phonetic
        elif name == "rPh":
            self.phonetic += 1

    def end(self, name: str) -> None:
        if name == "t":
            self.inside = False
        elif name == "rPh":
            self.phonetic -= 1

    def add(self, data: str, row: int | None = None) -> None:
        if self.inside:
            self.length += len(data)
            if self.length > MAX_TEXT:
                raise WorkbookError(
                    f"a text longer than {MAX_TEXT:,} characters (Excel's limit)", row)
            self.pieces.append(data)

    def value(self) -> str:
        text = "".join(self.pieces)
        self.pieces.clear()
        self.length = 0
        return text


class _SharedStrings:
    """sharedStrings.xml: the strings, in order, at most MAX_SHARED_STRINGS of them."""

    prefixed = False

    def __init__(self) -> None:
        self.strings: list[str] = []
        self.item = _Text()
        self.inside = False  # in an <si>

    def start(self, name: str, attrs: dict[str, str]) -> None:
        name = name[name.find(":") + 1:]
        if name == "si":
            if len(self.strings) >= MAX_SHARED_STRINGS:
                raise WorkbookError(f"more than {MAX_SHARED_STRINGS:,} shared strings")
            self.inside = True
        elif self.inside:
            self.item.start(name)

    def end(self, name: str) -> None:
        name = name[name.find(":") + 1:]
        if name == "si":
            self.strings.append(self.item.value())
            self.inside = False
        elif self.inside:
            self.item.end(name)

    def text(self, data: str) -> None:
        if self.inside:
            self.item.add(data)


class _SheetReader:
    """A worksheet's ``<sheetData>``: each ``<row>`` becomes (number, cells) when it
    ends; ``take()`` hands over the rows ended so far."""

    def __init__(self, shared: list[str], date_styles: dict[int, bool], epoch: datetime):
        from openpyxl.utils.datetime import from_excel, from_ISO8601

        self.from_excel = from_excel
        self.from_iso = from_ISO8601
        self.shared = shared
        self.date_styles = date_styles
        self.epoch = epoch
        self.done: list[tuple[int, list[Any]]] = []
        self.row_number = 0
        self.cells: dict[int, Any] | None = None  # the row being read: column -> value
        self.column = 0
        self.kind = "n"
        self.style = 0
        self.value: list[str] | None = None  # the <v> being read
        self.value_length = 0
        self.inline: _Text | None = None  # the <is> being read

    def take(self) -> list[tuple[int, list[Any]]]:
        done, self.done = self.done, []
        return done

    def start(self, name: str, attrs: dict[str, str]) -> None:
        name = name[name.find(":") + 1:]
        if self.cells is None:
            if name == "row":
                self._row(attrs.get("r", ""))
        elif self.inline is not None:
            self.inline.start(name)
        elif name == "c":
            self._cell(attrs)
        elif name == "v":
            self.value, self.value_length = [], 0
        elif name == "is":
            self.inline = _Text()

    def end(self, name: str) -> None:
        name = name[name.find(":") + 1:]
        if name == "v" and self.value is not None:
            self._set(self._typed("".join(self.value)))
            self.value = None
        elif self.inline is not None:
            if name == "is":
                self._set(self.inline.value())
                self.inline = None
            else:
                self.inline.end(name)
        elif name == "row" and self.cells is not None:
            if self.cells:
                cells = self.cells
                self.done.append((self.row_number, [cells.get(i) for i in
                                                    range(1, max(cells) + 1)]))
            self.cells = None

    def text(self, data: str) -> None:
        if self.value is not None:
            self.value_length += len(data)
            if self.value_length > MAX_TEXT:
                raise WorkbookError(
                    f"a value longer than {MAX_TEXT:,} characters (Excel's limit)",
                    self.row_number)
            self.value.append(data)
        elif self.inline is not None:
            self.inline.add(data, self.row_number)

    def _row(self, written: str) -> None:
        number = _whole(written)
        self.row_number = number if number is not None else self.row_number + 1
        if not 0 < self.row_number <= MAX_ROW:
            raise WorkbookError(f"a row numbered {written[:20]!r}, not one of Excel's rows "
                                f"1 to {MAX_ROW:,}")
        self.cells, self.column = {}, 0

    def _cell(self, attrs: dict[str, str]) -> None:
        reference = _COLUMN.match(attrs.get("r", "").upper())
        if reference:
            self.column = _column_number(reference.group(1))
        else:
            self.column += 1
        if self.column > MAX_COLUMNS:
            letters = reference.group(1) if reference else f"number {self.column}"
            raise WorkbookError(f"a cell in column {letters}, past the {MAX_COLUMNS} "
                                "columns read (column IV)", self.row_number)
        self.kind = attrs.get("t", "n")
        self.style = _whole(attrs.get("s", "0")) or 0

    def _set(self, value: Any) -> None:
        if self.cells is not None and value is not None and value != "":
            self.cells[self.column] = value

    def _typed(self, text: str) -> Any:
        """A ``<v>`` as openpyxl reads it (data only): shared strings looked up, numbers
        as int or float (dates where the cell's style shows one), booleans."""
        kind = self.kind
        if kind == "s":
            index = _whole(text.strip())
            if index is None or index >= len(self.shared):
                raise WorkbookError(f"a cell names shared string {text[:20]!r}, which the "
                                    "workbook does not have", self.row_number)
            return self.shared[index]
        if kind == "n":
            try:
                number: int | float = (float(text) if any(c in text for c in ".eE")
                                       else int(text))
            except ValueError:
                return text
            if self.style in self.date_styles:
                try:
                    return self.from_excel(number, self.epoch,
                                           timedelta=self.date_styles[self.style])
                except (OverflowError, ValueError):
                    return text
            return number
        if kind == "b":
            return text.strip() in ("1", "true")
        if kind == "d":
            try:
                return self.from_iso(text)
            except ValueError:
                return text
        return text  # str (a formula's text), e (an error such as #N/A)
