"""Deterministic synthetic Ray metrics for the PromQL oracle: every metric Ray's dashboards query, scraped from a
few nodes of two sessions of one cluster for two hours, written both ways the same samples can travel:
(a) per series, its samples plus the staleness markers a live Prometheus would have written
    (`Dataset.series_samples`, for Prometheus's remote-write receiver: OpenMetrics backfill cannot carry markers),
    computed here from what the generator knows (which series a scrape lacks, which scrapes failed), independently
    of the compaction, and
(b) Rayhistory's archive: per node, the collector's `metrics` spool files (archive/FORMAT.md) cut into segments,
    which historyserver/compaction/metrics.py:compact_metrics reads (deriving its own markers from the blocks).
The OpenMetrics text of (b) is still available (`Dataset.openmetrics`, markers-free) for promtool.

What the data exercises: counters that grow at uneven rates, stall, and reset (a restarted process); gauges that
move, go to zero, or hold integer counts; histograms with cumulative `le` buckets and matching `_sum`/`_count`;
series that appear late and vanish early (stale at the first scrape without them), a node that joins late and
leaves early (no marker after a target's last scrape, on either side), failed scrapes (an `up 0` block and the two
other per-scrape series; every other series of the target is stale there), empty label values as Ray exposes them
(`WorkerId=""`), one node scraped exactly on the minute (range boundaries) and others off it, and a second session
whose head reuses the first one's `instance`.

Which families exist comes from the expressions themselves (`referenced_metrics` walks promql_parser's AST); their
labels come from the rules in `_entities`, modelled on Ray 2.60's real exposition (reference/ray-2.60/metrics/); both
are in tests/oracle_series.py, this module the samples and their writing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# the series themselves (sessions, families, labels); importers keep reading them here
from tests.oracle_series import (
    AUTOSCALER_PORT,
    CLUSTER,
    END_MS,
    HIST_LE,
    JOB,
    NAMESPACE,
    NODE_PORT,
    SCRAPE_MS,
    SESSIONS,
    T0_MS,
    VERSION,
    Entity,
    Family,
    Node,
    Session,
    _entities,
    _rng,
    families,
    referenced_metrics,
)

# --- samples --------------------------------------------------------------------------------------------------------


def scrape_times(node: Node, port: int) -> np.ndarray:
    """The target's scrape timestamps (ms) and, separately, which of them failed (see `failed_scrapes`)."""
    first = T0_MS + ((node.start_ms - T0_MS + SCRAPE_MS - 1) // SCRAPE_MS) * SCRAPE_MS + node.offset_ms
    ts = np.arange(first, node.end_ms, SCRAPE_MS, dtype=np.int64)
    if node.jitter_ms:
        ts = ts + _rng("jitter", node.node_id, port).integers(0, node.jitter_ms + 1, len(ts))
    return ts


def failed_scrapes(node: Node, port: int, n: int) -> np.ndarray:
    r = _rng("failed", node.node_id, port)
    bad = r.random(n) < 0.015
    if n > 200:
        bad[120:124] = True  # one outage of a minute: four scrapes in a row
    return bad


def _counter(r: np.random.Generator, n: int, scale: float, resets: bool) -> np.ndarray:
    inc = r.exponential(scale, n) * (r.random(n) < 0.7)
    idle = r.integers(0, n)
    inc[idle : idle + n // 10] = 0.0  # a quiet stretch: rate 0
    inc[0] = r.uniform(0, 10 * scale)
    v = np.cumsum(inc)
    if resets and n > 20 and r.random() < 0.35:
        k = int(r.integers(5, n - 5))
        v[k:] = np.cumsum(inc[k:]) * r.uniform(0.0, 0.5)  # process restart: starts over near zero
    return v


def _gauge(r: np.random.Generator, n: int, scale: float, integral: bool) -> np.ndarray:
    t = np.arange(n)
    v = scale * (1 + 0.5 * np.sin(t / r.uniform(8, 60) + r.uniform(0, 6))) + r.normal(0, scale * 0.1, n)
    v = np.maximum(v, 0.0)
    if r.random() < 0.3:
        z = int(r.integers(0, n))
        v[z : z + n // 8] = 0.0
    return np.round(v) if integral else v


def _scale(name: str) -> tuple[float, bool]:
    """A plausible magnitude for a family, and whether its values are whole numbers."""
    if re.search(r"(bytes|memory|mem_|_mb|gram|_disk|_speed|_received|_sent|budget)", name):
        return 2.5e8, False
    if re.search(r"(utilization|percentage|perc|_rate$|cycle)", name):
        return 40.0, False
    if re.search(r"(seconds|_time|_s$|latency|duration)", name):
        return 3.0, False
    return 6.0, True


def family_samples(
    fam: Family, ent: Entity, ts: np.ndarray
) -> list[tuple[str, tuple[tuple[str, str], ...], np.ndarray]]:
    """(sample name, labels, values over ts) of one entity of a family."""
    r = _rng("values", fam.name, ent.labels, ent.target)
    scale, integral = _scale(fam.name)
    n = len(ts)
    if fam.type == "histogram":
        counts = r.poisson(r.uniform(0.2, 4.0), n) * (r.random(n) < 0.8)  # observations per scrape
        probs = r.dirichlet(np.ones(len(HIST_LE)))
        per_bucket = np.stack(
            [
                r.binomial(c, probs[:-1] / probs[:-1].sum() * 0.9) if c else np.zeros(len(HIST_LE) - 1, dtype=np.int64)
                for c in counts
            ]
        )
        finite = np.cumsum(np.minimum(per_bucket, counts[:, None]), axis=1)
        finite = np.minimum(finite, counts[:, None])  # cumulative over le, never above the total
        obs_sum = counts * r.uniform(0.05, 50.0) + r.random(n) * (counts > 0)
        series = np.concatenate([finite, counts[:, None], obs_sum[:, None], counts[:, None]], axis=1)
        series = np.cumsum(series, axis=0).astype(float)
        if n > 20 and r.random() < 0.3:
            k = int(r.integers(5, n - 5))
            series[k:] -= series[k - 1]  # restart: every bucket, the sum and the count start over together
            series[k:] = np.maximum(series[k:], 0.0)
        base = ent.labels
        out = [
            (f"{fam.name}_bucket", tuple(sorted(base + (("le", le),))), series[:, i]) for i, le in enumerate(HIST_LE)
        ]
        out.append((f"{fam.name}_sum", base, series[:, len(HIST_LE)]))
        out.append((f"{fam.name}_count", base, series[:, len(HIST_LE) + 1]))
        return out
    if fam.type == "counter":
        return [(f"{fam.name}_total", ent.labels, _counter(r, n, scale / 20, True))]
    if fam.monotone:
        return [(fam.name, ent.labels, _counter(r, n, scale / 20, False))]
    return [(fam.name, ent.labels, _gauge(r, n, scale, integral))]


# --- writing --------------------------------------------------------------------------------------------------------


def _ts(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{k}="{esc(v)}"' for k, v in labels)


@dataclass
class Dataset:
    """All scrape blocks, per session and node, in scrape order (the bytes the collector would have spooled)."""

    node_text: dict[tuple[str, str], str]  # (session, node_id) -> text without `# EOF`
    samples: int
    series: int
    families: list[Family]
    # (name, sorted labels) -> (ts ms, values) in time order, staleness markers (STALE_NAN) included
    series_samples: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )
    start_ms: int = T0_MS
    end_ms: int = END_MS

    def openmetrics(self) -> str:
        return "".join(self.node_text.values()) + "# EOF\n"


def generate(exprs: Iterable[str]) -> Dataset:
    fams = families(referenced_metrics(exprs))
    node_text: dict[tuple[str, str], str] = {}
    total = 0
    keys: set = set()
    chunks: dict = {}
    for session in SESSIONS:
        per_target: dict[str, list[tuple[Family, Entity]]] = {}
        for fam in fams:
            for ent in _entities(fam, session):
                per_target.setdefault(ent.target, []).append((fam, ent))
        for node in session.nodes:
            blocks: list[tuple[int, str]] = []
            for port in (NODE_PORT, AUTOSCALER_PORT) if node.is_head else (NODE_PORT,):
                target = f"{node.ip}:{port}"
                ts = scrape_times(node, port)
                bad = failed_scrapes(node, port, len(ts))
                target_labels = (("instance", target), ("job", JOB), ("ray_io_cluster", CLUSTER))
                # Per family: (header, [(sample line prefix, values, alive mask)])
                rendered: list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]] = []
                for fam, ent in per_target.get(target, []):
                    alive = (ts >= ent.birth_ms) & (ts < ent.death_ms)
                    lines = []
                    for name, labels, values in family_samples(fam, ent, ts):
                        merged = tuple(sorted(labels + target_labels))
                        keys.add((name, merged))
                        lines.append((f"{name}{{{_labels(merged)}}} ", values, alive))
                        _record(chunks, (name, merged), ts, values, alive & ~bad)
                    typ = fam.type
                    rendered.append(
                        (f"# HELP {fam.name} {fam.name.replace('_', ' ')}.\n# TYPE {fam.name} {typ}\n", lines)
                    )
                tl = _labels(target_labels)
                report = {
                    "up": (~bad).astype(float),  # the per-scrape series, as the blocks below write them
                    "scrape_duration_seconds": 0.004 + (np.arange(len(ts)) % 7) * 0.001,
                    "scrape_samples_scraped": np.zeros(len(ts)),
                }
                for i, t in enumerate(ts.tolist()):
                    stamp = _ts(t)
                    body: list[str] = []
                    count = 0
                    if not bad[i]:
                        for header, lines in rendered:
                            live = [
                                f"{prefix}{float(values[i])!r} {stamp}\n" for prefix, values, alive in lines if alive[i]
                            ]
                            if live:
                                body.append(header)
                                body.extend(live)
                                count += len(live)
                    up = 0 if bad[i] else 1
                    report["scrape_samples_scraped"][i] = count
                    head_lines = (
                        f"# HELP up 1 if the scrape of the target succeeded, else 0\n# TYPE up gauge\n"
                        f"up{{{tl}}} {up} {stamp}\n"
                        f"# HELP scrape_duration_seconds how long the scrape took\n"
                        f"# TYPE scrape_duration_seconds gauge\n"
                        f"scrape_duration_seconds{{{tl}}} {0.004 + (i % 7) * 0.001!r} {stamp}\n"
                        f"# HELP scrape_samples_scraped samples the target exposed in this scrape\n"
                        f"# TYPE scrape_samples_scraped gauge\n"
                        f"scrape_samples_scraped{{{tl}}} {count} {stamp}\n"
                    )
                    total += 3 + count
                    blocks.append((t, head_lines + "".join(body)))
                for name, values in report.items():  # in every block, failed or not: never stale
                    _record(chunks, (name, target_labels), ts, values, np.ones(len(ts), np.bool_))
            blocks.sort(key=lambda b: b[0])
            node_text[(session.name, node.node_id)] = "".join(b for _, b in blocks)
    series = {}
    for key, parts in chunks.items():
        ts = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
        order = np.argsort(ts, kind="stable")
        series[key] = (ts[order], values[order])
    return Dataset(node_text, total, len(keys), fams, series_samples=series)


def _record(chunks: dict, key, ts: np.ndarray, values: np.ndarray, present: np.ndarray) -> None:
    """One target's samples of a series where `present` (alive, scrape succeeded), and a staleness marker at each
    scrape that lacks it after one that had it, as a live Prometheus writes them (none after the last scrape)."""
    from historyserver.promql.model import STALE_NAN

    gone = np.flatnonzero(present[:-1] & ~present[1:]) + 1
    t = np.concatenate([ts[present], ts[gone]])
    v = np.concatenate([np.asarray(values, np.float64)[present], np.full(len(gone), STALE_NAN)])
    chunks.setdefault(key, []).append((t, v))


def write_openmetrics(data: Dataset, path: Path) -> Path:
    path.write_text(data.openmetrics())
    return path


def write_archive(data: Dataset, root: Path) -> list[tuple[object, list[str]]]:
    """The spool files of every node as archive segments under `root` (a LocalStore), cut the way the collector's
    shipping cuts them: two files per node (the spool rolled over), each in a few segments that end mid-line.
    Returns (SessionRef, node ids) per session, what compact_metrics takes."""
    from archive.layout import LogSegment, SessionRef
    from archive.logs import encode
    from archive.storage.local import LocalStore

    store = LocalStore(root)
    out = []
    for session in SESSIONS:
        ref = SessionRef(NAMESPACE, CLUSTER, session.name)
        for node in session.nodes:
            text = data.node_text[(session.name, node.node_id)].encode()
            roll = text.find(b"\n# HELP up ", len(text) // 2) + 1  # the spool moved to its next file here
            for seq, part in enumerate((text[:roll], text[roll:]), 1):
                bounds = [0, *sorted({len(part) // 3, (2 * len(part)) // 3 + 17}), len(part)]
                for start, end in zip(bounds, bounds[1:]):
                    seg = LogSegment(f"metrics-{seq:06d}.prom", 0, start, end, source="metrics")
                    store.put(ref.node(node.node_id).segment_key(seg), encode(part[start:end]))
        out.append((ref, [n.node_id for n in session.nodes]))
    return out


def compact(data: Dataset, root: Path) -> list[Path]:
    """Archive and compact every session (the real path); returns the compacted table folders, one per session."""
    from archive.storage.local import LocalStore
    from historyserver.compaction.export_events import Damage
    from historyserver.compaction.metrics import compact_metrics

    refs = write_archive(data, root / "archive")
    store = LocalStore(root / "archive")
    dirs = []
    for ref, node_ids in refs:
        out = root / "compacted" / ref.session
        out.mkdir(parents=True, exist_ok=True)
        damage = Damage()
        compact_metrics(store, ref, node_ids, out, damage)
        if damage.bad_lines:
            raise AssertionError(f"compaction found damage in generated data: {damage.examples}")
        dirs.append(out)
    return dirs


__all__ = [
    "AUTOSCALER_PORT",
    "CLUSTER",
    "Dataset",
    "END_MS",
    "JOB",
    "NAMESPACE",
    "NODE_PORT",
    "Node",
    "SCRAPE_MS",
    "SESSIONS",
    "Session",
    "T0_MS",
    "VERSION",
    "compact",
    "families",
    "generate",
    "referenced_metrics",
    "write_archive",
    "write_openmetrics",
]
