"""Ray's log API answered from the archive: list a node's files, find the file (and byte range) a request names,
and read it back, tailing from the end segment by segment (Ray 2.60 semantics: state_head.py, log_manager.py,
log_agent.py)."""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from archive import logs as archive_logs
from archive.errors import NotFound, StoreError
from archive.layout import InvalidName, LogSegment, NodeRef, SessionRef
from archive.storage import Store
from historyserver.errors import ArchiveUnavailable, BadRequest, EntityNotFound
from historyserver.queries.session_db import SessionDB

log = logging.getLogger("rayhistory.logs")

CACHE_BYTES = 64 << 20  # decoded segments one request keeps (archived segments are a few MB each)
DEFAULT_LINES = 1000  # Ray's DEFAULT_LOG_LIMIT; lines=0 also means it (the agent's `lines or 1000`)
WORKER_LOG = re.compile(r"^(?:.*/)?worker-([0-9a-f]+)-([0-9a-f]+)-(\d+)\.(out|err)$")
# Ray strips only SGR sequences (colours), with this exact character set.
ANSI_SGR = re.compile(rb"\x1b\[[0-9;()]+m")
MARKERS = (b":job_id:", b":task_name:", b":actor_name:")  # ray_constants.LOG_PREFIX_*
_SESSION_LOGS = re.compile(r"/session_[^/]+/logs/(.+)$")


# --- listing ---------------------------------------------------------------------------------------------
def categorize(names: list[str]) -> dict[str, list[str]]:
    """Ray's component groups; the order of the tests matters (e.g. "log_monitor" before "monitor")."""
    groups: dict[str, list[str]] = {}
    for name in names:
        if "worker" in name and name.endswith(".out"):
            key = "worker_out"
        elif "worker" in name and name.endswith(".err"):
            key = "worker_err"
        elif "core-worker" in name and name.endswith(".log"):
            key = "core_worker"
        elif "core-driver" in name and name.endswith(".log"):
            key = "driver"
        elif "raylet." in name:
            key = "raylet"
        elif "gcs_server." in name:
            key = "gcs_server"
        elif "log_monitor" in name:
            key = "internal"
        elif "monitor" in name:
            key = "autoscaler"
        elif "agent." in name:
            key = "agent"
        elif "dashboard." in name:
            key = "dashboard"
        else:
            key = "internal"
        groups.setdefault(key, []).append(name)
    return groups


def glob_entries(paths: list[str], pattern: str) -> list[str]:
    """What `Path(logs).glob(pattern)` lists over the archived files: matching files, and matching folders
    with a trailing '/'. Folders exist here only as the parents of archived files."""
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    if not parts or pattern.startswith("/") or ".." in parts or "\x00" in pattern:
        raise BadRequest(f"Invalid glob filter: {pattern}. It must be a relative path and cannot contain '..'.")
    dirs = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    only_dirs = parts[-1] == "**"  # pathlib: a trailing '**' matches folders only
    found = [d + "/" for d in dirs if _match(parts, d.split("/"))]
    if not only_dirs:
        found += [p for p in paths if _match(parts, p.split("/"))]
    return sorted(found)


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(pattern[1:], parts[1:])


def node_paths(db: SessionDB, node_id: str) -> list[str]:
    return [r[0] for r in db.query("SELECT path FROM log_files WHERE node_id = ? ORDER BY path", [node_id])]


def known_node(db: SessionDB, node_id: str | None = None, node_ip: str | None = None) -> str:
    """The node's id, if the session knows it (from its events or from archived files)."""
    if node_id is None:
        rows = db.query(
            "SELECT node_id FROM nodes WHERE node_ip = ? ORDER BY state = 'ALIVE' DESC, is_head_node DESC", [node_ip]
        )
        if not rows:
            raise EntityNotFound(f"Cannot find matching node_id for a given node ip {node_ip}")
        return rows[0][0]
    rows = db.query(
        "SELECT 1 FROM nodes WHERE node_id = ? UNION ALL SELECT 1 FROM log_files WHERE node_id = ? LIMIT 1",
        [node_id, node_id],
    )
    if not rows:
        raise EntityNotFound(f"Node {node_id} is not a node of this session (GET api/v0/nodes lists them)")
    return node_id


# --- which file, which bytes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    node_id: str
    path: str  # relative to the session's logs/ folder
    start: int | None = None  # a task's slice of the file; None for the whole file
    end: int | None = None
    task: bool = False  # a task's slice: Ray's marker lines at its head are not the task's output


