"""Reading a spool back as its uploader would: shared by tests/test_event_spool.py and tests/test_http_events.py."""

from __future__ import annotations

from collector.spool import Spool


def read_lines(spool: Spool) -> list[bytes]:
    """Every line the spool acknowledged, in order (sizes from files(), as a reader sees them)."""
    out = []
    for f in spool.files():
        with open(spool.path(f.path), "rb") as h:
            data = h.read(f.size)
        assert data == b"" or data.endswith(b"\n"), f"{f.path} ends inside a line"
        out += data.splitlines()
    return out
