"""The benchmark tools on a small session: the synthetic archive reads back right, and the benchmark runs end to end.

Not timed: the numbers are the benchmark's business (python -m benchmarks.open_session --tasks 100000).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from archive import logs as segments
from archive.layout import SessionRef
from archive.storage import open_store
from benchmarks.replay_baseline import replay
from benchmarks.synthetic_session import generate
from historyserver.catalog import Catalog
from historyserver.warehouse import Warehouse

REPO = Path(__file__).resolve().parent.parent
TASKS = 2000


def _segment_bytes(archive: Path, session_id: str) -> dict[str, bytes]:
    store, ref = open_store(str(archive)), SessionRef.from_id(session_id)
    return {o.key: store.get(o.key) for o in store.list(ref.prefix) if "/logs/" in o.key}


def test_synthetic_session_is_read_by_compaction_into_its_counts(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    # Small segments: long files span several, cut mid-line as the collector cuts them.
    info = generate(str(archive), TASKS, seed=7, segment_mb=0.25, log=lambda _msg: None)
    assert info["tasks"] == TASKS and 0 < info["failed_tasks"] < TASKS // 10

    store = open_store(str(archive))
    entry = Catalog(store, ttl=0).get(info["session_id"])
    assert entry.ended and len(store.list_dirs(entry.ref.nodes_prefix)) == info["nodes"]
    db = Warehouse(store, tmp_path / "cache").db(entry)
    counts = db.info["counts"]
    assert (counts["tasks"], counts["jobs"], counts["nodes"], counts["actors"]) == (
        info["tasks"], info["jobs"], info["nodes"], info["actors"])
    assert db.query("SELECT count(*) FROM tasks WHERE state = 'FAILED'")[0][0] == info["failed_tasks"]
    assert db.info["damage"]["bad_lines"] == 0
    statuses = sorted(j["status"] for j in db.jobs())
    assert statuses == ["FAILED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]

    # The baseline replays the same session into the same entities.
    state, _ = replay(str(archive), info["session_id"])
    assert state.counts()["tasks"] == TASKS and state.counts()["failed_tasks"] == info["failed_tasks"]
    assert state.bad_lines == 0


def test_synthetic_session_is_deterministic_and_cut_into_segments(tmp_path: Path) -> None:
    first = generate(str(tmp_path / "a"), TASKS, seed=3, segment_mb=0.25, log=lambda _msg: None)
    second = generate(str(tmp_path / "b"), TASKS, seed=3, segment_mb=0.25, log=lambda _msg: None)
    a, b = _segment_bytes(tmp_path / "a", first["session_id"]), _segment_bytes(tmp_path / "b", second["session_id"])
    assert a == b
    assert max(len(segments.decode(blob)) for blob in a.values()) == 256 * 1024
    # Written once, it is not rewritten.
    assert generate(str(tmp_path / "a"), TASKS, seed=3, log=lambda _msg: None)["written"] is False


def test_open_session_benchmark_prints_a_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.open_session", "--tasks", str(TASKS), "--cache-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| measure | ours |" in out
    for row in ("open: compaction time", "GET api/v0/tasks?limit=100", "GET api/v0/tasks/summarize", "GET api/jobs/",
                "serving peak RSS"):
        assert f"| {row}" in out, out
    assert "python -m benchmarks.open_session --tasks 2000" in out
