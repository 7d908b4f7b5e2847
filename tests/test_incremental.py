"""The incremental fold (historyserver/compaction/incremental.py): a session folded batch by batch while it is
archived, across restarts of the server (a new Folder per fold, a fold that dies before its commit) and of the
collector (segments shipped again, the rest cut at other offsets), ends with exactly the one-shot build's tables."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from archive import logs as archive_logs
from archive.compacted import COMPACTION_VERSION, FILES, PROFILE_EVENTS, TABLES, TASK_TIMELINE, TASKS
from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.manifest import SessionManifest
from archive.storage import open_store
from archive.storage.local import LocalStore
from archive.storage.snapshot import ListingSnapshot
from benchmarks.stream_session import Streamer
from benchmarks.synthetic_session import generate
from historyserver import services
from historyserver.app import create_app
from historyserver.compaction import checkpoint, incremental, log_parts
from historyserver.compaction.incremental import Folder
from historyserver.compaction.incremental_build import compact_folded
from historyserver.compaction.publish import compact_closed
from historyserver.folding import LiveFolder
from historyserver.queries import timeline_view as timeline_view_module
from historyserver.queries.session_db import SessionDB, table_paths
from historyserver.queries.timeline_view import ViewFilter, timeline_view
from historyserver.settings import ServerSettings


def _differences(a: Path, b: Path) -> dict[str, tuple[int, int, int]]:
    """Per table: (rows of a, rows only in a, rows only in b). Left out: log_files' segment counts (they depend on
    how the collector cut the files, not on the fold), the log tables' blocks (numbered per part when the logs
    were folded too): log_terms is compared as each token's count of lines, and task_timeline's lane ids (numbered
    as workers appear when folded), checked as ids instead: "task_timeline ids" is (rows, lanes or node ranks of a
    naming more than one worker or node, or a worker or node with more than one, the same of b)."""
    con = duckdb.connect()
    found = {}
    for t in TABLES:
        skip = {"log_files": "EXCLUDE (segments)", "log_lines": "EXCLUDE (block)"}.get(t.name, "")
        skip = "EXCLUDE (lane, node_rank)" if t.name == "task_timeline" else skip
        x, y = (f"SELECT * {skip} FROM read_parquet({table_paths(d, t)})" for d in (a, b))
        if t.name == "log_terms":
            x, y = (f"SELECT token, sum(lines) FROM read_parquet({table_paths(d, t)}) GROUP BY token" for d in (a, b))
        rows = con.execute(f"SELECT count(*) FROM read_parquet({table_paths(a, t)})").fetchone()[0]
        only_a = con.execute(f"SELECT count(*) FROM ({x} EXCEPT ALL {y})").fetchone()[0]
        only_b = con.execute(f"SELECT count(*) FROM ({y} EXCEPT ALL {x})").fetchone()[0]
        found[t.name] = (rows, only_a, only_b)
    found["task_timeline ids"] = (found["task_timeline"][0], *(_bad_lane_ids(con, d) for d in (a, b)))
    return found


def _bad_lane_ids(con: duckdb.DuckDBPyConnection, tables: Path) -> int:
    """Lane ids naming more than one (node, worker), (node, worker) pairs with more than one lane id, and the same
    of node_rank and nodes."""
    timeline = f"read_parquet({table_paths(tables, TASK_TIMELINE)})"
    pair, node = "[coalesce(node_id, ''), coalesce(worker_id, '')]", "coalesce(node_id, '')"
    bad = 0
    for key, value in (("lane", pair), (pair, "lane"), ("node_rank", node), (node, "node_rank")):
        sql = f"SELECT count(*) FROM (SELECT {key} FROM {timeline} GROUP BY ALL HAVING count(DISTINCT {value}) > 1)"
        bad += con.execute(sql).fetchone()[0]
    return bad


def _streamed(src, ref: SessionRef, dst, batches: int, written: int = 0) -> Streamer:
    """A collector streaming the synthetic session into dst in `batches` batches: started, `written` of them archived."""
    stream = Streamer(src, dst, ref, batches=batches)
    stream.start()
    for _ in range(written):
        stream.write_batch()
    return stream


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    info = generate(str(root / "src"), 2000, log=lambda m: None, segment_mb=0.25)
    store = open_store(str(root / "src"))
    ref = SessionRef.from_id(info["session_id"])
    end_ms = SessionManifest.from_json(store.get(ref.manifest_key)).end_ms
    compact_closed(store, ref, root / "one-shot", end_ms)
    return store, ref, end_ms, root / "one-shot", info


def test_streamed_session_folds_to_the_one_shot_tables(synthetic, tmp_path, monkeypatch):
    src, ref, end_ms, one_shot, info = synthetic
    dst = LocalStore(tmp_path / "archive")
    stream = _streamed(src, ref, dst, batches=6)
    state = tmp_path / "state"
    monkeypatch.setattr(incremental, "MAX_FINAL_PARTS", 4)  # parts are merged along the way too
    monkeypatch.setattr(incremental, "RECENT_PARTS", 1)
    monkeypatch.setattr(incremental, "MERGE_RANGE_ROWS", 100)  # a range of task ids at a time
    folds, crashed = fold_through_restarts(stream, dst, ref, state, monkeypatch, batch_bytes=200_000)
    cp = checkpoint.load(state)
    assert crashed and folds > stream.batches  # some batches took several folds (the byte budget)
    assert cp.final and sum(p.rows for p in cp.final) > info["tasks"] // 2  # most attempts were final before the end
    assert any(p.tasks.startswith("tasks-m") for p in cp.final) and len(cp.final) <= 5
    stream.end()
    built = compact_folded(Folder(dst, ref, state), tmp_path / "tables", end_ms)
    assert built["counts"]["tasks"] == info["tasks"]
    differences = _differences(one_shot, tmp_path / "tables")
    assert {t: d for t, d in differences.items() if d[1] or d[2]} == {}
    assert differences["tasks"][0] == info["tasks"] and differences["profile_events"][0] > 0
    # The end links the final parts as the tables' parts, not a re-sorted union; merged ones are sorted too.
    for table, key in (
        (TASKS, "task_id, attempt_number"),
        (PROFILE_EVENTS, "task_id, attempt_number, start_time"),
        (TASK_TIMELINE, "from_ms, task_id, attempt_number"),
    ):
        files = built[FILES][table.name]
        assert len(files) == len(cp.final) + 1
        for f in files:
            assert _sorted(tmp_path / "tables" / f, key), f"{f} is not sorted by {key}"
    # Its lane ids are numbered as the workers appeared, yet the timeline answers as over the one-shot tables.
    monkeypatch.setattr(timeline_view_module, "MAX_ATTEMPTS", 200)  # zoomed out, density
    views = []
    for tables in (one_shot, tmp_path / "tables"):
        db, answers = SessionDB(tables), []
        for f in (ViewFilter(), ViewFilter(jobs=["01000000"])):
            whole = timeline_view(db, f, width=300)
            zoomed = timeline_view(db, f, whole["extent"]["start"], whole["extent"]["start"] + 50)
            for view in (whole, zoomed):
                view["lanes"] = [{k: v for k, v in lane.items() if k != "id"} for lane in view["lanes"]]
            answers += [whole, zoomed]
        db.close()
        views.append(answers)
    for view in (v for answers in views for v in answers if v["mode"] == "density"):  # runs: in lane id order
        d = view["density"]
        d["runs"] = sorted(zip(d.pop("lane"), d.pop("key"), d.pop("bucket"), d.pop("count"), strict=True))
    assert views[0] == views[1]
    assert views[0][0]["mode"] == "density" and views[0][1]["mode"] == "attempts" and len(views[0][0]["lanes"]) > 2


def fold_through_restarts(
    stream: Streamer, dst, ref: SessionRef, state: Path, monkeypatch, **folder
) -> tuple[int, int]:
    """Stream every batch, folding after each with a new Folder (a restarted server, which knows only the
    checkpoint); the collector restarts after the third batch and the server dies in the fourth batch's first fold,
    after writing its parts and before committing them. Returns (folds, crashes)."""
    folds = crashed = 0
    real_commit = checkpoint.commit
    for i in range(stream.batches):
        stream.write_batch()
        if i == 2:
            assert stream.rewrite_last() > 0  # the collector restarted and shipped its last ranges again
        if i == 3:

            def dying(state_dir, cp):
                raise OSError("killed")

            monkeypatch.setattr(checkpoint, "commit", dying)
            with pytest.raises(OSError):
                Folder(dst, ref, state, **folder).fold()
            monkeypatch.setattr(checkpoint, "commit", real_commit)
            crashed += 1
        folds += len(Folder(dst, ref, state, **folder).fold_all())
    return folds, crashed


def _sorted(path: Path, key: str) -> bool:
    """The file's rows, in file order, are in `key` order (ties allowed)."""
    con = duckdb.connect()
    con.execute("SET threads = 1; SET preserve_insertion_order = true")
    con.execute(
        f"CREATE TABLE t AS SELECT row_number() OVER () AS i, struct_pack({key}) AS k FROM read_parquet('{path}')"
    )
    return not con.execute(
        "SELECT count(*) FROM (SELECT k, lag(k) OVER (ORDER BY i) AS p FROM t) WHERE p > k"
    ).fetchone()[0]


