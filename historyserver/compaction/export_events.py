"""Ray's export-event files (logs/export_events/event_EXPORT_*.log) folded into one record per entity.

Tasks are folded in SQL (tasks_sql.py): there can be millions. Actors, jobs and nodes are few and folded here.

Events arrive in pieces and out of order (a task's definition, state updates and profile events come from
different processes), so each fold merges by key and keeps the newest value of each field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from archive.ray_states import TASK_STATUS
from historyserver.compaction.ids import hex_id

log = logging.getLogger("rayhistory.compaction")

SUBMISSION_RANK = {"PENDING": 0, "RUNNING": 1, "STOPPED": 2, "SUCCEEDED": 2, "FAILED": 2}


@dataclass
class Damage:
    """What could not be read, so that pages can say so instead of hiding it."""

    bad_lines: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, where: str, error: str, count: int = 1) -> None:
        self.bad_lines += count
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {error}")


@dataclass
class Folded:
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    driver_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    submission_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    damage: Damage = field(default_factory=Damage)


def fold_lines(lines: Iterable[bytes], where: str, into: Folded) -> None:
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
            data = event["event_data"]
            kind = event["source_type"]
            ts = int(event.get("timestamp") or 0)
        except (ValueError, KeyError, TypeError) as e:
            into.damage.note(f"{where}:{n}", f"unreadable event ({type(e).__name__})")
            continue
        fold = _FOLDS.get(kind)
        if fold is not None:
            try:
                fold(into, data, ts)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                into.damage.note(f"{where}:{n}", f"malformed {kind} event ({type(e).__name__}: {e})")


def _actor(f: Folded, d: dict[str, Any], ts: int) -> None:
    actor_id = hex_id(d["actor_id"])
    a = f.actors.setdefault(actor_id, {"actor_id": actor_id, "state_ts": {}})
    state = d.get("state") or "DEPENDENCIES_UNREADY"
    a["state_ts"].setdefault(state, ts * 1000)
    if ts * 1000 >= a.get("last_ts", -1):
        a["last_ts"] = ts * 1000
        a["state"] = state if not (a.get("state") == "DEAD" and state != "DEAD") else a["state"]
    for k, v in d.items():
        if k in ("actor_id", "state"):
            continue
        if v not in (None, "", {}, 0) or k not in a:
            a[k] = v


def _driver_job(f: Folded, d: dict[str, Any], ts: int) -> None:
    job_id = hex_id(d["job_id"])
    j = f.driver_jobs.setdefault(job_id, {"job_id": job_id})
    for k, v in d.items():
        if k == "job_id":
            continue
        if k == "is_dead":
            j[k] = bool(v) or j.get(k, False)
        elif v not in (None, "", "0", {}) or k not in j:
            j[k] = v


def _submission_job(f: Folded, d: dict[str, Any], ts: int) -> None:
    sid = d["submission_job_id"]
    j = f.submission_jobs.setdefault(sid, {"submission_id": sid, "_rank": (-1, 0)})
    rank = (SUBMISSION_RANK.get(d.get("status", ""), 0), ts)
    newer = rank >= j["_rank"]
    for k, v in d.items():
        if k == "submission_job_id":
            continue
        if newer or k not in j:
            j[k] = v
    if newer:
        j["_rank"] = rank


def _node(f: Folded, d: dict[str, Any], ts: int) -> None:
    node_id = hex_id(d["node_id"])
    n = f.nodes.setdefault(node_id, {"node_id": node_id, "_ts": -1})
    newer = ts >= n["_ts"] and not (n.get("state") == "DEAD" and d.get("state") != "DEAD")
    for k, v in d.items():
        if k == "node_id":
            continue
        if newer or k not in n:
            n[k] = v
    if newer:
        n["_ts"] = ts


_FOLDS = {
    "EXPORT_ACTOR": _actor,
    "EXPORT_DRIVER_JOB": _driver_job,
    "EXPORT_SUBMISSION_JOB": _submission_job,
    "EXPORT_NODE": _node,
}


__all__ = ["Folded", "fold_lines", "TASK_STATUS"]