def check_filename(name: str) -> str:
    """A path under logs/ as a client may give it: relative, '/'-separated, never leaving the folder."""
    if "\x00" in name:
        raise BadRequest("filename must not contain a NUL byte")
    if "\\" in name:
        raise BadRequest(f"filename {name!r} must use '/' as separator, not a backslash")
    if name.startswith("/"):
        raise BadRequest(f"filename {name!r} must be relative to the session's logs/ folder, not absolute")
    if ".." in name.split("/"):
        raise BadRequest(f"filename {name!r} must not contain '..': it names a file under the session's logs/ folder")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise BadRequest("filename is empty")
    return "/".join(parts)


def task_target(db: SessionDB, task_id: str, attempt: int, suffix: str) -> Target:
    rows = db.query(
        "SELECT attempt_number, node_id, actor_id, worker_id, task_log_info FROM tasks WHERE task_id = ?", [task_id]
    )
    if not rows:
        raise EntityNotFound(f"Could not find log file for task: {task_id} (attempt {attempt}) with suffix: {suffix}")
    record = next(
        (
            {"node_id": r[1], "actor_id": r[2], "worker_id": r[3], "task_log_info": r[4]}
            for r in rows
            if r[0] == attempt
        ),
        None,
    )
    if record is None:
        raise EntityNotFound(f"Could not find log file for task attempt:{task_id}({attempt})")
    node_id, info = record.get("node_id"), record.get("task_log_info")
    if info is not None:  # as the record has it: an offset no report set is absent
        info = {k: v for k, v in info.items() if v is not None or k.endswith("_file")}
    if not node_id:
        raise EntityNotFound(f"Could not find log file for task attempt.{task_id}({attempt}) due to missing node info.")
    if info is None:
        if record.get("actor_id"):
            raise EntityNotFound(
                f"For actor task, please query actor log for actor({record['actor_id']}): e.g. ray logs actor --id "
                f"{record['actor_id']} . Or set RAY_ENABLE_RECORD_ACTOR_TASK_LOGGING=1 in actor's runtime env or "
                "when starting the cluster. Recording actor task's log could be expensive, so Ray turns it off by "
                "default."
            )
        raise EntityNotFound(
            f"Could not find log file for task attempt:{task_id}({attempt}). Worker id = "
            f"{record.get('worker_id')}, node id = {node_id}, log_info = None"
        )
    name = info.get("stdout_file" if suffix == "out" else "stderr_file")
    if not name:
        raise EntityNotFound(f"Missing log filename info in {info} for task {task_id},attempt {attempt}")
    start, end = info.get(f"std{suffix}_start") or 0, info.get(f"std{suffix}_end")
    if not start and end and record.get("worker_id"):
        start = _previous_end(db, node_id, record["worker_id"], suffix, end)
    return Target(node_id, _moved(db, node_id, _under_logs(db, node_id, name)), start, end, task=True)


def _moved(db: SessionDB, node_id: str, path: str) -> str:
    """The path, or logs/old/ where Ray's log monitor moves a dead worker's files, if only that one was archived."""
    old = "old/" + path.rsplit("/", 1)[-1]
    rows = db.query(
        "SELECT path FROM log_files WHERE node_id = ? AND path IN (?, ?) ORDER BY path = ? DESC",
        [node_id, path, old, path],
    )
    return rows[0][0] if rows else path


def _previous_end(db: SessionDB, node_id: str, worker_id: str, suffix: str, end: int) -> int:
    """Where the worker's previous task stopped writing: this task's slice starts there.

    Ray records a task's start offset in a separate update that its export events do not carry (they hold 0), so
    it is rebuilt from the tasks that ran before on the same worker (the same file).
    """
    col = f"task_log_info.std{suffix}_end"
    rows = db.query(
        f"SELECT max({col}) FROM tasks WHERE node_id = ? AND worker_id = ? AND {col} < ?", [node_id, worker_id, end]
    )
    return rows[0][0] or 0


def _under_logs(db: SessionDB, node_id: str, name: str) -> str:
    """Ray names a task's file by its absolute path on the node: make it relative to logs/ again."""
    if not name.startswith("/"):
        return check_filename(name)
    session_dir = ((db.info.get("archived_nodes") or {}).get(node_id) or {}).get("session_dir")
    if session_dir and name.startswith(session_dir.rstrip("/") + "/logs/"):
        return check_filename(name[len(session_dir.rstrip("/")) + len("/logs/") :])
    m = _SESSION_LOGS.search(name)
    if not m:
        raise EntityNotFound(f"{name} is not in the session's log folder")
    return check_filename(m.group(1))


