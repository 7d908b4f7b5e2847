"""Spool files named in write order, `<prefix>-<seq:06d>.<ext>` (the metrics blocks and the API snapshots)."""

from __future__ import annotations

import re


class SequencedNames:
    def __init__(self, prefix: str, ext: str) -> None:
        self.prefix, self.ext = prefix, ext
        self._pattern = re.compile(rf"^{re.escape(prefix)}-(\d{{6}})\.{re.escape(ext)}$")

    def name(self, seq: int) -> str:
        return f"{self.prefix}-{seq:06d}.{self.ext}"

    def parse(self, name: str) -> int | None:
        """The `<seq>` of such a file name, or None for any other name."""
        m = self._pattern.match(name)
        return int(m.group(1)) if m else None
