"""Zerodha Console's exports, read: tradebook, funds ledger, equity dividends, and the
user's own list of corporate actions; and FIFO lots built from the trades.

Pure, like normalize: a file (or the rows read from it) in, typed DataFrames out; no
database, no clock. A bad line is a ``BadFile`` naming the file and the line.
``pipeline.imports`` stores what these return and rebuilds the lots.
"""

from snapshotter.console.files import BadFile, Table, read_table

__all__ = ["BadFile", "Table", "read_table"]
