"""Progress for long commands: a live line on a terminal, silence in logs and pipes."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO


class Progress:
    def __init__(self, total: int, what: str, stream: TextIO | None = None):
        self.total = total
        self.what = what
        self.done = 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def __enter__(self) -> Progress:
        self._draw()
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def note(self, message: str) -> None:
        """A line worth keeping (printed on stdout above the progress line)."""
        if self.live:
            self.stream.write("\r\033[K")
        print(message)
        self._draw()

    def _draw(self) -> None:
        if self.live:
            width = 30
            filled = width * self.done // max(self.total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                              f"{self.done}/{self.total} {self.what}")
            self.stream.flush()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()
