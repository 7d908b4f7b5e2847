"""gc's progress on stderr: a bar redrawn in place on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 30
PLAIN_EVERY_S = 5.0


def format_size(n: int) -> str:
    """Bytes in binary units, three significant digits: `512 B`, `1.21 KiB`, `340 MiB`."""
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    if unit == "B":
        return f"{n} B"
    return f"{size:.3g} {unit}" if size < 1000 else f"{size:.0f} {unit}"


class Progress:
    def __init__(self, stream: TextIO, total_bytes: int, total_sessions: int) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total_bytes = total_bytes
        self.total_sessions = total_sessions
        self.bytes = 0
        self.sessions = 0
        self._last_plain = 0.0
        self._drawn = False

    def add(self, n_bytes: int) -> None:
        self.bytes += n_bytes
        self._show(force=False)

    def session_done(self) -> None:
        self.sessions += 1
        self._show(force=True)

    def clear(self) -> None:
        """Before a line on stdout (which may be the same terminal), and at the end."""
        if self.tty and self._drawn:
            self.stream.write("\r" + " " * (BAR_WIDTH + 60) + "\r")
            self.stream.flush()
            self._drawn = False

    def _text(self) -> str:
        return (
            f"{format_size(self.bytes)} of {format_size(self.total_bytes)}, "
            f"{self.sessions}/{self.total_sessions} sessions"
        )

    def _show(self, force: bool) -> None:
        share = self.bytes / self.total_bytes if self.total_bytes else 1.0
        if self.tty:
            filled = int(BAR_WIDTH * min(share, 1.0))
            self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%} {self._text()}")
            self.stream.flush()
            self._drawn = True
        elif force or time.monotonic() - self._last_plain >= PLAIN_EVERY_S:
            self.stream.write(f"progress: {share:.0%}, {self._text()}\n")
            self.stream.flush()
            self._last_plain = time.monotonic()
