"""Running `rayhistory compact` / `rayhistory sql` as a user does, and reading what they wrote, for the fleet tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from archive.compacted import COMPACTION_VERSION, INFO_FILE, TABLES, table_files
from archive.layout import SessionRef

ROOT = Path(__file__).resolve().parents[1]
OOM_QUESTION = (
    "SELECT DISTINCT namespace, cluster, session_id, job_id FROM tasks "
    "WHERE error_type = 'OUT_OF_MEMORY' ORDER BY namespace, cluster, session_id, job_id"
)


def rayhistory(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    environ = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def compacted_dir(archive: Path, ref: SessionRef) -> Path:
    return archive / ref.compacted_prefix(COMPACTION_VERSION)


def tables_of(archive: Path, ref: SessionRef) -> dict[str, object]:
    """Every table's rows, and info.json without its timing (when and how fast it was built, and each phase)."""
    where = compacted_dir(archive, ref)
    info = json.loads((where / INFO_FILE).read_text())
    got: dict[str, object] = {
        t.name: [row for f in table_files(info, t) for row in pq.read_table(where / f).to_pylist()] for t in TABLES
    }
    got["info"] = {k: v for k, v in info.items() if k not in ("built_at_ms", "seconds", "phases")}
    return got
