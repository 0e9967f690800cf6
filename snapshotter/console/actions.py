"""The user's own list of splits and bonuses (``snapshotter import actions``), for the
ones the snapshots missed, and to say which a ``corporate_actions`` row was.

CSV (or XLSX) header ``symbol,isin,ex_date,action,new_shares,for_every`` (isin may be
blank or left out):

- ``split``: every ``for_every`` shares become ``new_shares`` shares (a 1:5 split of a
  face value of 10 into 2 is ``5`` for ``1``; a consolidation ``1`` for ``10``);
- ``bonus``: ``new_shares`` new shares for every ``for_every`` held (a 1:2 bonus is
  ``1`` for ``2``).

Each of ``new_shares`` and ``for_every`` is a number from ``MIN_SHARES`` to
``MAX_SHARES``, and the ratio between them at most ``MAX_RATIO`` either way: far beyond
any split or bonus there has been, and a quantity times it stays finite.
"""

from __future__ import annotations

import pandas as pd

from snapshotter.console.files import MAX_UNPACKED, Cells, read_table

COLUMNS = ("symbol", "ex_date", "action", "new_shares", "for_every")
OPTIONAL = ("isin",)
KEY = ("tradingsymbol", "ex_date", "action")
MIN_SHARES = 0.001
MAX_SHARES = 1_000_000
MAX_RATIO = 10_000


def parse(data: bytes, file: str, *, max_unpacked: int = MAX_UNPACKED) -> pd.DataFrame:
    table = read_table(data, file, COLUMNS, optional=OPTIONAL,
                       what="list of corporate actions",
                       max_unpacked=max_unpacked)
    cells = Cells(table)
    frame = pd.DataFrame({
        "tradingsymbol": cells.text("symbol", upper=True),
        "isin": cells.text("isin", required=False, upper=True),
        "ex_date": cells.date("ex_date"),
        "action": cells.choice("action", ("split", "bonus")),
        "new_shares": cells.number("new_shares", positive=True),
        "for_every": cells.number("for_every", positive=True),
        "line": table.lines,
    })
    for column in ("new_shares", "for_every"):
        values = frame[column]
        cells.problem(~values.between(MIN_SHARES, MAX_SHARES) & (values > 0),
                      lambda p, c=column, v=values: f"{c} {v.iloc[p]:g} is not between "
                                                    f"{MIN_SHARES:g} and {MAX_SHARES:,}")
    ratio = frame["new_shares"] / frame["for_every"]
    cells.problem(~ratio.between(1 / MAX_RATIO, MAX_RATIO) & ratio.notna(),
                  lambda p: f"{frame['new_shares'].iloc[p]:g} for "
                            f"{frame['for_every'].iloc[p]:g} is a ratio beyond "
                            f"{MAX_RATIO:,} to 1 either way")
    repeat = frame.duplicated(list(KEY), keep="first")
    cells.problem(repeat, lambda p: f"{frame['action'].iloc[p]} of "
                                    f"{frame['tradingsymbol'].iloc[p]} on "
                                    f"{frame['ex_date'].iloc[p]} is listed twice")
    cells.done()
    return frame