def test_a_collector_restart_that_cuts_the_rest_elsewhere_changes_nothing(synthetic, tmp_path):
    src, ref, end_ms, one_shot, _ = synthetic
    dst = LocalStore(tmp_path / "archive")
    _streamed(src, ref, dst, batches=4, written=2)
    Folder(dst, ref, tmp_path / "state").fold_all()
    # The restarted collector resumes each file at the end of its archived run (FORMAT.md) with other cut
    # points: 2/4 of every file is archived, which is 3/6 of it; the rest comes in sixths.
    again = Streamer(src, dst, ref, batches=6)
    again.written = 3
    again.write_batch()
    Folder(dst, ref, tmp_path / "state").fold_all()
    again.end()
    compact_folded(Folder(dst, ref, tmp_path / "state"), tmp_path / "tables", end_ms)
    assert {t: d for t, d in _differences(one_shot, tmp_path / "tables").items() if d[1] or d[2]} == {}


def test_the_end_renders_the_last_batch_once_into_the_last_part(synthetic, tmp_path, monkeypatch):
    """The build's folds make no final part and merge none: every attempt still active is rendered once, into the
    table's last part, and the final parts are linked as the folds left them."""
    src, ref, end_ms, one_shot, _ = synthetic
    dst, state = LocalStore(tmp_path / "archive"), tmp_path / "state"
    stream = _streamed(src, ref, dst, batches=5)
    for _ in range(4):
        stream.write_batch()
        Folder(dst, ref, state).fold_all()
    before = checkpoint.load(state)
    assert before.final and before.held  # attempts a settling fold would make final
    monkeypatch.setattr(incremental, "MAX_FINAL_PARTS", 1)  # and a fold that adds a part would merge
    stream.end()
    info = compact_folded(Folder(dst, ref, state), tmp_path / "tables", end_ms)
    after = checkpoint.load(state)

    def origin(part) -> str:  # a part rewritten without a reopened attempt keeps its first fold's number
        return part.tasks.removeprefix("tasks-").split("-")[0].removesuffix(".parquet")

    assert [origin(p) for p in after.final] == [origin(p) for p in before.final]  # none added, none merged
    assert len(info[FILES][TASKS.name]) == len(after.final) + 1
    assert {t: d for t, d in _differences(one_shot, tmp_path / "tables").items() if d[1] or d[2]} == {}