def worker_file(
    db: SessionDB, node_id: str, suffix: str, worker_id: str | None = None, pid: int | None = None
) -> str | None:
    """The worker's .out/.err on the node; a file in logs/ first, then one that Ray moved to logs/old/."""
    matches = []
    for path in node_paths(db, node_id):
        m = WORKER_LOG.match(path)
        if m and m.group(4) == suffix and (m.group(1) == worker_id if worker_id else int(m.group(3)) == pid):
            matches.append(path)
    matches.sort(key=lambda p: (p.count("/"), not p.startswith("old/"), p))
    return matches[0] if matches else None


def actor_target(db: SessionDB, actor_id: str, suffix: str) -> Target:
    actor = db.actor(actor_id)
    if actor is None:
        raise EntityNotFound(f"Actor ID {actor_id} not found.")
    # The actor's record carries no worker id; its tasks do (the newest incarnation first, as Ray tries them).
    rows = db.query(
        "SELECT node_id, worker_id FROM tasks WHERE actor_id = ? AND worker_id IS NOT NULL "
        "AND node_id IS NOT NULL GROUP BY ALL ORDER BY max(start_time_ms) DESC NULLS LAST",
        [actor_id],
    )
    candidates: list[tuple[str, str | None, int | None]] = [(n, w, None) for n, w in rows]
    node_id = (actor.get("address") or {}).get("nodeId")
    if node_id and actor.get("pid"):
        candidates.append((node_id, None, int(actor["pid"])))
    if not candidates:
        raise EntityNotFound(f"Worker ID for Actor ID {actor_id} not found. Actor is not scheduled yet.")
    for node, worker, pid in candidates:
        path = worker_file(db, node, suffix, worker_id=worker, pid=pid)
        if path:
            return Target(node, path)
    raise EntityNotFound(
        f"Could not find a log file for actor {actor_id} (suffix {suffix}) on node "
        f"{candidates[0][0]}: its worker's log was not archived"
    )


def submission_target(db: SessionDB, submission_id: str) -> Target:
    rows = db.query("SELECT record FROM jobs WHERE submission_id = ?", [submission_id])
    node_id = json.loads(rows[0][0]).get("driver_node_id") if rows else None
    if not node_id:
        raise EntityNotFound(f"Submission job ID {submission_id} not found, or its driver node is unknown.")
    return Target(node_id, f"job-driver-{submission_id}.log")


