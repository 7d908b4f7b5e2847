"""`rayhistory compact` and `rayhistory sql` on this machine: what they select, skip, answer and refuse."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from archive.compacted import COMPACTION_VERSION, TABLE_NAMES
from archive.storage.local import LocalStore
from benchmarks.fleet_sessions import session_ref, write_fleet, write_session
from historyserver.fleet.sql_plan import QueryError, aggregate_names, combine_for, plan
from tests.fleet_helpers import OOM_QUESTION, compacted_dir, rayhistory

COUNT = 8  # sessions 6 has OOM (every 7th): one OOM session


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> tuple[Path, list]:
    archive = tmp_path_factory.mktemp("fleet") / "archive"
    sessions = write_fleet(LocalStore(archive), COUNT, oom_every=3)  # 2 and 5 failed with OOM
    done = rayhistory("compact", "--archive", str(archive), "--parallel", "2")
    assert done.returncode == 0, done.stderr
    return archive, sessions


def expected_oom(sessions) -> list[dict[str, str]]:
    return sorted(
        (
            {"namespace": s.ref.namespace, "cluster": s.ref.cluster, "session_id": s.ref.id, "job_id": s.failed_job}
            for s in sessions
            if s.oom
        ),
        key=lambda r: (r["namespace"], r["cluster"], r["session_id"]),
    )


def test_compact_publishes_every_closed_session_and_skips_them_next_time(fleet):
    archive, sessions = fleet
    for s in sessions:
        assert (compacted_dir(archive, s.ref) / "info.json").is_file()
        assert compacted_dir(archive, s.ref).name == f"c{COMPACTION_VERSION}"
    again = rayhistory("compact", "--archive", str(archive))
    assert again.returncode == 0 and f"{COUNT} already compacted" in again.stderr and "compacting 0" in again.stderr


def test_sql_answers_the_fleet_question(fleet):
    archive, sessions = fleet
    got = rayhistory("sql", OOM_QUESTION, "--archive", str(archive), "--format", "json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == expected_oom(sessions) and len(expected_oom(sessions)) == 2


def test_sql_selects_by_cluster_and_namespace(fleet):
    archive, sessions = fleet
    ref = sessions[0].ref
    got = rayhistory(
        "sql",
        "SELECT cluster, namespace, count(DISTINCT session_id) AS sessions, count(*) AS tasks FROM tasks GROUP BY ALL",
        "--archive",
        str(archive),
        "--cluster",
        ref.cluster,
        "--namespace",
        ref.namespace,
        "--format",
        "csv",
    )
    assert got.returncode == 0, got.stderr
    same = [s for s in sessions if (s.ref.cluster, s.ref.namespace) == (ref.cluster, ref.namespace)]
    assert list(csv.DictReader(io.StringIO(got.stdout))) == [
        {"cluster": ref.cluster, "namespace": ref.namespace, "sessions": str(len(same)), "tasks": str(20 * len(same))}
    ]


def test_sql_leaves_out_sessions_without_tables_and_says_so(fleet, tmp_path):
    archive, _ = fleet
    copy = tmp_path / "archive"
    shutil.copytree(archive, copy)
    write_session(LocalStore(copy), session_ref(99), 99, oom=True)  # archived, never compacted
    got = rayhistory("sql", OOM_QUESTION, "--archive", str(copy), "--format", "csv")
    assert got.returncode == 0 and "1 selected without compacted tables are left out" in got.stderr
    assert session_ref(99).id not in got.stdout


def test_sql_errors_name_the_problem(fleet):
    archive, _ = fleet
    unknown = rayhistory("sql", "SELECT * FROM taskz", "--archive", str(archive))
    assert unknown.returncode == 1 and "no table taskz; the tables are " + ", ".join(TABLE_NAMES) in unknown.stderr
    column = rayhistory("sql", "SELECT nope FROM tasks", "--archive", str(archive))
    assert column.returncode == 1 and 'Referenced column "nope" not found' in column.stderr
    syntax = rayhistory("sql", "SELEC 1", "--archive", str(archive))
    assert syntax.returncode == 1 and 'syntax error at or near "SELEC"' in syntax.stderr
    write = rayhistory("sql", "DELETE FROM tasks", "--archive", str(archive))
    assert write.returncode == 1 and "only a query" in write.stderr
    bad = rayhistory("sql", "SELECT 1", "--archive", str(archive), "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_sql_cuts_long_answers_at_max_rows(fleet):
    archive, _ = fleet
    got = rayhistory("sql", "SELECT task_id FROM tasks", "--archive", str(archive), "--max-rows", "5")
    assert got.returncode == 0 and len(got.stdout.splitlines()) == 2 + 5 and "cut at --max-rows 5" in got.stderr


@pytest.mark.parametrize(
    "sql, refused",
    [
        ("SELECT count(*) FROM tasks", "count_star() across sessions"),
        ("SELECT cluster, count(*) FROM tasks GROUP BY cluster", "across sessions"),
        ("SELECT task_id, row_number() OVER () FROM tasks", "window functions"),
        ("SELECT task_id FROM tasks ORDER BY lower(task_id)", "ORDER BY an expression"),
        ("SELECT * FROM tasks WHERE end_time_ms > (SELECT avg(end_time_ms) FROM tasks)", "avg() across sessions"),
    ],
)
def test_queries_that_cannot_be_split_over_ray_tasks_are_refused(sql, refused):
    import duckdb

    with pytest.raises(QueryError, match=refused.replace("(", r"\(").replace(")", r"\)")):
        combine_for(plan(sql), aggregate_names(duckdb.connect()))


def test_queries_that_can_be_split_say_how_to_combine():
    import duckdb

    aggs = aggregate_names(duckdb.connect())
    c = combine_for(plan(OOM_QUESTION), aggs)
    assert c.distinct and c.order_by[0] == ("namespace", False) and c.limit is None
    c = combine_for(plan("SELECT session_id, count(*) n FROM tasks GROUP BY session_id ORDER BY 2 DESC LIMIT 3"), aggs)
    assert (c.distinct, c.order_by, c.limit) == (False, [(2, True)], 3)


def test_sql_reads_every_part_of_a_table_written_as_parts(tmp_path, monkeypatch):
    """A large session's tasks are several parts (archive/compacted.py `files`): the fleet's views read them all,
    each row with its session."""
    from archive.compacted import TASKS, table_files
    from historyserver.catalog import Catalog
    from historyserver.compaction import tasks_sql
    from historyserver.compaction.publish import compact_closed, publish
    from historyserver.fleet.selection import selected
    from historyserver.fleet.sql_engine import answer

    monkeypatch.setattr(tasks_sql, "PARTITION_BYTES", 512)  # each session's task events become several ranges
    store = LocalStore(tmp_path / "archive")
    written = [write_session(store, session_ref(n), n, tasks=40, oom=n == 1) for n in range(2)]
    for s in written:
        tables = tmp_path / "tables" / s.ref.id
        info = compact_closed(store, s.ref, tables, Catalog(store, ttl=0).get(s.ref.id).end_ms)
        assert len(table_files(info, TASKS)) >= 2, info.get("files")
        publish(store, s.ref, tables)
    sessions = [selected(Catalog(store, ttl=0).get(s.ref.id)) for s in written]
    question = "SELECT session_id, count(*) AS n FROM tasks GROUP BY session_id ORDER BY session_id"
    with answer(store.url, sessions, plan(question), "256MB") as reader:
        got = reader.read_all().to_pylist()
    assert got == sorted(({"session_id": s.ref.id, "n": 40} for s in written), key=lambda r: r["session_id"])
    with answer(store.url, sessions, plan(OOM_QUESTION), "256MB") as reader:
        assert [r["session_id"] for r in reader.read_all().to_pylist()] == [written[1].ref.id]
