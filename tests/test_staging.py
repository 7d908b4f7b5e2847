"""Staging an archived file for the compaction: as the segments' gzip members (what the one-shot build stages task
events as) or decompressed, the same complete lines either way; and a damaged segment costs its file's rest, not the
build."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import duckdb
import pytest

from archive import logs as archive_logs
from archive.layout import LogSegment, NodeRef, SessionRef
from archive.storage.local import LocalStore
from historyserver.compaction import staging
from historyserver.compaction.build import compact
from historyserver.compaction.export_events import Damage
from historyserver.compaction.tasks_sql import _LINES, sql_list

NODE = NodeRef(SessionRef("ns", "c", "session_2026-01-01_00-00-00_000000_1"), "a" * 56)
PATH = "export_events/event_EXPORT_TASK_1.log"


def _archive(store: LocalStore, generations: dict[int, list[bytes]]) -> list[LogSegment]:
    """Each generation's pieces archived as consecutive segments (cut anywhere, as collectors cut them)."""
    segs = []
    for epoch, pieces in generations.items():
        pos = 0
        for piece in pieces:
            seg = LogSegment(PATH, epoch, pos, pos + len(piece)) if piece else LogSegment(PATH, epoch, 0, 0)
            store.put(NODE.segment_key(seg), archive_logs.encode(piece))
            segs.append(seg)
            pos += len(piece)
    return segs


def _read_lines(path: Path) -> list[str]:
    return [r[0] for r in duckdb.sql(f"SELECT line FROM read_csv({sql_list([path])}, {_LINES})").fetchall()]


@pytest.mark.parametrize(
    "generations",
    [
        {0: [b'{"a": 1}\n{"a"', b": 2}\n", b'{"a": 3}\n{"a": 4']},  # the newest last line still being written
        {0: [b'{"a": 1}\n{"a": 2', b"2}\n"], 1: [b'{"b": 1}\n']},  # rotated: an old generation ends whole
        {0: [b'{"a": 1}\n{"cut by rota'], 1: [b'{"b"', b': 1}\n{"b": 2}\n']},  # rotated mid-line
        {0: [b""], 1: [b'{"b": 1}\n']},  # an empty old generation
    ],
)
def test_members_stage_the_lines_decompressing_stages(tmp_path, generations):
    store = LocalStore(tmp_path / "archive")
    segs = _archive(store, generations)
    plain, members = tmp_path / "plain.log", tmp_path / "members.log.gz"
    staging.stage_lines(store, NODE, segs, plain, Damage(), "here")
    size = staging.stage_members(store, NODE, segs, members)
    assert size == plain.stat().st_size
    assert gzip.decompress(members.read_bytes()) == plain.read_bytes()
    assert _read_lines(members) == _read_lines(plain) == plain.read_text().splitlines()
    # The members are the segments as stored, but each generation's last: not re-compressed.
    assert store.get(NODE.segment_key(segs[0])) in members.read_bytes() or len(generations[0]) == 1


def test_a_waiting_line_begun_in_an_earlier_segment_is_left_to_decompressing(tmp_path):
    store = LocalStore(tmp_path / "archive")
    segs = _archive(store, {0: [b'{"a": 1}\n{"a": 2', b"222"]})
    assert staging.stage_members(store, NODE, segs, tmp_path / "m.gz") is None
    assert staging.stage_lines(store, NODE, segs, None, Damage(), "here")[0] == b'{"a": 1}\n'


def _task_line(i: int) -> bytes:
    task_id = base64.b64encode(i.to_bytes(4, "big") + b"\xff" * 16 + b"\x01\x00\x00\x00").decode()
    return (
        json.dumps(
            {
                "event_data": {
                    "task_id": task_id,
                    "attempt_number": 0,
                    "job_id": "AQAAAA==",
                    "state_updates": {"state_ts_ns": {"11": str(1_795_000_000_000_000_000 + i)}},
                },
                "source_type": "EXPORT_TASK",
                "timestamp": 1_795_000_000,
            }
        ).encode()
        + b"\n"
    )


def _task_ids(tables: Path) -> set[str]:
    return {r[0] for r in duckdb.sql(f"SELECT task_id FROM '{tables}/tasks*.parquet'").fetchall()}


def test_a_damaged_segment_of_task_events_costs_the_rest_of_its_file_only(tmp_path):
    """A middle segment is not decompressed while staging: DuckDB finds it, and the build stages the files again."""
    store = LocalStore(tmp_path / "archive")
    lines = [_task_line(i) for i in range(9)]
    segs = _archive(store, {0: [b"".join(lines[:3]), b"".join(lines[3:6]), b"".join(lines[6:])]})
    healthy = compact(store, NODE.session, tmp_path / "healthy", session_end_ms=None)
    assert healthy["damage"]["bad_lines"] == 0 and len(_task_ids(tmp_path / "healthy")) == 9

    store.put(NODE.segment_key(segs[1]), b"this is not gzip")
    damaged = compact(store, NODE.session, tmp_path / "damaged", session_end_ms=None)
    assert any("cannot be decompressed" in e for e in damaged["damage"]["examples"])
    assert _task_ids(tmp_path / "damaged") == set(sorted(_task_ids(tmp_path / "healthy"))[:3])
