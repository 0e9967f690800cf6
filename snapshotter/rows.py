"""pandas columns -> plain Python rows, as the database driver takes them (NA -> None,
numpy scalars -> Python scalars, timestamps -> ``datetime``): normalize's checks read
records this way, and the store writes frames this way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

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


def column_arrays(frame: pd.DataFrame) -> list[Any]:
    """The frame's columns as arrays, without a Series per column (``DataFrame.items``
    builds one, which costs more than the column's values) where pandas has its walk."""
    walk = getattr(frame, "_iter_column_arrays", None)
    if walk is None:
        return [column.array for _, column in frame.items()]
    return list(walk())


def records(names: Sequence[Any], arrays: Sequence[Any],
            constants: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Columns -> plain Python rows (see ``plain_column``), each with ``constants``."""
    if not arrays or not len(arrays[0]):
        return []
    columns: list[Any] = [plain_column(array) for array in arrays]
    names = list(names)
    for name, value in (constants or {}).items():
        names.append(name)
        columns.append(repeat(value))
    return [dict(zip(names, row)) for row in zip(*columns)]  # noqa: B905 (repeat is endless)


def frame_records(frame: pd.DataFrame,
                  constants: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """DataFrame -> plain Python rows (NA -> None, numpy scalars -> Python scalars),
    each with ``constants`` added."""
    if frame.empty:
        return []
    return records(frame.columns.tolist(), column_arrays(frame), constants)


def plain_row(columns: Mapping[str, Any], index: int, names: Sequence[str]) -> dict[str, Any]:
    """Some columns of one row, as ``records`` gives them."""
    return {name: plain_column(columns[name][index:index + 1])[0] for name in names}
