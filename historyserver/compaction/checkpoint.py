"""The incremental folder's checkpoint: which archived bytes were folded, and the parts that fold produced.

A fold writes its parts under new names first, then this one file (atomically: temp, fsync, rename); the rename is
the commit. A crash before it leaves parts no checkpoint lists (removed on the next load) and the old checkpoint,
which refolds those bytes; a crash after it leaves a checkpoint whose bytes are all in its parts. So every byte of
a session's task events is folded exactly once, whatever restarts the server.

Cursors are per file generation (`{node}/{source}/{path}` -> {epoch: offset}): bytes [0, offset) of that
generation are folded. Segments are content-addressed and a restarted collector resumes at the end of its gapless
run (archive/FORMAT.md), so a segment written again or added later is read from the cursor on, never twice.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archive.atomic import write_atomic
from archive.compacted import COMPACTION_VERSION

FILE = "checkpoint.json"
FORMAT = 1


@dataclass
class FinalPart:
    """Attempts that reached a final state and depend on nothing the session's end can change: their rendered
    rows (tasks, profile_events) and the raw events behind them (to refold one if a late event names it)."""

    tasks: str
    profile: str
    events: str
    rows: int
    timeline: str = ""  # its attempts as task_timeline has them (task_timeline.write_part), sorted by time


@dataclass
class LogPart:
    """Log lines parsed by one fold (log_parts.py): its log_lines and log_terms files, blocks numbered after the
    earlier parts'."""

    lines: str
    terms: str
    rows: int
    term_rows: int
    blocks: int


@dataclass
class Checkpoint:
    compaction_version: int = COMPACTION_VERSION
    seq: int = 0  # folds committed; part names carry the seq of the fold that wrote them
    cursors: dict[str, dict[str, int]] = field(default_factory=dict)
    final: list[FinalPart] = field(default_factory=list)
    active: str | None = None  # raw events of every attempt not in a final part
    held: str | None = None  # the active attempts that had ended at the last fold that read everything archived
    http_events: list[str] = field(default_factory=list)  # non-task RayEvents (JSON lines), one file per fold
    # (node hex, worker hex) -> [stdout, stderr] paths the final rows were rendered with (Ray leaves them empty in
    # task_log_info; the worker's log files name them): if the end's listing differs, those rows are refolded.
    worker_logs: dict[str, list[str | None]] = field(default_factory=dict)
    task_lines: int = 0  # task event lines read, and events DuckDB could parse (the rest is damage)
    task_events: int = 0
    bad_lines: int = 0
    damage_examples: list[str] = field(default_factory=list)
    log_parts: list[LogPart] = field(default_factory=list)
    log_state: str | None = None  # each searchable file's generation, end and parser state after the last part
    logs_broken: str = ""  # why the log parts cannot make the session's log tables (then built whole at the end)
    # task_timeline's numbers in the final parts: "node/worker" -> lane and node -> node_rank, given as they appear
    lanes: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)

    def files(self) -> set[str]:
        names = {n for p in self.final for n in (p.tasks, p.profile, p.events, p.timeline) if n}
        names |= set(self.http_events)
        names |= {n for p in self.log_parts for n in (p.lines, p.terms)}
        return names | {n for n in (self.active, self.held, self.log_state) if n}

    def cursor(self, key: str, epoch: int) -> int:
        return self.cursors.get(key, {}).get(str(epoch), 0)


def load(state_dir: Path) -> Checkpoint:
    """The last committed checkpoint (a fresh one if none, or one of another version); files it does not list,
    left by a fold that crashed before its commit, are removed."""
    state_dir.mkdir(parents=True, exist_ok=True)
    cp = Checkpoint()
    try:
        doc: dict[str, Any] = json.loads((state_dir / FILE).read_text())
        if doc.get("format") == FORMAT and doc.get("compaction_version") == COMPACTION_VERSION:
            doc.pop("format")
            doc["final"] = [FinalPart(**p) for p in doc.get("final", [])]
            doc["log_parts"] = [LogPart(**p) for p in doc.get("log_parts", [])]
            cp = Checkpoint(**doc)
    except FileNotFoundError:
        pass
    keep = cp.files() | {FILE}
    for path in state_dir.iterdir():
        if path.name not in keep:
            _remove(path)
    return cp


def commit(state_dir: Path, cp: Checkpoint) -> None:
    """Make the fold that wrote cp's new parts durable; then the files no longer listed are removed."""
    for name in cp.files():
        if not (state_dir / name).exists():
            raise FileNotFoundError(f"checkpoint lists {name}, which the fold did not write in {state_dir}")
    write_atomic(state_dir / FILE, json.dumps({"format": FORMAT, **asdict(cp)}, indent=1).encode())
    keep = cp.files() | {FILE}
    for path in state_dir.iterdir():
        if path.name not in keep and not path.name.startswith("."):
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
