"""Archives of many sessions for retention tests, written straight through a Store (no Ray needed)."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass

from archive import logs as archive_logs
from archive.layout import LogSegment, SessionRef
from archive.manifest import ENDED, NodeRecord, SessionManifest, end_marker
from archive.storage import Store

DAY_MS = 86_400_000
NODES = (
    "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40",
    "152f29351ecf6d5d81f022be6d4ab8b32133446602b226bf41ce0cf1",
)
_serial = iter(range(1, 10**6))


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Made:
    ref: SessionRef
    keys: dict[str, bytes]  # every object written, with its bytes


def add_session(
    store: Store,
    namespace: str = "team-a",
    cluster: str = "c",
    *,
    status: str = ENDED,
    ended_days_ago: float | None = None,
    started_days_ago: float | None = None,
    silent_days_ago: float | None = None,
    compacted_failures: tuple[int, int] | None = None,
    api_failed_job: bool = False,
    segments: int = 3,
) -> Made:
    """A session with two nodes of log segments. `status` running + `silent_days_ago` makes an unfinished one;
    `compacted_failures` (failed jobs, failed tasks) adds compacted tables as a history server writes them."""
    now = now_ms()
    end = now - int(ended_days_ago * DAY_MS) if ended_days_ago is not None else None
    started = started_days_ago if started_days_ago is not None else max(ended_days_ago or 0, silent_days_ago or 0) + 1
    start = now - int(started * DAY_MS)
    last_seen = now - int(silent_days_ago * DAY_MS) if silent_days_ago is not None else (end or now)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.gmtime(start / 1000))
    ref = SessionRef(namespace, cluster, f"session_{stamp}_{next(_serial):06d}_1")
    keys: dict[str, bytes] = {}

    def put(key: str, data: bytes) -> None:
        store.put(key, data)
        keys[key] = data

    manifest = SessionManifest(
        namespace=namespace,
        cluster=cluster,
        session_name=ref.session,
        status=status,
        start_ms=start,
        end_ms=end if status == ENDED else None,
        last_seen_ms=last_seen,
        ended_by="signal:SIGTERM" if status == ENDED else None,
        nodes=[NodeRecord(NODES[0], is_head=True)],
    )
    for node_id in NODES:
        node = ref.node(node_id)
        put(node.node_key, NodeRecord(node_id, is_head=node_id == NODES[0]).to_json())
        for i in range(segments):
            data = f"{ref.id} {node_id[:6]} line {i}\n".encode() * 50
            put(
                node.segment_key(LogSegment("raylet.out", 0, i * len(data), (i + 1) * len(data))),
                archive_logs.encode(data),
            )
        if status == ENDED:
            put(node.ended_key, end_marker(end, "signal:SIGTERM"))
    if api_failed_job:
        snap = {
            "time_ms": start,
            "route": "/api/jobs/",
            "status": 200,
            "body": [{"job_id": "02000000", "status": "FAILED"}, {"job_id": "01000000", "status": "SUCCEEDED"}],
        }
        line = json.dumps(snap).encode() + b"\n"
        put(
            ref.node(NODES[0]).segment_key(LogSegment("api-000001.jsonl", 0, 0, len(line), "api")),
            archive_logs.encode(line),
        )
    if compacted_failures is not None:
        add_compacted(store, ref, *compacted_failures, put=put)
    put(ref.manifest_key, manifest.to_json())
    put(ref.index_key, manifest.to_json())
    if status == ENDED:
        put(ref.ended_key, end_marker(end, "signal:SIGTERM"))
    return Made(ref, keys)


def add_compacted(store: Store, ref: SessionRef, failed_jobs: int, failed_tasks: int, put=None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from archive.compacted import COMPACTION_VERSION

    put = put or store.put
    prefix = ref.compacted_prefix(COMPACTION_VERSION)
    buf = io.BytesIO()
    pq.write_table(pa.table({"status": ["SUCCEEDED"] + ["FAILED"] * failed_jobs}), buf)
    put(prefix + "jobs.parquet", buf.getvalue())
    put(prefix + "tasks.parquet", b"PAR1 not read by gc")
    put(
        prefix + "info.json",
        json.dumps(
            {
                "compaction_version": COMPACTION_VERSION,
                "counts": {"failed_tasks": failed_tasks, "jobs": failed_jobs + 1},
            }
        ).encode(),
    )


def snapshot(store: Store) -> dict[str, bytes]:
    """Every key of the archive with its bytes."""
    return {o.key: store.get(o.key) for o in store.list("")}
