"""Command line: parses options and calls one library function per command.

A command imports what it uses when it runs: ``--help``, ``--version``, usage errors,
``status`` and ``systemd`` never load pandas, Alembic or APScheduler (tests/test_startup.py).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from snapshotter import heap, logs, redact
from snapshotter.cli.parser import build_parser, parse_args
from snapshotter.errors import ConfigError, DatabaseUnavailable, ExitCode, SnapshotterError

__all__ = ["build_parser", "entry", "main"]

log = logging.getLogger("snapshotter")


def main(argv: Sequence[str] | None = None) -> int:
    return _main(parse_args(build_parser(), argv))


def entry() -> NoReturn:
    """The `snapshotter` command (and `python -m snapshotter`). After `run`, the process
    ends without tearing the interpreter down: freeing pandas, numpy and SQLAlchemy
    module by module costs about 0.15 s that no one waits for (the run has disposed of
    its database, sent its pings and notices; logs and output are flushed here). A `run`
    also keeps the garbage collector off what it loads, which lives until then (heap)."""
    args = parse_args(build_parser(), None)
    if args.command == "run":
        heap.hold_off()  # a process that ends after the run: see snapshotter.heap
    code = _main(args)
    if args.command != "run":
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _main(args: argparse.Namespace) -> int:
    logs.setup("INFO", json_lines=args.json_logs)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"error: {redact.redact(line)}", file=sys.stderr)
        return exc.exit_code
    except SnapshotterError as exc:
        print(f"error: {redact.redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # `snapshotter report ... | head`: the reader has what it wanted. Nothing more can
        # be written; point stdout at /dev/null so that Python's exit flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as exc:  # the last line of defence: one line, no secrets
        # Only a command that imported SQLAlchemy can raise its errors.
        sa_exc = sys.modules.get("sqlalchemy.exc")
        if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
            from snapshotter.store import engine as db

            if db.is_connection_error(exc):
                print(f"error: {redact.redact(str(db.unavailable(exc, '')))}", file=sys.stderr)
                return DatabaseUnavailable.exit_code
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"error: database: {redact.redact(first)}", file=sys.stderr)
            return ExitCode.FAILURE
        log.debug("unexpected error", exc_info=True)
        print(f"error: {type(exc).__name__}: {redact.redact(str(exc))}", file=sys.stderr)
        return ExitCode.FAILURE
