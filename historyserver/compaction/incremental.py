"""Task attempts folded while the session lives, batch by batch of newly archived event bytes, so that its end
leaves little to do (issue 16, goal 1).

Each fold reads the bytes archived since the checkpoint (checkpoint.py) from every node's EXPORT_TASK files and
ray_events/ spools, at most `batch_bytes` of them, and folds them with the one-shot build's own SQL
(tasks_sql._fold) together with the earlier events of the attempts they touch:
- an attempt that had reached FINISHED or FAILED by the last fold that read everything archived, and got no
  event since, goes to an immutable *final* part in the next such fold: its tasks and profile_events rows as the
  one-shot build renders them, and its raw events (it is held that long because the rest of an attempt that just
  ended comes from other files, often in the next batch);
- any other attempt keeps its raw events in the *active* part, rewritten per fold and rendered only at the end,
  when the session's end, its jobs' ends and its actors' names are known.
A final row depends on nothing the end can change, with two exceptions the folder tracks: an actor's creation
task takes the actor's name (so those attempts stay active), and a task whose events name no log file takes its
worker's (the worker_logs a final row was rendered with are recorded; if the listing later differs, the rows of
that worker are refolded). An event that arrives for an attempt already final refolds it the same way.
At the end, incremental_build.py folds the active part; the table's parts are the final parts and that one.
Each final part has its task_timeline part too (task_timeline.write_part), so the end sorts only the last.
A fold that is not behind on task events also parses the logs archived since the last into a part of the
log-search tables (log_parts.py). A fold that finds the session's end marker once it has read its batch commits
nothing: the build that follows folds the batch instead (at_end: nothing made final, no merge, the logs left to the
log tables' last part).
Every part is sorted by task id (merges and rewrites keep it so), but parts overlap: a page of tasks reads a row
group of each, so they are written in small row groups (PART_ROW_GROUP_ROWS) and kept few (MAX_FINAL_PARTS).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from archive import logs as archive_logs
from archive.compacted import PROFILE_EVENTS, TABLE_SUFFIX, TASKS
from archive.layout import NodeRef, SessionRef
from archive.storage import Store
from archive.storage.snapshot import ListingSnapshot
from historyserver.compaction import build, checkpoint, log_parts, ray_events, tables, task_timeline, tasks_sql
from historyserver.compaction.checkpoint import Checkpoint, FinalPart
from historyserver.compaction.export_events import Damage
from historyserver.compaction.tables import DEFAULT_MEMORY, duckdb_for_compaction

log = logging.getLogger("rayhistory.compaction")

# Event bytes one fold reads at most: its memory grows with it, and each fold has a fixed cost (reopening, merging,
# rewriting the active part). 32 MB: a 1M-task session streamed at 3.6 MB/s (22 MB batches) folds each batch in one
# fold, its last 10 batches in 33.5 s against 39.6 s in two folds each of 16 MB.
BATCH_BYTES = 32 << 20
MIN_BATCH_BYTES = 1 << 20  # a fold out of memory is retried on half the bytes, down to this
# At a session's end, a backlog larger than this is not folded: folding runs at about a third of the one-shot
# build's pace (16 MB folds of ~3 s against ~16 MB/s), so a session that outran its folds is built whole
# (benchmarks/incremental.py at 1M tasks: 829 s folding the rest, 132 s building whole).
END_BACKLOG_BYTES = 64 << 20
FOLD_MEMORY = "256MB"  # DuckDB's memory in one fold (at most the compaction's): a batch is small, the rest spills
MAX_FINAL_PARTS = 24  # above this many final parts, older ones are merged into one
# The newest parts are left out of merges: a late event reopens an attempt of a recent part mostly, and rewrites
# the part that holds it (a merged one was rewritten at every fold: 8M rows over 30 folds of a 1M-task stream).
RECENT_PARTS = 8
# Parts overlap in task id, so a page of tasks reads one row group of every part: groups of 2,048 rows read a page
# over 20 parts of a 100k-task session in 61 ms, groups of 16,384 in 104 ms (one sorted file: 34 ms).
PART_ROW_GROUP_ROWS = 2048
# A merge sorts its parts' rows a range of task ids at a time, ranges of about this many rows: one sort of every
# row of 12 parts at 1M tasks (about 240k wide records) ran out of a fold's 256 MB in every merge.
MERGE_RANGE_ROWS = 16384
# A merge's rows at most (merge_candidates): 90k rows of 12 parts merged in 2.4 s at 1M tasks, so a merge stays a
# few seconds of a fold; at 1M the final parts then number about a dozen of up to this size, plus the recent ones.
MERGE_MAX_ROWS = 131072
TASKS_ORDER = "task_id, attempt_number"
PROFILE_ORDER = "task_id, attempt_number, start_time"
TASK_FILE_PREFIX = "export_events/event_EXPORT_TASK"
TASK_KEY = "(task_id, attempt_number)"


def quoted(path: Path) -> str:
    return tasks_sql._sql_path(path)


listed = tasks_sql.sql_list


@dataclass
class FoldResult:
    bytes: int
    events: int
    final_rows: int  # attempts in final parts after the fold
    active_events: int
    seconds: float
    behind: bool = False  # the batch was full: more is archived already
    log_bytes: int = 0  # log bytes parsed into a part of the log tables (log_parts.py); the task events come first
    ended: bool = False  # the session's end marker came during the fold: nothing was committed, the build folds it


class EndCame(Exception):
    """The session's end marker was archived while a fold's optional work (a merge) ran: it is left undone."""


class Folder:
    """One session's incremental task fold, its state in `state_dir` (a local, throw-away cache like the tables)."""

    def __init__(
        self,
        store: Store,
        ref: SessionRef,
        state_dir: Path,
        memory_limit: str = DEFAULT_MEMORY,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.store, self.ref, self.dir = store, ref, Path(state_dir)
        self.memory_limit, self.batch_bytes = memory_limit, batch_bytes
        self._last_read = self._active_rows = 0

    def started(self) -> bool:
        return (self.dir / checkpoint.FILE).exists()

    def backlog_bytes(self) -> int:
        """Archived task-event bytes not folded yet: every task file's and ray_events spool's run past its cursor."""
        cp = checkpoint.load(self.dir)
        total = 0
        for node_id in self.store.list_dirs(self.ref.nodes_prefix):
            node = self.ref.node(node_id)
            listed = archive_logs.list_segments(self.store, node)
            sources = (
                ("logs", {p: s for p, s in listed.items() if p.startswith(TASK_FILE_PREFIX)}),
                ("ray_events", archive_logs.list_segments(self.store, node, source="ray_events")),
            )
            for source, files in sources:
                for path, segs in files.items():
                    for epoch in {s.epoch for s in segs}:
                        run = archive_logs.covering(segs, epoch)
                        if run:
                            total += max(0, run[-1].end - cp.cursor(f"{node_id}/{source}/{path}", epoch))
        return total

    def fold_all(self, at_end: bool = False) -> list[FoldResult]:
        """Fold batches until nothing new is archived (`at_end`: as fold's)."""
        done = []
        while True:
            result = self.fold(at_end)
            done.append(result)
            if not result.behind:
                return done

    # --- one fold ------------------------------------------------------------------------------------------------

    def fold(self, at_end: bool = False) -> FoldResult:
        """Fold the next batch of archived task events and commit it (checkpoint.py), and the logs archived since
        the last part, if the batch was not full. A batch that does not fit in the fold's memory is retried on half
        as many bytes (nothing was committed). `at_end`: a fold of the tables' build (incremental_build.py), which
        renders every active attempt next: no attempt goes final (it would be rendered twice, its part written),
        no parts are merged, and the logs are left to the log tables' last part (log_parts.finish, one pass)."""
        while True:
            try:
                return self._fold(at_end)
            except duckdb.OutOfMemoryException:
                if self.batch_bytes // 2 < MIN_BATCH_BYTES:
                    raise
                self.batch_bytes //= 2
                log.warning("%s: a fold ran out of memory; retrying on %d bytes", self.ref.id, self.batch_bytes)

    def _fold(self, at_end: bool) -> FoldResult:
        started = time.monotonic()
        cp = checkpoint.load(self.dir)
        work = self.dir / ".work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        cp.seq += 1
        damage = Damage(cp.bad_lines, list(cp.damage_examples))
        # One listing for the fold: its task events and its log part read the same (what came since waits for the
        # next fold). Listing each node twice was 0.5 of a fold's 2.5-3 s at 1M tasks. A closed session's folds are
        # given the build's snapshot (Warehouse._compact): wrapped again, its parsed listings were parsed again.
        store = self.store if isinstance(self.store, ListingSnapshot) else ListingSnapshot(self.store)
        read = self._read_new(store, cp, work, damage, None if at_end else self._ended)
        if read is None or (not at_end and self._ended()):
            # The end came while this fold read its batch: the build that comes next folds it (with the rest, once,
            # and with nothing made final) instead of waiting for this fold's 2-3 s at 1M tasks. Asked before each
            # node is listed too: a fold that had read the whole batch when it saw the end held the build up by as
            # much again (1 s of a 1M-task session's 6.5 s from its end to its answers).
            shutil.rmtree(work, ignore_errors=True)
            return FoldResult(0, 0, sum(p.rows for p in cp.final), 0, round(time.monotonic() - started, 3), ended=True)
        staged, http, log_rows, records = read
        worker_logs = worker_log_paths(log_rows, records)
        memory = smaller_memory(FOLD_MEMORY, self.memory_limit)
        con = duckdb_for_compaction(work, memory)
        behind = self._last_read >= self.batch_bytes
        try:
            new_events = self._fold_sql(con, cp, work, staged, worker_logs, settle=not (behind or at_end))
            if len(cp.final) > MAX_FINAL_PARTS and not at_end:
                self._merge(con, cp, MAX_FINAL_PARTS // 2, self._ended)
        finally:
            con.close()
        # A log part is left to the end's (log_parts.finish parses all that waits in one pass, its cost mostly per
        # file) once the end marker is archived: the end's build waits for this fold, and a part took 1-2 s of it.
        skip_logs = behind or at_end or self._ended()
        log_bytes = 0 if skip_logs else log_parts.append(store, self.ref, cp, self.dir, work, memory)
        if http:
            name = f"http-{cp.seq:06d}.jsonl"
            (self.dir / name).write_text("".join(json.dumps(e) + "\n" for e in http))
            cp.http_events.append(name)
        cp.task_events += new_events
        cp.bad_lines, cp.damage_examples = damage.bad_lines, damage.examples
        read = sum(p.stat().st_size for p in staged)
        checkpoint.commit(self.dir, cp)
        shutil.rmtree(work, ignore_errors=True)
        result = FoldResult(
            bytes=self._last_read,
            events=new_events,
            final_rows=sum(p.rows for p in cp.final),
            active_events=self._active_rows,
            seconds=round(time.monotonic() - started, 3),
            behind=behind,
            log_bytes=log_bytes,
        )
        log.debug(
            "%s: fold %d read %d bytes (%d staged) in %.2fs", self.ref.id, cp.seq, result.bytes, read, result.seconds
        )
        return result

    def _ended(self) -> bool:
        """Whether the session's end marker (written last, FORMAT.md) is archived."""
        return self.store.exists(self.ref.ended_key)

    def _read_new(
        self, store: Store, cp: Checkpoint, work: Path, damage: Damage, ended: Callable[[], bool] | None
    ) -> tuple[list[Path], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]] | None:
        """The batch: new complete lines of the task files staged under work/, the non-task RayEvents, and the
        listing of every node's logs (for the workers' log files). None if `ended()` turns true before a node."""
        budget = self.batch_bytes
        staged: list[Path] = []
        http: list[dict[str, Any]] = []
        log_rows: list[dict[str, Any]] = []
        records: dict[str, Any] = {}
        for node_id in store.list_dirs(self.ref.nodes_prefix):
            if ended is not None and ended():
                return None
            node = self.ref.node(node_id)
            records[node_id] = build._read_node_record(store, self.ref, node_id)
            listed = archive_logs.list_segments(store, node)
            log_rows += listing_rows(store, node, listed)
            for path, segs in listed.items():
                if not path.startswith(TASK_FILE_PREFIX) or budget <= 0:
                    continue
                data, used = self._new_bytes(cp, node, "logs", path, segs, budget, damage)
                budget -= used
                if data:
                    out = work / f"t{len(staged):05d}.json"
                    out.write_bytes(data)
                    cp.task_lines += data.count(b"\n")
                    staged.append(out)
            for path, segs in archive_logs.list_segments(store, node, source="ray_events").items():
                if budget <= 0:
                    break
                data, used = self._new_bytes(cp, node, "ray_events", path, segs, budget, damage)
                budget -= used
                if data:
                    out = work / f"t{len(staged):05d}.json"
                    where = f"{node_id[:12]}:ray_events/{path}"
                    cp.task_lines += ray_events.normalize_spool(data.splitlines(), where, damage, out, http)
                    staged.append(out)
        self._last_read = self.batch_bytes - budget
        return staged, http, log_rows, records

    def _new_bytes(
        self, cp: Checkpoint, node: NodeRef, source: str, path: str, segs: list, budget: int, damage: Damage
    ) -> tuple[bytes, int]:
        """The complete lines archived after the file's cursors (every generation, oldest first), at most about
        `budget` bytes; advances the cursors. An old generation's cut-off last line counts as a line, as in the
        one-shot build (build._stage); the newest generation's waits for its newline."""
        key = f"{node.node_id}/{source}/{path}"
        newest = max(s.epoch for s in segs)
        out: list[bytes] = []
        used = 0
        for epoch in sorted({s.epoch for s in segs}):
            run = archive_logs.covering(segs, epoch)
            offset = cp.cursor(key, epoch)
            if not run or run[-1].end <= offset:
                continue
            chunks, pos, whole = [], offset, True
            for seg in run:
                if seg.end <= offset:
                    continue
                if used >= budget and any(b"\n" in c for c in chunks):  # a whole line at least: progress
                    whole = False
                    break
                try:
                    data = archive_logs.read_segment(self.store, node, seg)
                except archive_logs.CorruptSegment as e:
                    damage.note(f"{node.node_id[:12]}:{path}", str(e))
                    whole = False
                    break
                piece = data[offset - seg.start :] if seg.start < offset else data
                chunks.append(piece)
                used += len(piece)
                pos = seg.end
            data = b"".join(chunks)
            if whole and epoch != newest:
                if data and not data.endswith(b"\n"):
                    data += b"\n"
                consumed = pos
            else:
                cut = data.rfind(b"\n") + 1
                data, consumed = data[:cut], offset + cut
            if consumed > offset:
                cp.cursors.setdefault(key, {})[str(epoch)] = consumed
                out.append(data)
            if not whole:
                break
        return b"".join(out), used

    def _fold_sql(
        self,
        con: duckdb.DuckDBPyConnection,
        cp: Checkpoint,
        work: Path,
        staged: list[Path],
        worker_logs: dict,
        settle: bool,
    ) -> int:
        """Fold the staged events with the earlier events of the attempts they touch; write the fold's parts.
        `settle`: the fold read everything archived (not behind), so attempts quiet in it may go final."""
        d, seq = self.dir, cp.seq
        con.execute(tasks_sql._EMPTY_EVENTS)
        con.execute("ALTER TABLE t_ev RENAME TO t_new")
        if staged:
            con.execute(f"INSERT INTO t_new {tasks_sql._events_select(staged)}")
        new_events = con.execute("SELECT count(*) FROM t_new").fetchone()[0]
        con.execute(
            f"CREATE TEMP TABLE t_keys AS SELECT DISTINCT tid, attempt, {tasks_sql._hex('tid')} AS hex FROM t_new"
        )
        # The workers whose log files changed since final rows were rendered with them: refold those rows.
        changed = changed_workers(cp, worker_logs)
        reopened = self._reopen(con, cp, work, changed)
        for key in changed:  # none of their rows is final now: each is recorded again when it goes final
            cp.worker_logs[key] = list(worker_logs.get(tuple(key.split("/")), (None, None)))
        active = [d / cp.active] if cp.active else []
        if active:
            con.execute(f"CREATE TEMP TABLE t_active AS SELECT * FROM read_parquet({listed(active)})")
        else:
            con.execute("CREATE TEMP TABLE t_active AS SELECT * FROM t_new LIMIT 0")
        con.execute("""
            CREATE TEMP TABLE t_touched AS
            SELECT * FROM t_new
            UNION ALL SELECT * FROM t_reopened
            UNION ALL SELECT a.* FROM t_active a SEMI JOIN t_keys k ON a.tid = k.tid AND a.attempt = k.attempt
        """)
        con.execute("""
            CREATE TEMP TABLE t_rest AS
            SELECT a.* FROM t_active a ANTI JOIN t_keys k ON a.tid = k.tid AND a.attempt = k.attempt
        """)
        # Held: attempts that had ended by the last fold that read everything archived (cp.held) and got no event
        # since, in a fold that read everything too. Only they are rendered and go final. An attempt's events
        # arrive from several files (its owner's, its worker's), shipped apart, so the rest of an attempt that just
        # ended usually comes in the next batch: made final at once, it was reopened then, its part rewritten (over
        # half of the folds' time at 1M tasks). Held one fold, it still was when a batch took two folds (the second
        # reads only the batch's rest): 0.5 s of each batch's 4 s at 1M tasks.
        ended = "list_contains(map_keys(states), '11') OR list_contains(map_keys(states), '12')"
        if settle and cp.held:
            con.execute(f"""
                CREATE TEMP TABLE t_held AS SELECT DISTINCT tid, attempt FROM t_rest
                SEMI JOIN read_parquet({quoted(d / cp.held)}) h USING (tid, attempt) WHERE {ended}
            """)
        else:
            con.execute("CREATE TEMP TABLE t_held AS SELECT tid, attempt FROM t_rest LIMIT 0")
        con.execute("CREATE TEMP TABLE t_ev AS SELECT r.* FROM t_rest r SEMI JOIN t_held h USING (tid, attempt)")
        render_tasks(con, work, None, {}, {}, worker_logs)
        # Final: a final state, and nothing the end can change (actor names: creation tasks stay active).
        con.execute(f"""
            CREATE TEMP TABLE t_final AS SELECT task_id, attempt_number, node_id, worker_id
            FROM read_parquet({quoted(work / TASKS.file)})
            WHERE end_time_ms IS NOT NULL AND type IS DISTINCT FROM 'ACTOR_CREATION_TASK' AND task_id IS NOT NULL
        """)
        rows = con.execute("SELECT count(*) FROM t_final").fetchone()[0]
        if rows:
            part = FinalPart(
                f"tasks-{seq:06d}.parquet",
                f"profile-{seq:06d}.parquet",
                f"events-{seq:06d}.parquet",
                rows,
                f"timeline-{seq:06d}.parquet",
            )
            copy_parquet(
                con,
                f"SELECT * FROM read_parquet({quoted(work / TASKS.file)}) SEMI JOIN t_final USING {TASK_KEY} "
                f"ORDER BY {TASKS_ORDER}",
                d / part.tasks,
                PART_ROW_GROUP_ROWS,
            )
            copy_parquet(
                con,
                f"SELECT * FROM read_parquet({quoted(work / PROFILE_EVENTS.file)}) SEMI JOIN t_final "
                f"USING {TASK_KEY} ORDER BY {PROFILE_ORDER}",
                d / part.profile,
                PART_ROW_GROUP_ROWS,
            )
            copy_parquet(
                con,
                f"SELECT * FROM t_rest t SEMI JOIN t_final f ON f.task_id = {tasks_sql._hex('t.tid')} "
                "AND f.attempt_number = t.attempt",
                d / part.events,
            )
            task_timeline.write_part(con, d / part.tasks, d / part.timeline, cp.lanes, cp.nodes)
            cp.final.append(part)
            for n, w in con.execute("SELECT DISTINCT node_id, worker_id FROM t_final").fetchall():
                cp.worker_logs[f"{n}/{w}"] = list(worker_logs.get((n, w), (None, None)))
        cp.active = f"active-{seq:06d}.parquet"
        copy_parquet(
            con,
            f"""SELECT * FROM t_touched UNION ALL
                       SELECT * FROM t_rest t ANTI JOIN t_final f ON f.task_id = {tasks_sql._hex("t.tid")}
                           AND f.attempt_number = t.attempt""",
            d / cp.active,
        )
        self._active_rows = con.execute(f"SELECT count(*) FROM read_parquet({quoted(d / cp.active)})").fetchone()[0]
        if settle:
            cp.held = f"held-{seq:06d}.parquet"
            copy_parquet(
                con,
                f"SELECT DISTINCT tid, attempt FROM read_parquet({quoted(d / cp.active)}) WHERE {ended}",
                d / cp.held,
            )
        del reopened
        return int(new_events)

    def _reopen(self, con: duckdb.DuckDBPyConnection, cp: Checkpoint, work: Path, workers: list[str]) -> int:
        """Take out of the final parts the attempts named by t_keys (a late event) or run by `workers`: their raw
        events go to t_reopened, and each part holding one is rewritten without them."""
        con.execute("CREATE OR REPLACE TEMP TABLE t_workers (node_id VARCHAR, worker_id VARCHAR)")
        if workers:
            con.executemany("INSERT INTO t_workers VALUES (?, ?)", [w.split("/") for w in workers])
        con.execute("CREATE OR REPLACE TEMP TABLE t_reopened AS SELECT * FROM t_new LIMIT 0")
        if not cp.final:
            return 0
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE t_out AS
            SELECT f.task_id, f.attempt_number, f.filename FROM read_parquet(
                {listed([self.dir / p.tasks for p in cp.final])}, filename = true) f
            WHERE EXISTS (SELECT 1 FROM t_keys k WHERE k.hex = f.task_id AND k.attempt = f.attempt_number)
               OR EXISTS (SELECT 1 FROM t_workers w WHERE w.node_id IS NOT DISTINCT FROM f.node_id
                          AND w.worker_id IS NOT DISTINCT FROM f.worker_id)
        """)
        hit = {Path(r[0]).name for r in con.execute("SELECT DISTINCT filename FROM t_out").fetchall()}
        if not hit:
            return 0
        kept = []
        for part in cp.final:
            if part.tasks not in hit:
                kept.append(part)
                continue
            d, seq = self.dir, cp.seq
            con.execute(f"""
                INSERT INTO t_reopened SELECT e.* FROM read_parquet({quoted(d / part.events)}) e
                SEMI JOIN t_out o ON o.task_id = {tasks_sql._hex("e.tid")} AND o.attempt_number = e.attempt
            """)
            base = part.tasks.removeprefix("tasks-").removesuffix(TABLE_SUFFIX).split("-")[0]
            new = FinalPart(
                f"tasks-{base}-{seq:06d}.parquet",
                f"profile-{base}-{seq:06d}.parquet",
                f"events-{base}-{seq:06d}.parquet",
                0,
                f"timeline-{base}-{seq:06d}.parquet",
            )
            without_out(con, d / part.tasks, d / new.tasks)
            without_out(con, d / part.profile, d / new.profile)
            without_out(con, d / part.timeline, d / new.timeline, task_timeline.ROW_GROUP_ROWS)
            with in_order(con):
                copy_parquet(
                    con,
                    f"SELECT * FROM read_parquet({quoted(d / part.events)}) e ANTI JOIN t_out o "
                    f"ON o.task_id = {tasks_sql._hex('e.tid')} AND o.attempt_number = e.attempt",
                    d / new.events,
                )
            new.rows = con.execute(f"SELECT count(*) FROM read_parquet({quoted(d / new.tasks)})").fetchone()[0]
            kept.append(new)
        cp.final = kept
        return len(hit)

    def _merge(self, con: duckdb.DuckDBPyConnection, cp: Checkpoint, count: int, ended: Callable[[], bool]) -> None:
        """Merge up to `count` final parts into one, sorted as every part is (merge_sorted), so that the table has
        few parts: the smallest past the RECENT_PARTS newest, up to MERGE_MAX_ROWS (merge_candidates). A merge that
        fails leaves the parts as they were: the fold itself is not lost. So does one that finds the session's end
        marker archived (`ended`, asked before each of its steps and ranges): the end's build waits for the fold in
        progress, and its merge took 1.7-4.3 s at 1M tasks (the end merges nothing)."""
        old = merge_candidates(cp.final[:-RECENT_PARTS], count)
        if len(old) < 2:
            return
        d, seq = self.dir, cp.seq
        part = FinalPart(
            f"tasks-m{seq:06d}.parquet",
            f"profile-m{seq:06d}.parquet",
            f"events-m{seq:06d}.parquet",
            0,
            f"timeline-m{seq:06d}.parquet",
        )
        started = time.monotonic()

        def events() -> None:
            with in_order(con):  # one row group in flight, not one per thread: wide records
                copy_parquet(con, f"SELECT * FROM read_parquet({listed([d / p.events for p in old])})", d / part.events)

        steps = (
            lambda: merge_sorted(con, [d / p.tasks for p in old], d / part.tasks, TASKS_ORDER, ended),
            lambda: merge_sorted(con, [d / p.profile for p in old], d / part.profile, PROFILE_ORDER, ended),
            lambda: task_timeline.merge_parts(con, [d / p.timeline for p in old], d / part.timeline),
            events,
        )
        try:
            for step in steps:
                if ended():
                    raise EndCame
                step()
        except EndCame:
            log.debug("%s: the end marker came: merging %d final parts left undone", self.ref.id, len(old))
            return  # its files are not in the checkpoint: the commit removes them
        except duckdb.Error as e:
            log.warning("%s: merging %d final parts failed, kept as they are: %s", self.ref.id, count, e)
            return
        part.rows = sum(p.rows for p in old)
        log.debug(
            "%s: merged %d final parts (%d rows) in %.2fs", self.ref.id, len(old), part.rows, time.monotonic() - started
        )
        at = cp.final.index(old[0])
        rest = [p for p in cp.final if p not in old]
        cp.final = rest[:at] + [part] + rest[at:]

    # --- the end -------------------------------------------------------------------------------------------------

    def damage(self) -> Damage:
        cp = checkpoint.load(self.dir)
        return Damage(cp.bad_lines, list(cp.damage_examples))

    def http_events(self) -> list[dict[str, Any]]:
        cp = checkpoint.load(self.dir)
        return [json.loads(line) for name in cp.http_events for line in (self.dir / name).read_text().splitlines()]


def smaller_memory(a: str, b: str) -> str:
    """The smaller of two sizes as --compaction-memory spells them (600MB, 2GB, 1GiB)."""
    return a if _bytes(a) <= _bytes(b) else b


_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _bytes(size: str) -> float:
    number = re.match(r"\s*([\d.]+)\s*([A-Za-z]*)", size)
    if not number:
        raise ValueError(f"not a size: {size!r}")
    return float(number.group(1)) * _UNITS.get(number.group(2).upper() or "B", 1)


def changed_workers(cp: Checkpoint, worker_logs: dict) -> list[str]:
    """The workers whose log paths differ from those their final rows were rendered with."""
    return [k for k, v in cp.worker_logs.items() if list(worker_logs.get(tuple(k.split("/")), (None, None))) != v]


@contextmanager
def in_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Statements that keep their input's row order (one thread, insertion order preserved) and stream, so that a
    sorted part is rewritten or concatenated without a sort."""
    kept = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute("SET threads = 1")
    con.execute("SET preserve_insertion_order = true")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {str(bool(kept)).lower()}")
        con.execute("RESET threads")


def merge_candidates(older: list[FinalPart], count: int, max_rows: int | None = None) -> list[FinalPart]:
    """The parts a merge takes (in their order): the smallest of `older`, at most `count`, together at most
    `max_rows` (MERGE_MAX_ROWS) rows; fewer than two: no merge. A merge costs its rows, so parts already merged up
    to the bound are left as they are: merging the oldest of any once took 12 parts of 799k rows at a 1M-task
    session's end, 27 s in the fold that the end's build then waited for."""
    cap = MERGE_MAX_ROWS if max_rows is None else max_rows
    taken: list[FinalPart] = []
    rows = 0
    for part in sorted(older, key=lambda p: p.rows):
        if len(taken) == count or rows + part.rows > cap:
            break
        taken.append(part)
        rows += part.rows
    chosen = {id(p) for p in taken}
    return [p for p in older if id(p) in chosen] if len(taken) >= 2 else []


def without_out(
    con: duckdb.DuckDBPyConnection, part: Path, out: Path, row_group_rows: int = PART_ROW_GROUP_ROWS
) -> None:
    """A copy of a sorted part (tasks, profile_events or task_timeline) without the attempts in t_out, in the
    part's order."""
    with in_order(con):
        copy_parquet(
            con, f"SELECT * FROM read_parquet({quoted(part)}) ANTI JOIN t_out USING {TASK_KEY}", out, row_group_rows
        )


def merge_sorted(
    con: duckdb.DuckDBPyConnection, parts: list[Path], out: Path, order: str, stop: Callable[[], bool] = lambda: False
) -> None:
    """The rows of sorted parts (tasks or profile_events) as one file sorted by `order`, in bounded memory: each
    range of task ids (by its first byte, MERGE_RANGE_ROWS rows or so) is sorted alone, reading only the parts' row
    groups that can hold it, and the sorted ranges are concatenated in order. EndCame if `stop()` before a range."""
    rows = con.execute(f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata({listed(parts)})").fetchone()[0]
    ranges = min(256, max(1, -(-int(rows) // MERGE_RANGE_ROWS)))
    starts = [f"{(i * 256) // ranges:02x}" for i in range(1, ranges)]  # each range's first byte but the first's
    conditions = [
        f"task_id >= '{lo}'" + (f" AND task_id < '{hi}'" if hi else "")
        for lo, hi in zip(["", *starts], [*starts, None], strict=True)
    ]
    pieces = out.parent / f".{out.stem}-ranges"
    shutil.rmtree(pieces, ignore_errors=True)
    pieces.mkdir()
    try:
        files = [pieces / f"{i:03d}{TABLE_SUFFIX}" for i in range(ranges)]
        for cond, piece in zip(conditions, files, strict=True):
            if stop():
                raise EndCame
            copy_parquet(
                con,
                f"SELECT * FROM read_parquet({listed(parts)}) WHERE {cond} ORDER BY {order}",
                piece,
                PART_ROW_GROUP_ROWS,
            )
        with in_order(con):
            copy_parquet(con, f"SELECT * FROM read_parquet({listed(files)})", out, PART_ROW_GROUP_ROWS)
    finally:
        shutil.rmtree(pieces, ignore_errors=True)


def copy_parquet(
    con: duckdb.DuckDBPyConnection, select: str, out: Path, row_group_rows: int = tasks_sql.ROW_GROUP_ROWS
) -> None:
    con.execute(f"COPY ({select}) TO {quoted(out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group_rows})")


def render_tasks(
    con: duckdb.DuckDBPyConnection,
    work: Path,
    session_end_ms: int | None,
    job_ends_ms: dict[str, int],
    actor_names: dict[str, str],
    worker_logs: dict[tuple[str, str], tuple[str | None, str | None]],
) -> None:
    """tasks_sql's fold of t_ev into work/tasks.parquet and work/profile_events.parquet (it drops t_ev)."""
    con.register(
        "worker_logs",
        pa.Table.from_pylist(
            [{"node_id": n, "worker_id": w, "out_file": o, "err_file": e} for (n, w), (o, e) in worker_logs.items()],
            schema=pa.schema([(c, pa.string()) for c in ("node_id", "worker_id", "out_file", "err_file")]),
        ),
    )
    tasks_sql._register(con, session_end_ms, job_ends_ms, actor_names)
    tasks_sql._fold(con, work / TASKS.file, work / PROFILE_EVENTS.file, session_end_ms)


def listing_rows(store: Store, node: NodeRef, listed: dict[str, list]) -> list[dict[str, Any]]:
    """The node's log_files rows, as the one-shot build lists them (build._read_logs)."""
    rows = []
    for path, (archived_path, epoch) in archive_logs.read_renames(store, node).items():
        gen = [s for s in listed.get(archived_path, []) if s.epoch == epoch]
        if gen and path not in listed:
            rows.append(build._log_row(node.node_id, path, gen))
    for path, segs in listed.items():
        newest = max(x.epoch for x in segs)
        rows.append(build._log_row(node.node_id, path, [s for s in segs if s.epoch == newest], len(segs)))
    return rows


def worker_log_paths(log_rows: list[dict[str, Any]], records: dict[str, Any]) -> dict:
    """(node, worker) -> its .out and .err paths, as the tasks builder resolves them (tables._worker_logs)."""
    return tables._worker_logs(log_rows, records)