# --- reading ---------------------------------------------------------------------------------------------
class ArchivedLog:
    """The newest generation of one archived file: the gapless run of its segments from offset 0.

    Decoded segments are kept while one request reads them, so tailing then streaming downloads each once.
    """

    def __init__(self, store: Store, node: NodeRef, path: str) -> None:
        self.store, self.node, self.path = store, node, path
        try:
            # A rotated file (x.log.1) is archived under the path it had first (x.log), as one generation.
            archived_path, epoch = archive_logs.read_renames(store, node).get(path, (path, None))
            segments = archive_logs.list_segments(store, node, archived_path).get(archived_path)
        except StoreError as e:
            raise ArchiveUnavailable(str(e)) from e
        if segments and epoch is not None:
            segments = [s for s in segments if s.epoch == epoch]
        if not segments:
            raise EntityNotFound(
                f"A file is not found at: {path} (node {node.node_id}); "
                f"GET api/v0/logs?node_id={node.node_id} lists the archived files"
            )
        self.run = archive_logs.covering(segments)
        newest = max(s.epoch for s in segments)
        self.incomplete = len(self.run) < len([s for s in segments if s.epoch == newest])
        self._cache: dict[LogSegment, bytes] = {}  # insertion order: the oldest is dropped first
        self._cached_bytes = 0

    @property
    def size(self) -> int:
        return self.run[-1].end if self.run else 0

    def _segment(self, seg: LogSegment) -> bytes:
        if seg not in self._cache:
            try:
                data = archive_logs.read_segment(self.store, self.node, seg)
            except (archive_logs.CorruptSegment, NotFound) as e:
                # Bytes from here on cannot be placed: serve what comes before, and say it is incomplete.
                log.warning("log %s of node %s is damaged: %s", self.path, self.node.node_id, e)
                self.run = [s for s in self.run if s.end <= seg.start]
                self.incomplete = True
                raise _Damaged() from e
            except StoreError as e:
                raise ArchiveUnavailable(str(e)) from e
            self._remember(seg, data)
            return data
        return self._cache[seg]

    def _remember(self, seg: LogSegment, data: bytes) -> None:
        """Keep decoded segments up to CACHE_BYTES: a tail of a million lines of a multi-GB file reads every
        segment, and re-reads what it could not keep when it streams them."""
        while self._cache and self._cached_bytes + len(data) > CACHE_BYTES:
            self._cached_bytes -= len(self._cache.pop(next(iter(self._cache))))
        self._cache[seg] = data
        self._cached_bytes += len(data)

    def _forget(self, seg: LogSegment) -> None:
        data = self._cache.pop(seg, None)
        if data is not None:
            self._cached_bytes -= len(data)

    def tail_start(self, end: int, lines: int, floor: int = 0) -> int:
        """Where the last `lines` lines before `end` start, as Ray's agent finds it, but never before `floor`.

        A last line without its newline counts as a line. Reads backwards one segment at a time and stops as soon as
        enough lines (or `floor`) are reached.
        """
        while True:
            end = min(end, self.size)
            try:
                return self._tail_start(end, lines, floor)
            except _Damaged:
                continue  # the run was cut at the damaged segment: look again within what is left

    def _tail_start(self, end: int, lines: int, floor: int) -> int:
        if lines == 0 or end <= floor:
            return max(end, floor)
        need = lines + 1 if self.read_byte(end - 1) == b"\n" else lines  # newlines to pass, from the end
        pos = end
        for seg in reversed([s for s in self.run if s.start < end]):
            if pos <= floor:
                break
            data = self._segment(seg)[: pos - seg.start]
            found = data.count(b"\n")
            if found < need:
                need -= found
                pos = seg.start
                continue
            idx = len(data)
            for _ in range(need):
                idx = data.rfind(b"\n", 0, idx)
            return max(seg.start + idx + 1, floor)
        return floor

    def skip_markers(self, start: int, end: int) -> int:
        """Past the `:job_id:`/`:task_name:`/`:actor_name:` lines Ray's worker prints before it records a task's start
        offset (so a task's slice served live never holds them)."""
        while start < end:
            head = b"".join(self.chunks(start, min(end, start + 4096)))
            newline = head.find(b"\n")
            if newline < 0 or not head.startswith(MARKERS):
                return start
            start += newline + 1
        return start

    def read_byte(self, offset: int) -> bytes:
        seg = next(s for s in self.run if s.start <= offset < s.end)
        return self._segment(seg)[offset - seg.start : offset - seg.start + 1]

    def chunks(self, start: int, end: int, release: bool = False) -> Iterator[bytes]:
        """The bytes [start, end), one piece per segment; ends early at damage. `release` frees each segment once
        sent (streaming reads a segment once)."""
        for seg in list(self.run):
            if seg.end <= start:
                continue
            if seg.start >= end:
                break
            try:
                data = self._segment(seg)
            except _Damaged:
                return
            if release:
                self._forget(seg)
            yield data[max(start - seg.start, 0) : min(end, seg.end) - seg.start]


class _Damaged(Exception):
    pass


def strip_ansi(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Ray's ANSI filter, applied across chunk boundaries (a code split between two segments is still removed)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        esc = data.rfind(b"\x1b")
        tail = data[esc:] if esc >= 0 else b""
        if tail and len(tail) <= 64 and b"m" not in tail:
            data, carry = data[:esc], tail  # maybe the start of a code that the next chunk completes
        else:
            carry = b""
        if data:
            yield ANSI_SGR.sub(b"", data)
    if carry:
        yield ANSI_SGR.sub(b"", carry)


@dataclass
class Prepared:
    """A resolved request: the bytes to stream and whether the archive holds all of them."""

    log: ArchivedLog
    start: int
    end: int

    @property
    def incomplete(self) -> bool:
        return self.log.incomplete

    def body(self, filter_ansi: bool) -> Iterator[bytes]:
        chunks = self.log.chunks(self.start, self.end, release=True)
        return strip_ansi(chunks) if filter_ansi else chunks


def prepare(store: Store, session: SessionRef, target: Target, lines: int) -> Prepared:
    """Open the target's file and find the bytes to send: its slice (a task's), capped to the last `lines` lines."""
    try:
        node = session.node(target.node_id)
    except InvalidName as e:
        raise EntityNotFound(f"Node {target.node_id} is not a node of this session") from e
    archived = ArchivedLog(store, node, target.path)
    start = target.start or 0
    end = archived.size if target.end is None else target.end
    if end > archived.size:
        archived.incomplete = True  # the slice runs past what the archive holds
    if target.task:
        start = archived.skip_markers(start, min(end, archived.size))
    if lines != -1:
        start = archived.tail_start(end, lines, floor=start)
    end = min(end, archived.size)
    return Prepared(archived, min(start, end), end)
