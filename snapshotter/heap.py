"""The cyclic garbage collector in a process that runs one `snapshotter run` and ends.

Loading SQLAlchemy, requests and pandas builds about a million long-lived objects, and
the collector scans them again and again while they load: about 0.17 s of a
200-account run's CPU, some of it before the first login. So the `snapshotter run`
process holds collection off from its start (``hold_off``) until it has loaded what it
uses (``loaded``: after pandas, which the run loads while its first logins wait on the
network; before a ``--from-raw`` replay), then moves what is alive out of the
collector's sight for good (``gc.freeze``: modules, classes, the run's own state) and
collects again as usual.

Only the command's own process does this (``cli.entry``): a program or test calling the
library, and the daemon, keep Python's defaults.
"""

from __future__ import annotations

import gc

_holding = False


def hold_off() -> None:
    """No collection until ``loaded``: for a process that runs one command and ends."""
    global _holding
    _holding = True
    gc.disable()


def loaded() -> None:
    """What is alive now lives until the process ends: frozen, and collection back on.
    Nothing unless ``hold_off`` was called in this process."""
    if _holding:
        gc.freeze()
        gc.enable()
