"""Staleness markers the compaction derives from archived scrape blocks (historyserver/compaction/staleness.py)."""

from __future__ import annotations

import duckdb
import numpy as np

from archive.layout import SessionRef
from archive.storage.local import LocalStore
from historyserver.compaction.export_events import Damage
from historyserver.compaction.metrics import compact_metrics
from historyserver.promql.model import STALE_NAN_BITS
from tests.test_metrics_compaction import NODES, SESSION, put_file

T = 1_764_100_000_000
LABELS = 'job="ray",ray_io_cluster="demo"'


def scrape(target: str, ms: int, series: dict[str, float], up: int = 1) -> bytes:
    """A block as the collector writes it: up, the two per-scrape series, then the gauges of `series`."""
    ms += T
    stamp = f"{ms // 1000}.{ms % 1000:03d}"
    tl = f'instance="{target}",{LABELS}'
    out = [
        f"# HELP up up\n# TYPE up gauge\nup{{{tl}}} {up} {stamp}\n",
        f"# HELP scrape_duration_seconds d\n# TYPE scrape_duration_seconds gauge\n"
        f"scrape_duration_seconds{{{tl}}} 0.01 {stamp}\n",
        f"# HELP scrape_samples_scraped n\n# TYPE scrape_samples_scraped gauge\n"
        f"scrape_samples_scraped{{{tl}}} {len(series)} {stamp}\n",
    ]
    for name, v in series.items():
        out.append(f"# HELP {name} g\n# TYPE {name} gauge\n{name}{{{tl}}} {v} {stamp}\n")
    return "".join(out).encode()


def rows(out) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """(name, instance) -> [(ts, value or 'STALE')] from the compacted tables."""
    con = duckdb.connect()
    got: dict = {}
    for name, inst, ts, v in con.execute(
        f"SELECT name, labels['instance'], ts_ms, value FROM '{out}/metric_samples.parquet' "
        f"JOIN '{out}/metric_series.parquet' USING (series_id) ORDER BY name, 2, ts_ms"
    ).fetchall():
        bits = int(np.array([v], np.float64).view(np.uint64)[0])
        got.setdefault((name, inst), []).append((ts - T, "STALE" if bits == STALE_NAN_BITS else v))
    return got


def compact(tmp_path, files: list[bytes]):
    store = LocalStore(tmp_path / "archive")
    for i, data in enumerate(files, 1):
        put_file(store, NODES[0], f"metrics-{i:06d}.prom", data, [len(data) // 2])
    ref = SessionRef("default", "demo", SESSION)
    out = tmp_path / "out"
    out.mkdir()
    damage = Damage()
    compact_metrics(store, ref, [NODES[0]], out, damage)
    assert not damage.bad_lines
    return rows(out)


def test_vanished_series_and_failed_scrapes_are_marked_per_target(tmp_path):
    a, b = "10.0.0.1:8080", "10.0.0.1:44217"
    file1 = b"".join(
        [
            scrape(a, 0, {"x": 1, "y": 2}),
            scrape(b, 5, {"z": 3}),
            scrape(a, 15_000, {"x": 1}),  # y vanished: stale here
            scrape(b, 15_005, {"z": 4}),  # target b's own blocks interleave and keep z
            scrape(a, 30_000, {}, up=0),  # failed scrape: x stale here
            scrape(a, 45_000, {}, up=0),  # still failing: nothing more to mark
            scrape(a, 60_000, {"x": 5, "y": 6}),  # back: starts fresh
        ]
    )
    file2 = b"".join(
        [  # the next spool file: the target's previous block is the last one of file 1
            scrape(a, 75_000, {"y": 7}),  # x vanished across the file boundary
            scrape(b, 75_005, {}),  # z vanished from target b
        ]
    )
    got = compact(tmp_path, [file1, file2])
    assert got[("y", a)] == [(0, 2.0), (15_000, "STALE"), (60_000, 6.0), (75_000, 7.0)]
    assert got[("x", a)] == [(0, 1.0), (15_000, 1.0), (30_000, "STALE"), (60_000, 5.0), (75_000, "STALE")]
    assert got[("z", b)] == [(5, 3.0), (15_005, 4.0), (75_005, "STALE")]
    # The per-scrape series are in every block, failed or not: never stale. Nothing is marked after the end.
    assert [v for _, v in got[("up", a)]] == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert not any(
        v == "STALE" for key, pts in got.items() if key[0] != "x" and key[0] != "y" and key[0] != "z" for _, v in pts
    )


def test_a_real_sample_wins_over_a_marker_at_the_same_time(tmp_path):
    a = "10.0.0.1:8080"
    # Two blocks of one target at the same time (the format does not promise otherwise): each one's markers land
    # on a (series, time) the other has a real sample for, and the real samples win the dedup.
    data = b"".join(
        [scrape(a, 0, {"x": 1}), scrape(a, 15_000, {"y": 2}), scrape(a, 15_000, {"x": 3}), scrape(a, 30_000, {"x": 4})]
    )
    got = compact(tmp_path, [data])
    assert got[("x", a)] == [(0, 1.0), (15_000, 3.0), (30_000, 4.0)]
    assert got[("y", a)] == [(15_000, 2.0)]
