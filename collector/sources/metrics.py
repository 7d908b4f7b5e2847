"""Scrapes the node's Prometheus endpoints into append-only OpenMetrics spool files, as Prometheus would store them.

File format (the archive sink ships these files as the source "metrics", byte-range segments like logs; its
constants, block writer and block reader are archive/metrics_blocks.py, shared with the history server):

- Files `metrics-<seq>.prom` in the spool directory, `<seq>` 6 decimal digits from 000001, in write order. A file
  only grows, and only the newest is ever appended to; at `max_file_bytes` the writer moves on to the next `<seq>`. UTF-8, `\\n` line ends. Every append is
  whole lines and is fsynced; only a failed write (disk full, crash) can leave an unterminated last line, and
  then the writer starts the next file: readers drop a file's last line when it lacks `\\n`.
- The content is OpenMetrics 1.0 text without the final `# EOF` line (a file that grows cannot end with it).
  Each scrape of one endpoint appends one block, written by prometheus_client's OpenMetrics writer:
  - first the family `up` (`# HELP up ...`, `# TYPE up gauge`, then `up{<target labels>} 1|0 <ts>`), so a block
    starts exactly at a line `# HELP up ...`; then `scrape_duration_seconds` and `scrape_samples_scraped` (the
    series Prometheus records per scrape); a failed scrape writes only these, with `up` 0;
  - then every family the endpoint exposed, as `prometheus_client.parser` reads Ray's text format: `# HELP`,
    `# TYPE` (`counter`, `gauge`, `histogram`, `summary`, or `unknown` for untyped), and the samples with their
    series names as the parser yields them (`_bucket`, `_sum`, `_count`, and `_total` on every counter sample).
- Every sample line carries an explicit timestamp in SECONDS with exactly 3 decimals (millisecond precision), as
  OpenMetrics requires: the scrape's start time, or the endpoint's own timestamp when it gave one.
- Target labels are added to every sample, as Prometheus and KubeRay's PodMonitor add them: `instance` (the
  `host:port` scraped, as Ray's service-discovery file names it), `job` (`ray`, the job in Ray's generated
  prometheus.yml and service-discovery file) and `ray_io_cluster` (the cluster name; Ray's Grafana dashboards
  filter on it, on `SessionName`, which Ray sets itself, and on `instance`). A label the endpoint already set
  under one of these names is kept as `exported_<name>` (Prometheus's honor_labels=false rule).
- `le` and `quantile` values are written in canonical form (`1.0`, `+Inf`); a series repeated within one scrape
  is written once (the first).
To load a file set into Prometheus: concatenate the files in `<seq>` order, drop unterminated last lines, append
`# EOF\\n`, then `promtool tsdb create-blocks-from openmetrics FILE DIR`. To read one scrape with a strict
OpenMetrics parser, split at the `# HELP up ` lines and append `# EOF\\n` to each block (see `split_scrapes`).
Series that vanish between scrapes carry no staleness marker (OpenMetrics cannot express one): queries see the
last value for Prometheus's lookback window (5 minutes by default).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from archive import metrics_blocks
from archive.metrics_blocks import (
    render,
    scrape_header,
    split_scrapes,  # noqa: F401  (named in the docstring above)
)
from archive.metrics_blocks import timestamp as _ts
from collector.sources import exposition
from collector.sources.session_dir import SessionDir
from collector.spool import AppendOnlySpool

log = logging.getLogger("rayhistory.collector")

SERVICE_DISCOVERY_FILE = "prom_metrics_service_discovery.json"
_EXPORT_PORT_FILE = re.compile(r"^metrics_export_port_([0-9a-f]{56})$")
_NODE_MANAGER_ADDRESS = re.compile(rb"node_manager address: (\d+\.\d+\.\d+\.\d+):")
OWN_ADDRESS_GRACE = 60.0  # seconds to wait for Ray to name this node's IP before falling back to loopback
MAX_BODY_BYTES = 64 << 20  # a Ray node exposes a few hundred KB; anything near this is not a metrics page


def _split_address(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return host, port


def node_ip(session: SessionDir) -> str | None:
    """The IP Ray registered this node under (what its service-discovery file and other nodes use)."""
    try:
        with open(session.logs / "raylet.out", "rb") as f:
            m = _NODE_MANAGER_ADDRESS.search(f.read(1 << 20))
    except OSError:
        m = None
    return m.group(1).decode() if m else session.node_ip()


def discover_targets(session: SessionDir, own: str | None = None) -> list[str]:
    """`host:port` of this node's metrics endpoint; on the head also the autoscaler's and the dashboard's.

    Ray's service-discovery file (head only) lists every alive node's endpoint plus the head's autoscaler and
    dashboard ones; other nodes are scraped by their own collectors, so the head keeps the targets on its host.
    `own`, once known, is passed back in so that the node's `instance` label never changes; without it the
    node's endpoint is named as the service-discovery file names it, else by the IP in raylet.out, else left out.
    """
    node_id = session.node_id()
    ports: dict[str, str] = {}
    for entry in os.scandir(session.path):
        m = _EXPORT_PORT_FILE.match(entry.name)
        if m:
            try:
                ports[m.group(1)] = Path(entry.path).read_text().strip()
            except OSError:
                continue
    own_port = ports.get(node_id or "") or (next(iter(ports.values())) if len(ports) == 1 else None)
    sd = read_service_discovery(session.path)
    listed_own = next((t for t in sd if own_port and _split_address(t)[1] == own_port), None)
    if own is None and own_port:
        ip = node_ip(session)
        own = listed_own or (f"{ip}:{own_port}" if ip else None)
    targets = [own] if own else []
    if own and session.is_head:
        other_nodes = {p for n, p in ports.items() if n != node_id}
        host = _split_address(listed_own or own)[0]
        targets += [
            t
            for t in sd
            if t not in (own, listed_own) and _split_address(t)[0] == host and _split_address(t)[1] not in other_nodes
        ]
    return targets


def read_service_discovery(session_path: Path) -> list[str]:
    try:
        groups = json.loads((session_path / SERVICE_DISCOVERY_FILE).read_text())
        return [t for g in groups for t in g.get("targets", []) if isinstance(t, str)]
    except (OSError, ValueError, AttributeError, TypeError):
        return []  # not written yet (Ray writes it a few seconds after start), or not the head


# --- one scrape as OpenMetrics ----------------------------------------------------------------------------------


def _canonical(value: str) -> str:
    try:
        return floatToGoString(float(value))
    except ValueError:
        return value


def _relabel(labels: dict[str, str], target_labels: dict[str, str]) -> dict[str, str]:
    out = dict(labels)
    for k in target_labels:
        if k in out:
            out[f"exported_{k}"] = out.pop(k)
    out.update(target_labels)
    return out


def to_openmetrics(text: str, target_labels: dict[str, str], ts_ms: int) -> tuple[list[Metric], int]:
    """Parse one exposition (Prometheus text format) into labelled, timestamped families; raises ValueError."""
    merged: dict[str, Metric] = {}
    seen: set[tuple] = set()
    count = 0
    stamp = _ts(ts_ms)
    plain = exposition.parse(text)  # most scrapes; prometheus_client reads the rest
    for family in plain if plain is not None else text_string_to_metric_families(text):
        typ = "unknown" if family.type == "untyped" else family.type
        metric = merged.get(family.name)
        if metric is None:
            metric = merged[family.name] = Metric(family.name, family.documentation, typ)
        for s in family.samples:
            labels = _relabel(s.labels, target_labels)
            if "le" in labels and s.name.endswith("_bucket"):
                labels["le"] = _canonical(labels["le"])
            if "quantile" in labels and typ == "summary":
                labels["quantile"] = _canonical(labels["quantile"])
            key = (s.name, tuple(sorted(labels.items())))
            if key in seen:
                continue
            seen.add(key)
            # The parser gives a target's own timestamp in seconds; keep it (Prometheus honours it by default).
            own = _ts(round(float(s.timestamp) * 1000)) if s.timestamp is not None else stamp
            metric.samples.append(Sample(s.name, labels, s.value, own))
            count += 1
    _fold_created(merged)
    return list(merged.values()), count


def _group(metric: Metric, s: Sample) -> tuple:
    drop = (
        "le"
        if s.name.endswith("_bucket")
        else "quantile"
        if metric.type == "summary" and s.name == metric.name
        else None
    )
    return tuple(sorted((k, v) for k, v in s.labels.items() if k != drop))


def _fold_created(merged: dict[str, Metric]) -> None:
    """Ray's prometheus_client endpoints expose `<name>_created` as gauge families of their own; OpenMetrics
    reserves that name for the parent counter/histogram/summary, so write those samples inside the parent, each
    after the other samples of its label set (same series names, so the stored series are unchanged)."""
    for name in [n for n, m in merged.items() if n.endswith("_created") and m.type == "gauge"]:
        parent = merged.get(name[: -len("_created")])
        if parent is None or parent.type not in ("counter", "histogram", "summary"):
            continue
        groups: dict[tuple, list[Sample]] = {}
        for s in parent.samples:
            groups.setdefault(_group(parent, s), []).append(s)
        for s in merged.pop(name).samples:
            groups.setdefault(_group(parent, s), []).append(s)
        parent.samples = [s for ss in groups.values() for s in ss]


# --- the source ------------------------------------------------------------------------------------------------


def delta(before, after):
    """The counters of a stats dataclass gained since `before`; other fields as they are now."""
    return dataclasses.replace(
        after,
        **{
            f.name: getattr(after, f.name) - getattr(before, f.name)
            for f in dataclasses.fields(after)
            if f.type == "int"
        },
    )


@dataclass
class ScrapeStats:
    scrapes_ok: int = 0
    scrapes_failed: int = 0
    samples: int = 0
    bytes: int = 0
    write_errors: int = 0
    last_error: str | None = None


class MetricsScraper:
    """Every `interval` seconds scrapes each target and appends one OpenMetrics block per target to the spool."""

    def __init__(
        self,
        spool_dir: str | os.PathLike[str],
        cluster: str,
        session: SessionDir | None = None,
        targets: list[str] | None = None,
        interval: float = 15.0,
        timeout: float = 10.0,
        job: str = "ray",
        extra_labels: dict[str, str] | None = None,
        max_file_bytes: int = 32 << 20,
    ) -> None:
        if session is None and not targets:
            raise ValueError("MetricsScraper needs a Ray session directory or explicit targets (host:port)")
        self.session = session
        self.fixed_targets = targets
        self.interval = interval
        self.timeout = min(timeout, interval)
        self.base_labels = {**(extra_labels or {}), "job": job, "ray_io_cluster": cluster}
        self.spool = AppendOnlySpool(spool_dir, metrics_blocks.FILE_PREFIX, metrics_blocks.FILE_EXT, max_file_bytes)
        self.stats = ScrapeStats()
        self._own: str | None = None
        self._created = time.monotonic()
        self.own_address_grace = OWN_ADDRESS_GRACE

    def targets(self) -> list[str]:
        if self.fixed_targets:
            return list(self.fixed_targets)
        assert self.session is not None
        # Re-read every time (the dashboard's endpoint is listed late), but name this node's endpoint only once.
        found = discover_targets(self.session, self._own)
        if found and self._own is None:
            self._own = found[0]
        elif not found and time.monotonic() - self._created >= self.own_address_grace:
            port = next((p.read_text().strip() for p in self.session.path.glob("metrics_export_port_*")), None)
            if port:
                self._own = f"127.0.0.1:{port}"
                log.warning("no IP for this Ray node in %s; scraping its metrics as %s", self.session.path, self._own)
                found = discover_targets(self.session, self._own)
        return found

    def scrape_once(self) -> ScrapeStats:
        """Scrape every target once; failures are counted and logged, never raised."""
        before = dataclasses.replace(self.stats)
        for target in self.targets():
            self._scrape(target)
        return delta(before, self.stats)

    def _scrape(self, target: str) -> None:
        labels = {**self.base_labels, "instance": target}
        ts_ms = int(time.time() * 1000)
        started = time.monotonic()
        try:
            text = self._fetch(target)
            families, count = to_openmetrics(text, labels, ts_ms)
            up = 1
        except (OSError, ValueError, UnicodeDecodeError) as e:  # URLError and timeouts are OSErrors
            families, count, up = [], 0, 0
            self.stats.scrapes_failed += 1
            self.stats.last_error = f"scrape of http://{target}/metrics failed: {e}"
            log.warning("%s (retrying in %.0fs)", self.stats.last_error, self.interval)
        block = render(scrape_header(labels, ts_ms, up, time.monotonic() - started, count) + families)
        try:
            self.spool.append(block)
        except OSError as e:
            self.stats.write_errors += 1
            self.stats.last_error = f"writing {self.spool.dir}: {e}"
            log.error("metrics scrape of %s dropped: %s", target, self.stats.last_error)
            return
        self.stats.bytes += len(block)
        if up:
            self.stats.scrapes_ok += 1
            self.stats.samples += count

    def _fetch(self, target: str) -> str:
        req = urllib.request.Request(
            f"http://{target}/metrics", headers={"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            body = r.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(f"more than {MAX_BODY_BYTES} bytes")
        return body.decode("utf-8")

    def close(self) -> None:
        self.spool.close()

    def run(self, stop: threading.Event) -> None:
        """Scrape on a fixed schedule until `stop` is set (missed ticks are skipped, not bunched)."""
        next_at = time.monotonic()
        while not stop.is_set():
            self.scrape_once()
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:
                next_at = now + self.interval - (now - next_at) % self.interval
            if stop.wait(next_at - now):
                break
