"""Scrape text shared by the metrics compaction's tests (tests/test_metrics_compaction.py) and its reader's
(tests/test_openmetrics_reader.py): the session they archive, the scrape times, Ray's reference exposition and
the per-scrape `up` block."""

from __future__ import annotations

from tests import needs

REFERENCE = needs.REFERENCE / "metrics" / "metrics_exposition_sample.txt"
SESSION = "session_2026-11-25_19-58-10_578535_6555"
T0 = 1_764_100_000_000  # ms of the first scrape
STEP = 15_000


def up(ts: str = "1764100000.000") -> str:
    return f'# HELP up 1 if up\n# TYPE up gauge\nup{{instance="h:1",job="ray"}} 1.0 {ts}\n'
