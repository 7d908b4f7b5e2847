"""Small archives of scraped metrics, written in the archive's own format (FORMAT.md, the `metrics` source), for
tests of the Prometheus API: the history server compacts them as it would a real session's."""

from __future__ import annotations

from dataclasses import dataclass, field

from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.manifest import ENDED, NodeRecord, SessionManifest
from archive.storage.local import LocalStore

STEP_MS = 15_000


@dataclass
class FakeSession:
    namespace: str
    cluster: str
    name: str
    start_ms: int
    end_ms: int | None  # None: running
    node_id: str = "a" * 56
    instance: str = "10.0.0.1:8080"
    cpu: float = 10.0  # ray_node_cpu_utilization is cpu + i at the i-th scrape
    last_seen_ms: int | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> SessionRef:
        return SessionRef(self.namespace, self.cluster, self.name)

    @property
    def id(self) -> str:
        return self.ref.id

    def scrape_times(self) -> list[int]:
        end = self.end_ms if self.end_ms is not None else self.last_seen_ms
        return list(range(self.start_ms + 5_000, end, STEP_MS))


def _labels(d: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(d.items())) + "}"


def block(s: FakeSession, i: int, ts_ms: int) -> str:
    """One scrape block, as the collector writes it: `up` and the scrape families first, then the endpoint's."""
    target = {"instance": s.instance, "job": "ray", "ray_io_cluster": s.cluster}
    ray = {**target, "SessionName": s.name, **s.extra_labels}
    t = f"{ts_ms / 1000:.3f}"
    return (
        "# HELP up 1 if the scrape succeeded\n# TYPE up gauge\n"
        f"up{_labels(target)} 1 {t}\n"
        "# HELP scrape_duration_seconds Scrape duration.\n# TYPE scrape_duration_seconds gauge\n"
        f"scrape_duration_seconds{_labels(target)} 0.01 {t}\n"
        "# HELP scrape_samples_scraped Samples scraped.\n# TYPE scrape_samples_scraped gauge\n"
        f"scrape_samples_scraped{_labels(target)} 3 {t}\n"
        "# HELP ray_node_cpu_utilization CPU.\n# TYPE ray_node_cpu_utilization gauge\n"
        f"ray_node_cpu_utilization{_labels(ray)} {s.cpu + i} {t}\n"
        "# HELP ray_tasks_finished Tasks finished.\n# TYPE ray_tasks_finished counter\n"
        f"ray_tasks_finished_total{_labels(ray)} {2 * i} {t}\n"
        "# HELP ray_node_mem_used Memory.\n# TYPE ray_node_mem_used gauge\n"
        f"ray_node_mem_used{_labels({**ray, 'empty': ''})} 100 {t}\n"
    )


def write_session(store: LocalStore, s: FakeSession) -> None:
    times = s.scrape_times()
    data = "".join(block(s, i, t) for i, t in enumerate(times)).encode()
    node = s.ref.node(s.node_id)
    store.put(
        node.node_key, NodeRecord(s.node_id, is_head=True, ip=s.instance.split(":")[0], start_ms=s.start_ms).to_json()
    )
    cut = len(data) // 2
    for start, end in ((0, cut), (cut, len(data))):
        store.put(
            node.segment_key(LogSegment("metrics-000001.prom", 0, start, end, source="metrics")),
            encode(data[start:end]),
        )
    m = SessionManifest(
        namespace=s.namespace,
        cluster=s.cluster,
        session_name=s.name,
        ray_version="2.60.0",
        start_ms=s.start_ms,
        end_ms=s.end_ms,
        status=ENDED if s.end_ms is not None else "running",
        last_seen_ms=s.last_seen_ms or s.end_ms,
        nodes=[NodeRecord(s.node_id, is_head=True)],
    )
    store.put(m.ref.manifest_key, m.to_json())
    store.put(m.ref.index_key, m.to_json())
