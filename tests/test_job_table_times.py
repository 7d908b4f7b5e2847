"""A driver job keeps the job table's times (issue 12's fidelity, HTTP event path): Ray stamps the job's lifecycle
transitions with its own clock reading, apart from the job table's start_time/end_time, so the compaction takes
those from the head collector's last /api/jobs/ snapshot (historyserver/compaction/api_snapshots.py)."""

from __future__ import annotations

from archive.api_snapshots import JOBS_ROUTE, Snapshot
from historyserver.compaction.api_snapshots import apply_job_table_times
from historyserver.compaction.export_events import Folded
from historyserver.compaction.records import job_records


def _folded() -> Folded:
    f = Folded()
    # As the HTTP path folds them: CREATED and FINISHED transition stamps, 1 ms after the job table's times.
    f.driver_jobs["03000000"] = {"job_id": "03000000", "is_dead": True, "start_time": "1001", "end_time": "5001"}
    f.driver_jobs["04000000"] = {"job_id": "04000000", "is_dead": False, "start_time": "6001"}
    f.driver_jobs["05000000"] = {"job_id": "05000000", "is_dead": True, "start_time": "7001", "end_time": "8001"}
    return f


def _snapshot(body) -> dict[str, Snapshot]:
    return {JOBS_ROUTE: Snapshot(9000, JOBS_ROUTE, 200, body)}


def test_a_finished_driver_job_takes_the_job_tables_start_and_end():
    f = _folded()
    apply_job_table_times(
        _snapshot(
            [
                {"type": "DRIVER", "job_id": "03000000", "start_time": 1000, "end_time": 5000},
                {"type": "DRIVER", "job_id": "04000000", "start_time": 6000, "end_time": 0},  # still running
                {"type": "SUBMISSION", "job_id": "05000000", "start_time": 6500, "end_time": 9000},
            ]
        ),
        f.driver_jobs,
    )
    jobs = {j["job_id"]: j for j in job_records(f)}
    assert (jobs["03000000"]["start_time"], jobs["03000000"]["end_time"]) == (1000, 5000)
    assert (jobs["04000000"]["start_time"], jobs["04000000"]["end_time"]) == (6000, None)
    # A submission's own times are not its driver's: the driver keeps its event stamps.
    assert (jobs["05000000"]["start_time"], jobs["05000000"]["end_time"]) == (7001, 8001)


def test_without_a_usable_snapshot_the_event_stamps_stay():
    for latest in ({}, _snapshot({"detail": "not a list"}), _snapshot([{"type": "DRIVER", "job_id": "03000000"}])):
        f = _folded()
        apply_job_table_times(latest, f.driver_jobs)
        jobs = {j["job_id"]: j for j in job_records(f)}
        assert (jobs["03000000"]["start_time"], jobs["03000000"]["end_time"]) == (1001, 5001)
