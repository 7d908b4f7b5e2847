"""benchmarks/collector_sls.py checks its answers and its targets (not timed: the numbers are the benchmark's
business, `python -m benchmarks.collector_sls`). The steady runs only time a collector process; their numbers are
stood in for here, the throughput runs run for real, small."""

from __future__ import annotations

from benchmarks import collector_sls
from collector.sinks.sls import ray_events

SMALL = ["--events", "50", "--scrapes", "4", "--series", "40", "--seconds", "1"]


def test_passes_within_its_targets_and_fails_past_them(monkeypatch, capsys) -> None:
    monkeypatch.setattr(collector_sls, "steady", lambda outputs, seconds, series: (1.0, 60.0, 40.0))
    assert collector_sls.main(SMALL) == 0
    out = capsys.readouterr().out
    assert "| SLS events sink (events logstore) |" in out and "| SLS metrics sink (remote write) |" in out
    assert "PASS" in out
    monkeypatch.setattr(collector_sls, "steady", lambda outputs, seconds, series: (6.0, 90.0, 40.0))
    assert collector_sls.main(SMALL) == 1
    assert "FAIL steady, all SLS outputs: 6.0% of a core" in capsys.readouterr().err


def test_a_sink_that_loses_events_is_no_result(monkeypatch, capsys) -> None:
    monkeypatch.setattr(collector_sls, "steady", lambda outputs, seconds, series: (1.0, 60.0, 40.0))
    real, seen = ray_events.from_export, []

    def lossy(event):
        seen.append(1)
        return None if len(seen) == 7 else real(event)

    monkeypatch.setattr(ray_events, "from_export", lossy)
    assert collector_sls.main(SMALL) == 1
    assert "the events sink sent 199 events of 200" in capsys.readouterr().err
