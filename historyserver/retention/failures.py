"""What is cheaply known of a session's failures, without compacting it.

In order: the compacted tables a history server wrote back (`info.json` counts failed task attempts, the jobs
table holds each job's status), else the head collector's last snapshot of Ray's `/api/jobs/` (a FAILED job). Only
compacted tables can say "no failures": without them a session is `unknown`, which `--keep-failed` treats as
failed (a deletion cannot be undone).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from archive import api_snapshots
from archive import logs as archive_logs
from archive.api_snapshots import JOBS_ROUTE
from archive.compacted import INFO_FILE, JOBS
from archive.errors import NotFound
from archive.layout import InvalidName, SessionRef, parse_compacted_key, parse_node_key
from archive.storage import ObjectInfo, Store


@dataclass(frozen=True)
class FailureEvidence:
    failed: bool | None  # None: unknown
    how: str  # where it was read, said in gc's output

    @property
    def known_clean(self) -> bool:
        return self.failed is False


def evidence(store: Store, ref: SessionRef, objects: list[ObjectInfo]) -> FailureEvidence:
    """`objects`: the session's keys (gc lists them anyway, for their sizes)."""
    versions = sorted(c[0] for o in objects if (c := parse_compacted_key(o.key, ref)) and c[1] == INFO_FILE)
    if versions:
        found = _from_compacted(store, ref, versions[-1])
        if found is not None:
            return found
    if _api_says_a_job_failed(store, ref, objects):
        return FailureEvidence(True, "a FAILED job in the last /api/jobs/ snapshot")
    return FailureEvidence(None, "failures unknown: not compacted yet")


def _from_compacted(store: Store, ref: SessionRef, version: int) -> FailureEvidence | None:
    try:
        info = json.loads(store.get(ref.compacted_key(version, INFO_FILE)))
        failed_tasks = int(info["counts"]["failed_tasks"])
        jobs = store.get(ref.compacted_key(version, JOBS.file))
    except (NotFound, ValueError, KeyError, TypeError):
        return None  # being replaced, or of a shape this version does not know: look elsewhere
    failed_jobs = _failed_jobs(jobs)
    if failed_jobs is None:
        return None
    if failed_tasks or failed_jobs:
        return FailureEvidence(True, f"{failed_jobs} failed job(s), {failed_tasks} failed task attempt(s)")
    return FailureEvidence(False, "no failed jobs or tasks")


def _failed_jobs(parquet: bytes) -> int | None:
    import pyarrow.parquet as pq

    try:
        statuses = pq.read_table(io.BytesIO(parquet), columns=["status"]).column("status").to_pylist()
    except Exception:  # pyarrow raises several types for a damaged or foreign file
        return None
    return sum(1 for s in statuses if s == "FAILED")


def _api_says_a_job_failed(store: Store, ref: SessionRef, objects: list[ObjectInfo]) -> bool:
    """The newest 200 answer of /api/jobs/ in the head's API snapshots lists a FAILED job."""
    files: dict[tuple[str, str], int] = {}
    for o in objects:
        try:
            node_id = parse_node_key(o.key, ref)
        except InvalidName:
            continue
        if node_id is None:
            continue
        rest = o.key[len(ref.node(node_id).prefix) :].split("/")
        if (
            len(rest) == 3
            and rest[0] == api_snapshots.SOURCE
            and (seq := api_snapshots.parse_file_name(rest[1])) is not None
        ):
            files[(node_id, rest[1])] = seq
    for (node_id, name), _seq in sorted(files.items(), key=lambda kv: kv[1], reverse=True):
        try:
            data = archive_logs.read_file(store, ref.node(node_id), name, source=api_snapshots.SOURCE)
        except (NotFound, archive_logs.CorruptSegment):
            continue
        for line in reversed(data.splitlines()):
            try:
                snap = api_snapshots.decode(line)
            except (ValueError, KeyError, TypeError):
                continue
            if snap.route == JOBS_ROUTE and snap.status == 200:
                body = snap.body
                return isinstance(body, list) and any(isinstance(j, dict) and j.get("status") == "FAILED" for j in body)
    return False
