"""pandas columns -> plain Python rows, as the database driver takes them (NA -> None,
numpy scalars -> Python scalars, timestamps -> ``datetime``): normalize's checks read
records this way, and the store writes frames this way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, TypeAlias

import numpy as np
import pandas as pd


def plain_column(array: Any) -> np.ndarray:
    """One column's values as the database driver takes them: Python scalars, None for
    NA, ``datetime`` for timestamps."""
    if array.dtype.kind == "M":  # datetime64, with a zone or not
        times = pd.array(array) if isinstance(array, np.ndarray) else array
        values = np.asarray(times.to_pydatetime(), dtype=object)
        values[np.asarray(times.isna())] = None
        return values
    if isinstance(array, np.ndarray):
        values = array.astype(object)
        values[pd.isna(array)] = None
        return values
    return np.asarray(array.to_numpy(dtype=object, na_value=None))


@dataclass(frozen=True)
class TableColumns:
    """One table's rows, column by column: the names and a typed pandas (or numpy) array
    each, all of one length. What normalize gives the store: building a DataFrame of
    them, and taking its columns back out, would cost more than the rest of normalize."""

    names: tuple[str, ...]
    arrays: tuple[Any, ...]

    @classmethod
    def of(cls, columns: Mapping[str, Any]) -> TableColumns:
        return cls(tuple(columns), tuple(columns.values()))

    def __len__(self) -> int:
        return len(self.arrays[0]) if self.arrays else 0

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(dict(zip(self.names, self.arrays, strict=True)), copy=False)


@dataclass(frozen=True)
class TablePart:
    """Rows ``start:stop`` of a table that several account snapshots share (one
    ``normalize_snapshots`` pass): the store writes the parts of one table in one go."""

    whole: TableColumns
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def names(self) -> tuple[str, ...]:
        return self.whole.names

    @property
    def arrays(self) -> tuple[Any, ...]:
        return tuple(array[self.start:self.stop] for array in self.whole.arrays)

    def frame(self) -> pd.DataFrame:
        return TableColumns(self.names, self.arrays).frame()


# What the store takes for a table: normalize's columns, or a DataFrame of the same columns.
TableRows: TypeAlias = pd.DataFrame | TableColumns | TablePart


def _frame_column(column: pd.Series) -> Any:
    array = column.array
    return array.to_numpy() if isinstance(array, pd.arrays.NumpyExtensionArray) else array


def records(names: Sequence[Any], arrays: Sequence[Any],
            constants: Mapping[str, Any] | None = None,
            plain: Mapping[str, Sequence[Any]] | None = None) -> list[dict[str, Any]]:
    """Columns -> plain Python rows (see ``plain_column``), each with ``constants``, and
    ``plain`` columns taken as they are."""
    if not arrays or not len(arrays[0]):
        return []
    columns: list[Any] = [plain_column(array) for array in arrays]
    names = list(names)
    for name, values in (plain or {}).items():
        names.append(name)
        columns.append(values)
    for name, value in (constants or {}).items():
        names.append(name)
        columns.append(repeat(value))
    return [dict(zip(names, row)) for row in zip(*columns)]  # noqa: B905 (repeat is endless)


def frame_records(frame: TableRows,
                  constants: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """A table's columns or a DataFrame -> plain Python rows (NA -> None, numpy scalars
    -> Python scalars), each with ``constants`` added."""
    if isinstance(frame, TableColumns | TablePart):
        return records(frame.names, frame.arrays, constants)
    if frame.empty:
        return []
    return records(frame.columns.tolist(), [_frame_column(c) for _, c in frame.items()],
                   constants)


def plain_row(columns: Mapping[str, Any], index: int, names: Sequence[str]) -> dict[str, Any]:
    """Some columns of one row, as ``records`` gives them."""
    return {name: plain_column(columns[name][index:index + 1])[0] for name in names}