def test_a_fold_stops_at_the_next_node_once_the_end_marker_is_archived(synthetic, tmp_path, monkeypatch):
    """The end marker archived while a fold reads its batch: the fold stops before it lists the next node (the build
    that follows lists and reads them all again) instead of reading every node first, and commits nothing."""
    src, ref, end_ms, one_shot, _ = synthetic
    dst, state = LocalStore(tmp_path / "archive"), tmp_path / "state"
    stream = _streamed(src, ref, dst, batches=3, written=1)
    Folder(dst, ref, state).fold_all()
    before = checkpoint.load(state)
    read_node_record = incremental.build._read_node_record
    nodes_read: list[str] = []

    def reading(store, session, node_id):
        nodes_read.append(node_id)
        if len(nodes_read) == 1:
            stream.end()  # the rest of the session and its end marker, archived while the fold reads its first node
        return read_node_record(store, session, node_id)

    monkeypatch.setattr(incremental.build, "_read_node_record", reading)
    result = Folder(dst, ref, state).fold()
    monkeypatch.undo()
    assert result.ended and result.events == 0
    assert len(nodes_read) == 1 < len(dst.list_dirs(ref.nodes_prefix))
    after = checkpoint.load(state)
    assert (after.seq, after.task_events, after.cursors) == (before.seq, before.task_events, before.cursors)
    compact_folded(Folder(dst, ref, state), tmp_path / "tables", end_ms)
    assert {t: d for t, d in _differences(one_shot, tmp_path / "tables").items() if d[1] or d[2]} == {}


def test_the_end_s_fold_reuses_the_build_s_parsed_listing(synthetic, tmp_path, monkeypatch):
    """A closed session's build lists its archive once (Warehouse._compact's ListingSnapshot): the backlog check
    parses the segment keys, and the last fold given the same snapshot does not parse them again."""
    src, ref, end_ms, one_shot, _ = synthetic
    dst, state = LocalStore(tmp_path / "archive"), tmp_path / "state"
    stream = _streamed(src, ref, dst, batches=3, written=1)
    Folder(dst, ref, state).fold_all()
    stream.end()
    snapshot = ListingSnapshot(dst)
    folder = Folder(snapshot, ref, state)
    assert folder.backlog_bytes() > 0
    parsed: list[str] = []
    parse = archive_logs.parse_segment_key
    monkeypatch.setattr(archive_logs, "parse_segment_key", lambda key, *a: parsed.append(key) or parse(key, *a))
    assert folder.fold(at_end=True).events > 0
    assert parsed == []


def test_a_merge_is_left_undone_when_the_end_marker_comes(synthetic, tmp_path, monkeypatch):
    """The end's build waits for the fold in progress: a merge in it stops at the end marker (its parts are kept as
    they were, its files removed) while the fold itself is committed, and the end's tables are still the one-shot's."""
    src, ref, end_ms, one_shot, _ = synthetic
    dst, state = LocalStore(tmp_path / "archive"), tmp_path / "state"
    stream = _streamed(src, ref, dst, batches=8)
    monkeypatch.setattr(incremental, "MAX_FINAL_PARTS", 100)
    monkeypatch.setattr(incremental, "RECENT_PARTS", 1)
    for _ in range(6):
        stream.write_batch()
        Folder(dst, ref, state).fold_all()
    before = checkpoint.load(state)
    assert len(before.final) >= 5
    merge_sorted = incremental.merge_sorted
    merges: list[str] = []

    def ending(con, parts, out, order, stop):
        merges.append(out.name)
        stream.end()  # the rest and the end marker, archived while the fold merges
        return merge_sorted(con, parts, out, order, stop)

    monkeypatch.setattr(incremental, "MAX_FINAL_PARTS", 4)  # a merge of 2 parts
    monkeypatch.setattr(incremental, "merge_sorted", ending)
    result = Folder(dst, ref, state).fold()
    assert merges and not result.ended  # the fold had read its batch: it is committed, without its merge
    after = checkpoint.load(state)
    assert after.seq == before.seq + 1 and after.final[: len(before.final)] == before.final
    assert not any(name.startswith(("tasks-m", ".tasks-m")) for name in os.listdir(state))
    monkeypatch.undo()
    compact_folded(Folder(dst, ref, state), tmp_path / "tables", end_ms)
    assert {t: d for t, d in _differences(one_shot, tmp_path / "tables").items() if d[1] or d[2]} == {}


