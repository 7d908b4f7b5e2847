"""The peer's way of opening a session, as a baseline: replay every event into memory.

KubeRay's History Server parses every event of a session into in-memory objects when the session is opened
and answers from those. This does the same in Python, with none of our compaction code (only archive reading):
read every export-event segment, json-parse every line, merge the pieces into one object per task attempt,
actor, job and node, and keep them all.

    python -m benchmarks.replay_baseline --archive DIR --session NAMESPACE~CLUSTER~SESSION
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

from archive import logs as segments
from archive.layout import SessionRef
from archive.storage import open_store

EXPORT_DIR = "export_events/"


class Replay:
    """Every entity of the session as merged Python objects, the way an in-memory server holds them."""

    def __init__(self) -> None:
        self.tasks: dict[tuple[str, int], dict[str, Any]] = {}
        self.actors: dict[str, dict[str, Any]] = {}
        self.driver_jobs: dict[str, dict[str, Any]] = {}
        self.submission_jobs: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.lines = 0
        self.bad_lines = 0

    def feed(self, data: bytes) -> None:
        for line in data.splitlines():
            if not line.strip():
                continue
            self.lines += 1
            try:
                event = json.loads(line)
                kind, body = event["source_type"], event["event_data"]
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1
                continue
            if kind == "EXPORT_TASK":
                self._task(body)
            elif kind == "EXPORT_ACTOR":
                self.actors.setdefault(body["actor_id"], {}).update(body)
            elif kind == "EXPORT_DRIVER_JOB":
                self.driver_jobs.setdefault(body["job_id"], {}).update(body)
            elif kind == "EXPORT_SUBMISSION_JOB":
                self.submission_jobs.setdefault(body["submission_job_id"], {}).update(body)
            elif kind == "EXPORT_NODE":
                self.nodes.setdefault(body["node_id"], {}).update(body)

    def _task(self, body: dict[str, Any]) -> None:
        key = (body["task_id"], int(body.get("attempt_number") or 0))
        task = self.tasks.get(key)
        if task is None:
            task = self.tasks[key] = {
                "task_id": key[0],
                "attempt_number": key[1],
                "state_ts_ns": {},
                "profile_events": [],
            }
        if "job_id" in body:
            task["job_id"] = body["job_id"]
        if "task_info" in body:
            task.setdefault("task_info", {}).update(body["task_info"])
        updates = body.get("state_updates") or {}
        for k, v in updates.items():
            if k == "state_ts_ns":
                task["state_ts_ns"].update(v)
            else:
                task[k] = v
        profile = body.get("profile_events")
        if profile:
            task["profile_events"].extend(profile.get("events") or [])
            task["profile_component"] = {k: v for k, v in profile.items() if k != "events"}

    def counts(self) -> dict[str, int]:
        failed = sum(1 for t in self.tasks.values() if "12" in t["state_ts_ns"])
        return {
            "lines": self.lines,
            "bad_lines": self.bad_lines,
            "tasks": len(self.tasks),
            "failed_tasks": failed,
            "actors": len(self.actors),
            "driver_jobs": len(self.driver_jobs),
            "submission_jobs": len(self.submission_jobs),
            "nodes": len(self.nodes),
        }


def replay(archive: str, session_id: str) -> tuple[Replay, int]:
    """The session replayed into memory, and how many bytes of export events were read."""
    store = open_store(archive)
    ref = SessionRef.from_id(session_id)
    state, size = Replay(), 0
    for node_id in store.list_dirs(ref.nodes_prefix):
        node = ref.node(node_id)
        for path, segs in segments.list_segments(store, node).items():
            if not path.startswith(EXPORT_DIR):
                continue
            # A segment ends anywhere in a line: carry the partial line over to the next segment.
            tail = b""
            for seg in segments.covering(segs):
                data = tail + segments.read_segment(store, node, seg)
                cut = data.rfind(b"\n") + 1
                state.feed(data[:cut])
                tail = data[cut:]
                size += seg.end - seg.start
    return state, size


def peak_rss_mib() -> float:
    """Peak resident memory of this process and of any child it waited for, in MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def measure(archive: str, session_id: str) -> dict[str, Any]:
    started = time.monotonic()
    state, size = replay(archive, session_id)
    return {
        "seconds": round(time.monotonic() - started, 3),
        "rss_mib": round(peak_rss_mib(), 1),
        "bytes": size,
        **state.counts(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.replay_baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("--archive", required=True, help="archive: a directory, file://PATH or s3://bucket/prefix")
    p.add_argument("--session", required=True, help="session id: namespace~cluster~session_...")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.archive, args.session)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
