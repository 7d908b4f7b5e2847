"""Progress of a fleet command on stderr: redrawn in place on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import time
from typing import TextIO

PLAIN_EVERY_S = 5.0


class Progress:
    def __init__(self, stream: TextIO, what: str, total: int) -> None:
        self.stream, self.what, self.total = stream, what, total
        self.done = self.failed = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._tty = stream.isatty()

    def step(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        now = time.monotonic()
        if self._tty or self.done == self.total or now - self._last >= PLAIN_EVERY_S:
            self._last = now
            end = "\n" if not self._tty or self.done == self.total else ""
            start = "\r" if self._tty else ""
            self.stream.write(f"{start}{self.line()}{end}")
            self.stream.flush()

    def line(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.what}: {self.done}/{self.total} sessions{failed}, {time.monotonic() - self.started:.1f}s"

    def note(self, text: str) -> None:
        """A line of its own (a failure), not overwritten by the next redraw."""
        self.stream.write(("\n" if self._tty and self.done else "") + text + "\n")
        self.stream.flush()