def test_a_log_part_is_left_to_the_end_when_the_end_marker_comes(synthetic, tmp_path, monkeypatch):
    """The end marker archived while a fold folds its batch: the fold commits it, but leaves the logs waiting to the
    end's last log part (one pass) instead of holding the end's build up with a part of its own."""
    src, ref, end_ms, one_shot, _ = synthetic
    dst, state = LocalStore(tmp_path / "archive"), tmp_path / "state"
    monkeypatch.setattr(log_parts, "PART_BYTES", 1)  # a log part at every fold
    stream = _streamed(src, ref, dst, batches=3, written=1)
    Folder(dst, ref, state).fold_all()
    before = checkpoint.load(state)
    assert before.log_parts
    stream.write_batch()
    fold_sql = Folder._fold_sql

    def ending(self, *args, **kwargs):
        stream.end()  # the rest and the end marker, archived while the fold folds its batch
        return fold_sql(self, *args, **kwargs)

    monkeypatch.setattr(Folder, "_fold_sql", ending)
    result = Folder(dst, ref, state).fold()
    monkeypatch.undo()
    after = checkpoint.load(state)
    assert result.events > 0 and after.seq == before.seq + 1  # the batch is committed
    assert after.log_parts == before.log_parts and result.log_bytes == 0
    compact_folded(Folder(dst, ref, state), tmp_path / "tables", end_ms)
    assert {t: d for t, d in _differences(one_shot, tmp_path / "tables").items() if d[1] or d[2]} == {}


def test_a_fold_that_finds_the_end_marker_leaves_its_batch_to_the_build(synthetic, tmp_path):
    """A fold whose batch came with the session's end commits nothing: the build that follows folds that batch
    (once, nothing made final) instead of waiting for the fold."""
    src, ref, end_ms, one_shot, _ = synthetic
    dst, state = LocalStore(tmp_path / "archive"), tmp_path / "state"
    stream = _streamed(src, ref, dst, batches=3, written=1)
    Folder(dst, ref, state).fold_all()
    before = checkpoint.load(state)
    stream.end()
    result = Folder(dst, ref, state).fold()
    assert result.ended and result.events == 0
    after = checkpoint.load(state)
    assert (after.seq, after.task_events, after.cursors) == (before.seq, before.task_events, before.cursors)
    info = compact_folded(Folder(dst, ref, state), tmp_path / "tables", end_ms)
    assert info["incremental"]["last_folds"] >= 1
    assert {t: d for t, d in _differences(one_shot, tmp_path / "tables").items() if d[1] or d[2]} == {}


# --- constructed events: late events and log files that appear after a task was final --------------------------

NODE = "ab" * 28
WORKER = "cd" * 28
JOB = "01000000"
TASK_A = "aa" * 8 + "f" * 32 + JOB
TASK_B = "bb" * 8 + "f" * 32 + JOB
TASK_C = "cc" * 8 + "f" * 32 + JOB
TASK_D = "dd" * 8 + "f" * 32 + JOB
NS = 1_000_000
T0 = 1795637001000


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _task(task_hex: str, ts: int, **data) -> bytes:
    event = {"task_id": _b64(task_hex), "attempt_number": 0, "job_id": _b64(JOB), **data}
    return json.dumps({"source_type": "EXPORT_TASK", "timestamp": ts, "event_data": event}).encode() + b"\n"


def _states(*codes_ms: tuple[int, int], **extra) -> dict:
    return {"state_updates": {"state_ts_ns": {str(c): str(ms * NS) for c, ms in codes_ms}, **extra}}


class _File:
    """One archived export file, appended to as a collector ships it (a segment per append)."""

    def __init__(self, store: LocalStore, ref: SessionRef, path: str) -> None:
        self.store, self.node, self.path, self.size = store, ref.node(NODE), path, 0

    def append(self, data: bytes) -> None:
        seg = LogSegment(self.path, 0, self.size, self.size + len(data))
        self.store.put(self.node.segment_key(seg), encode(data))
        self.size += len(data)


