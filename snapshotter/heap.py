"""The cyclic garbage collector in a process that runs one `snapshotter run` and ends.

Loading SQLAlchemy, requests and pandas builds about a million long-lived objects, and
the collector scans them again and again while they load: about 0.17 s of a
200-account run's CPU, some of it before the first login. So the `snapshotter run`
process holds collection off from its start (``hold_off``) until it has loaded what it
uses (``loaded``: after pandas, which the run loads while its first logins wait on the
network; before a ``--from-raw`` replay), then moves what is alive out of the
collector's sight for good (``gc.freeze``: modules, classes, the run's own state) and
collects again, after every 10,000 new objects rather than Python's 700 (the run's
objects mostly go with their last reference; a cycle waits a little longer). A
200-account run spent about 170 ms collecting; now under 10 ms
(`benchmarks/bench_timeline.py --gc-log`, docs/speed.md).

Only the command's own process does this (``cli.entry``): a program or test calling the
library, and the daemon, keep Python's defaults. A run with nothing to fetch turns
collection back on before rebuilding FIFO lots; the snapshots a lost database left in
the spool (a few) are stored while it is still off.
"""

from __future__ import annotations

import gc

_holding = False
# Objects made (net) between two young-generation collections once loaded; Python's is 700.
YOUNG_THRESHOLD = 10_000


def hold_off() -> None:
    """No collection until ``loaded``: for a process that runs one command and ends."""
    global _holding
    _holding = True
    gc.disable()


def loaded() -> None:
    """What is alive now lives until the process ends: frozen, and collection back on
    (less often). Nothing unless ``hold_off`` was called in this process."""
    if _holding:
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
        gc.enable()