def test_an_attempt_ended_in_a_batch_that_took_two_folds_waits_for_the_next_batch(tmp_path):
    """A batch larger than a fold's bytes takes two folds; the second reads only the batch's rest, so an attempt
    quiet in it is not yet known to be complete: it goes final after the next batch's fold, without a reopen."""
    store = LocalStore(tmp_path / "archive")
    ref = SessionRef("default", "late", "session_2026-11-25_19-58-10_123456_1")
    owner = _File(store, ref, "export_events/event_EXPORT_TASK_100.log")
    worker = _File(store, ref, "export_events/event_EXPORT_TASK_200.log")
    other = _File(store, ref, "export_events/event_EXPORT_TASK_300.log")
    info = {"task_info": {"type": "NORMAL_TASK", "func_or_class_name": "f", "language": "PYTHON"}}
    ran = _task(TASK_A, T0 // 1000, **_states((1, T0), (8, T0 + 1), (11, T0 + 5)))
    worker.append(ran)
    other.append(_task(TASK_B, T0 // 1000, **info))
    state = tmp_path / "state"
    folds = Folder(store, ref, state, batch_bytes=len(ran)).fold_all()
    assert [f.behind for f in folds] == [True, False]  # A's file, then the rest of the batch
    assert checkpoint.load(state).final == []  # A ended in the batch's first fold: not final after its second
    owner.append(_task(TASK_A, T0 // 1000 + 1, **info))  # the rest of A, in the next batch
    Folder(store, ref, state, batch_bytes=len(ran)).fold_all()
    assert checkpoint.load(state).final == []  # A got its late event while active: nothing to reopen
    other.append(_task(TASK_C, T0 // 1000 + 2, **info))
    Folder(store, ref, state, batch_bytes=len(ran)).fold_all()
    cp = checkpoint.load(state)
    assert [(p.tasks, p.rows) for p in cp.final] == [(f"tasks-{cp.seq:06d}.parquet", 1)]  # final, never rewritten
    end_ms = T0 + 60_000
    compact_folded(Folder(store, ref, state), tmp_path / "folded", end_ms)
    compact_closed(store, ref, tmp_path / "one-shot", end_ms)
    differences = _differences(tmp_path / "one-shot", tmp_path / "folded")
    assert differences["tasks"][0] == 3 and {t: d for t, d in differences.items() if d[1] or d[2]} == {}


def test_late_events_and_late_worker_logs_refold_final_attempts(tmp_path):
    store = LocalStore(tmp_path / "archive")
    ref = SessionRef("default", "late", "session_2026-11-25_19-58-10_123456_1")
    owner = _File(store, ref, "export_events/event_EXPORT_TASK_100.log")
    worker = _File(store, ref, "export_events/event_EXPORT_TASK_200.log")
    info = {"task_info": {"type": "NORMAL_TASK", "func_or_class_name": "f", "language": "PYTHON"}}
    log_info = {"task_log_info": {"stdout_file": "", "stderr_file": "", "stdout_start": 0, "stdout_end": 10}}
    owner.append(_task(TASK_A, T0 // 1000, **info) + _task(TASK_A, T0 // 1000, **_states((1, T0), (11, T0 + 5))))
    worker.append(
        _task(TASK_A, T0 // 1000, **_states((8, T0 + 1), node_id=_b64(NODE), worker_id=_b64(WORKER), **log_info))
        + b'{"source_type": "EXPORT_TASK", "timestamp": 1'  # a line cut by the collector: waits for its end
    )
    state = tmp_path / "state"
    Folder(store, ref, state).fold_all()
    assert checkpoint.load(state).final == []  # A just ended: held one fold for the rest of its events
    owner.append(_task(TASK_C, T0 // 1000, **info))  # a batch without A's events: A goes final
    Folder(store, ref, state).fold_all()
    cp = checkpoint.load(state)
    assert [p.rows for p in cp.final] == [1] and cp.worker_logs == {f"{NODE}/{WORKER}": [None, None]}

    # The rest of the cut line (a profile event of A, after A was final), task B, and A's worker's log file.
    profile = {"component_type": "worker", "component_id": _b64(WORKER), "node_ip_address": "192.0.2.1"}
    profile["events"] = [{"event_name": "task:execute", "start_time": str(T0 * NS), "end_time": str((T0 + 4) * NS)}]
    rest = _task(TASK_A, T0 // 1000 + 1, profile_events=profile).split(b'"timestamp": 1', 1)[1]
    worker.append(rest + _task(TASK_B, T0 // 1000 + 2, **info))
    out = LogSegment(f"worker-{WORKER}-{JOB}-4242.out", 0, 0, 3)
    store.put(ref.node(NODE).segment_key(out), encode(b"hi\n"))
    Folder(store, ref, state).fold_all()
    cp = checkpoint.load(state)
    assert sum(p.rows for p in cp.final) == 0  # A reopened (held again); B has no state yet
    # The worker's new log paths are recorded at once: its rows are not reopened again by the next fold.
    assert cp.worker_logs[f"{NODE}/{WORKER}"][0] == f"worker-{WORKER}-{JOB}-4242.out"
    owner.append(_task(TASK_D, T0 // 1000 + 3, **info))
    Folder(store, ref, state).fold_all()
    cp = checkpoint.load(state)
    assert sum(p.rows for p in cp.final) == 1  # A refolded once, not twice
    assert cp.worker_logs[f"{NODE}/{WORKER}"][0] == f"worker-{WORKER}-{JOB}-4242.out"

    end_ms = T0 + 60_000
    compact_folded(Folder(store, ref, state), tmp_path / "folded", end_ms)
    compact_closed(store, ref, tmp_path / "one-shot", end_ms)
    differences = _differences(tmp_path / "one-shot", tmp_path / "folded")
    assert differences["tasks"] == (4, 0, 0) and differences["profile_events"] == (1, 0, 0)
    assert {t: d for t, d in differences.items() if d[1] or d[2]} == {}
    logs = duckdb.sql(
        f"SELECT task_log_info.stdout_file FROM read_parquet({table_paths(tmp_path / 'folded', TASKS)}) "
        "WHERE name = 'f' AND task_log_info IS NOT NULL"
    )
    stdout = {r[0] for r in logs.fetchall()}
    assert stdout == {f"worker-{WORKER}-{JOB}-4242.out"}


def test_checkpoint_drops_what_no_commit_listed(tmp_path):
    state = tmp_path / "state"
    cp = checkpoint.load(state)
    (state / "active-000001.parquet").write_bytes(b"x")
    cp.active, cp.seq = "active-000001.parquet", 1
    checkpoint.commit(state, cp)
    (state / "tasks-000002.parquet").write_bytes(b"left by a fold that died before its commit")
    assert checkpoint.load(state).active == "active-000001.parquet"
    assert sorted(p.name for p in state.iterdir()) == ["active-000001.parquet", checkpoint.FILE]
    cp.active = "active-000009.parquet"
    with pytest.raises(FileNotFoundError, match="active-000009"):
        checkpoint.commit(state, cp)  # a checkpoint never lists a part that is not there


# --- the server: folds while the session runs, and builds its tables from the folds at the end ------------------


def _wait(condition, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_server_folds_running_sessions_across_restarts(synthetic, tmp_path):
    src, ref, end_ms, one_shot, info = synthetic
    archive = tmp_path / "archive"
    stream = _streamed(src, ref, LocalStore(archive), batches=4)
    settings = ServerSettings(
        archive=str(archive), cache_dir=str(tmp_path / "cache"), catalog_ttl=0, fold_interval=0.05
    )
    state = tmp_path / "cache" / f"incremental-c{COMPACTION_VERSION}" / ref.id
    for _ in range(2):  # two lifetimes of the server: the second resumes from the first's checkpoint
        with TestClient(create_app(settings, open_store(str(archive)))) as client:
            warehouse = client.app.state.services.warehouse
            for _ in range(2):
                stream.write_batch()
                seen = warehouse.stats.folds
                _wait(lambda w=warehouse, n=seen: w.stats.folds >= n + 2, "a fold started after the batch was written")
    assert sum(p.rows for p in checkpoint.load(state).final) > info["tasks"] // 2
    stream.end()
    with TestClient(create_app(settings, open_store(str(archive)))) as client:
        page = client.get(f"/sessions/{ref.id}/api/v0/tasks?limit=100")
        assert page.status_code == 200, page.text
        assert page.json()["data"]["result"]["total"] == info["tasks"] - info["driver_tasks"]
    tables = tmp_path / "cache" / f"compacted-c{COMPACTION_VERSION}" / ref.id
    built = json.loads((tables / "info.json").read_text())
    assert built["closed"] and built["incremental"]["last_folds"] >= 1  # built from the folds, not from scratch
    assert not state.exists()  # the folds are in the tables now
    assert {t: d for t, d in _differences(one_shot, tables).items() if d[1] or d[2]} == {}


def test_the_folding_server_builds_an_ended_session_at_once_not_after_the_catalog_ttl(synthetic, tmp_path):
    """The live folder reads a folded session's index entry again after each fold: the session's end is seen, and
    its tables built, within a fold round, with no request and long before the catalog's next listing."""
    src, ref, end_ms, one_shot, info = synthetic
    archive = tmp_path / "archive"
    stream = _streamed(src, ref, LocalStore(archive), batches=2)
    ttl = 600.0  # the catalog lists once, at start: only the folder's own reading can see the end
    settings = ServerSettings(
        archive=str(archive), cache_dir=str(tmp_path / "cache"), catalog_ttl=ttl, fold_interval=0.05
    )
    tables = tmp_path / "cache" / f"compacted-c{COMPACTION_VERSION}" / ref.id
    with TestClient(create_app(settings, open_store(str(archive)))) as client:
        services = client.app.state.services
        assert not services.catalog.get(ref.id).closed
        stream.write_batch()
        _wait(lambda: services.warehouse.stats.folds >= 1, "a fold of the running session")
        stream.end()
        _wait(lambda: (tables / "info.json").exists(), "the ended session's tables, built with no request", 120)
        assert json.loads((tables / "info.json").read_text())["closed"]
        assert services.catalog.get(ref.id).closed  # the catalog's listing knows the end too
        page = client.get(f"/sessions/{ref.id}/api/v0/tasks?limit=100")
        assert page.json()["data"]["result"]["total"] == info["tasks"] - info["driver_tasks"]
    assert {t: d for t, d in _differences(one_shot, tables).items() if d[1] or d[2]} == {}


def test_an_end_seen_before_a_fold_is_built_at_once_without_folding_first(synthetic, tmp_path):
    """A session that ended while the live folder waited between rounds is built in the next round, with no fold
    of the running session first (that fold was a whole fold's time between the end and the answers at 1M tasks)."""
    src, ref, end_ms, one_shot, info = synthetic
    archive = tmp_path / "archive"
    stream = _streamed(src, ref, LocalStore(archive), batches=3)
    settings = ServerSettings(archive=str(archive), cache_dir=str(tmp_path / "cache"), catalog_ttl=600.0)
    svc = services.build(settings, open_store(str(archive)))  # no app lifespan: this test runs the rounds itself
    folder = LiveFolder(svc.catalog, svc.warehouse, 3600.0)
    stream.write_batch()
    folder.fold_round()
    assert svc.warehouse.stats.folds == 1 and not svc.catalog.get(ref.id).closed
    stream.end()  # the rest of the batches, then the end markers: all of it waits for the next round
    folder.fold_round()
    assert svc.warehouse.stats.folds == 1  # no fold of the running session: the build folded the rest
    tables = tmp_path / "cache" / f"compacted-c{COMPACTION_VERSION}" / ref.id
    built = json.loads((tables / "info.json").read_text())
    assert built["closed"] and built["incremental"]["last_folds"] >= 1
    assert {t: d for t, d in _differences(one_shot, tables).items() if d[1] or d[2]} == {}


def test_http_event_spools_fold_to_the_one_shot_tables(reference, tmp_path):
    """Ray's HTTP path (ray_events/ spools, real Ray 2.60 samples): cut mid-line into three uploads, each folded."""
    samples = reference / "ray_events_http"
    events = [e["event"] for e in json.loads((samples / "one_task_all_events.json").read_text())["events"]]
    events += list(json.loads((samples / "one_event_per_type.json").read_text())["events"].values())
    spool = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    store = LocalStore(tmp_path / "archive")
    ref = SessionRef("default", "http", "session_2026-11-25_19-58-10_578535_6555")
    node = ref.node(NODE)
    cuts = [0, len(spool) // 3 + 7, 2 * len(spool) // 3 - 5, len(spool)]
    state = tmp_path / "state"
    for start, end in zip(cuts, cuts[1:]):
        store.put(
            node.segment_key(LogSegment("events-0001.jsonl", 0, start, end, "ray_events")), encode(spool[start:end])
        )
        Folder(store, ref, state).fold_all()
    assert checkpoint.load(state).http_events  # the non-task events were kept for the end's folds
    end_ms = 1795637100000
    compact_folded(Folder(store, ref, state), tmp_path / "folded", end_ms)
    compact_closed(store, ref, tmp_path / "one-shot", end_ms)
    differences = _differences(tmp_path / "one-shot", tmp_path / "folded")
    assert differences["tasks"][0] >= 2 and differences["actors"][0] >= 1 and differences["nodes"][0] >= 1
    assert {t: d for t, d in differences.items() if d[1] or d[2]} == {}


def test_a_fold_out_of_memory_is_retried_on_a_smaller_batch(synthetic, tmp_path, monkeypatch):
    src, ref, end_ms, one_shot, _ = synthetic
    dst = LocalStore(tmp_path / "archive")
    stream = _streamed(src, ref, dst, batches=2, written=1)
    real = Folder._fold_sql
    sizes = []

    def tight(self, con, cp, work, staged, worker_logs, **how):  # a fold of more than 1 MB does not fit
        sizes.append(self.batch_bytes)
        if sum(p.stat().st_size for p in staged) > 1_000_000:
            raise duckdb.OutOfMemoryException("Out of Memory Error: (test)")
        return real(self, con, cp, work, staged, worker_logs, **how)

    monkeypatch.setattr(incremental, "MIN_BATCH_BYTES", 100_000)
    monkeypatch.setattr(Folder, "_fold_sql", tight)
    Folder(dst, ref, tmp_path / "state", batch_bytes=4_000_000).fold_all()
    assert sizes[0] == 4_000_000 and min(sizes) <= 1_000_000
    monkeypatch.setattr(Folder, "_fold_sql", real)
    stream.end()
    compact_folded(Folder(dst, ref, tmp_path / "state"), tmp_path / "tables", end_ms)
    assert {t: d for t, d in _differences(one_shot, tmp_path / "tables").items() if d[1] or d[2]} == {}


def test_incremental_benchmark_fails_on_a_missed_target_or_a_differing_answer():
    from benchmarks import incremental as bench

    answers = {name: 7 for name in bench._routes("x")}
    good = {"wait_s": 2.0, "rss_mib": 500.0, "answers": answers, "folds": 3, "fold_seconds": 1.0}
    base = {**good, "wait_s": 12.0}
    assert bench.problems(good, base) == []
    assert "PASS" in bench.table({"tasks": 10}, 2, 4.0, good, base)
    assert bench.problems({**good, "wait_s": 6.0}, base) and bench.problems({**good, "rss_mib": 2000.0}, base)
    assert bench.problems({**good, "answers": {**answers, "summarize": 6}}, base)
    assert bench.problems({"error": "exit code 1"}, base) == ["folded: exit code 1"]


def test_the_backlog_counts_what_the_folds_have_not_read(synthetic, tmp_path):
    src, ref, _, _, _ = synthetic
    dst = LocalStore(tmp_path / "archive")
    stream = _streamed(src, ref, dst, batches=2, written=1)
    folder = Folder(dst, ref, tmp_path / "state", batch_bytes=200_000)
    before = folder.backlog_bytes()
    assert before > 200_000
    folder.fold()
    assert 0 < folder.backlog_bytes() <= before - 200_000 + 65_536  # a fold ends at a line's end past its budget
    folder.fold_all()
    tails = folder.backlog_bytes()  # each file cut mid-line: its last line waits for its newline
    assert 0 < tails < 200_000
    stream.write_batch()  # the rest: every file whole
    assert folder.backlog_bytes() > tails
    folder.fold_all()
    assert folder.backlog_bytes() == 0


def test_a_session_that_outran_its_folds_is_built_whole_at_its_end(synthetic, tmp_path, monkeypatch):
    src, ref, end_ms, one_shot, info = synthetic
    archive = tmp_path / "archive"
    stream = _streamed(src, ref, LocalStore(archive), batches=4, written=1)
    state = tmp_path / "cache" / f"incremental-c{COMPACTION_VERSION}" / ref.id
    Folder(LocalStore(archive), ref, state).fold_all()  # folded while it ran, then three quarters arrive at once
    for _ in range(3):
        stream.write_batch()
    stream.end()
    monkeypatch.setattr(incremental, "END_BACKLOG_BYTES", 1000)
    settings = ServerSettings(archive=str(archive), cache_dir=str(tmp_path / "cache"), catalog_ttl=0)
    with TestClient(create_app(settings, open_store(str(archive)))) as client:
        page = client.get(f"/sessions/{ref.id}/api/v0/tasks?limit=100")
        assert page.status_code == 200, page.text
        assert page.json()["data"]["result"]["total"] == info["tasks"] - info["driver_tasks"]
    tables = tmp_path / "cache" / f"compacted-c{COMPACTION_VERSION}" / ref.id
    built = json.loads((tables / "info.json").read_text())
    assert built["closed"] and "incremental" not in built  # built whole, not from the folds
    assert not state.exists()
    assert {t: d for t, d in _differences(one_shot, tables).items() if d[1] or d[2]} == {}


def test_a_merge_takes_the_smallest_parts_up_to_its_bound_and_never_rewrites_large_ones():
    """Merges stay a few seconds of a fold: the parts already merged up to MERGE_MAX_ROWS are left alone, however
    many there are (a merge of the oldest of any once rewrote 799k rows at a 1M-task session's end)."""
    from historyserver.compaction.checkpoint import FinalPart

    def part(name: str, rows: int) -> FinalPart:
        return FinalPart(f"tasks-{name}.parquet", f"profile-{name}.parquet", f"events-{name}.parquet", rows)

    big = [part(f"m{i}", 120_000) for i in range(12)]
    small = [part(f"{i:06d}", 5_000 + i) for i in range(6)]
    older = big[:6] + small[:3] + big[6:] + small[3:]
    taken = incremental.merge_candidates(older, 12, max_rows=131_072)
    assert taken == small  # the smallest, in the parts' order, and no large one
    assert incremental.merge_candidates(older, 4, max_rows=131_072) == small[:4]
    assert incremental.merge_candidates(big, 12, max_rows=131_072) == []  # two large ones would pass the bound
    assert incremental.merge_candidates([small[0]], 12, max_rows=131_072) == []
    mixed = [big[0], *small[:2]]
    assert incremental.merge_candidates(mixed, 12, max_rows=131_000) == mixed  # 120,000 + 5,000 + 5,001 rows


def test_merged_and_rewritten_parts_stay_sorted_in_bounded_ranges(tmp_path, monkeypatch):
    """merge_sorted sorts a range of task ids at a time (several ranges here) and without_out keeps a part's order
    without sorting: both give sorted files with every row kept once."""
    con = duckdb.connect()
    parts = []
    for i in range(5):
        parts.append(tmp_path / f"p{i}.parquet")
        con.execute(f"""
            COPY (SELECT md5(({i} * 100000 + range)::VARCHAR) || 'ffff01000000' AS task_id, (range % 3)::INTEGER
                         AS attempt_number, repeat('x', 500) AS record
                  FROM range(3000) ORDER BY task_id, attempt_number) TO '{parts[-1]}' (FORMAT parquet)
        """)
    monkeypatch.setattr(incremental, "MERGE_RANGE_ROWS", 1000)  # 15 ranges
    incremental.merge_sorted(con, parts, tmp_path / "merged.parquet", incremental.TASKS_ORDER)
    assert _sorted(tmp_path / "merged.parquet", incremental.TASKS_ORDER)
    same = f"SELECT * FROM read_parquet({[str(p) for p in parts]}) EXCEPT ALL SELECT * FROM '{tmp_path / 'merged.parquet'}'"
    assert con.execute(f"SELECT count(*) FROM ({same})").fetchone()[0] == 0
    assert con.execute(f"SELECT count(*) FROM '{tmp_path / 'merged.parquet'}'").fetchone()[0] == 15000

    con.execute(f"CREATE TABLE t_out AS SELECT task_id, attempt_number FROM '{parts[0]}' USING SAMPLE 300 ROWS")
    incremental.without_out(con, tmp_path / "merged.parquet", tmp_path / "kept.parquet")
    assert _sorted(tmp_path / "kept.parquet", incremental.TASKS_ORDER)
    assert con.execute(f"SELECT count(*) FROM '{tmp_path / 'kept.parquet'}'").fetchone()[0] == 15000 - 300
