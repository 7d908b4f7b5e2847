"""`rayhistory sql "SELECT ..."`: SQL over the compacted tables of many sessions. DuckDB answers on this machine;
with --ray-address each Ray task answers over a chunk of sessions with DuckDB and the driver combines the answers
(sql_plan.py says which queries can be split so). Exit 0 answered, 1 the query failed, 2 bad settings or archive."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

import duckdb
import pyarrow as pa

from archive.errors import ArchiveError
from archive.settings import SettingsError
from archive.storage import open_store
from historyserver.errors import ArchiveUnavailable
from historyserver.fleet import on_ray, output
from historyserver.fleet.progress import Progress
from historyserver.fleet.selection import Selected, nothing_hint, published, select, selected
from historyserver.fleet.settings import SqlSettings
from historyserver.fleet.sql_engine import answer, answer_table
from historyserver.fleet.sql_plan import Combine, Plan, QueryError, aggregate_names, combine_for, plan

OK, FAILED, UNUSABLE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help='one SELECT over the tables (tasks, jobs, actors, ...), e.g. "SELECT ..."')
    SqlSettings.add_arguments(parser)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    given = {k: v for k, v in vars(args).items() if k != "query"}
    try:
        settings = SqlSettings.load(given)
        query = plan(args.query)
        store = open_store(settings.archive)  # no store.check(): it tests writing, and sql only reads
        entries, _ = select(store, settings)
        ready = published(store, entries)
    except (SettingsError, ArchiveError, ArchiveUnavailable) as e:
        print(f"rayhistory sql: {e}", file=err)
        return UNUSABLE
    except QueryError as e:
        print(f"rayhistory sql: {e}", file=err)
        return FAILED
    sessions = [selected(e) for e, ok in zip(entries, ready) if ok]
    if not entries:
        print(f"rayhistory sql: {nothing_hint(store, settings)}", file=err)
    missing = len(entries) - len(sessions)
    print(
        f"rayhistory sql: {len(sessions)} session(s)"
        + (
            f"; {missing} selected without compacted tables are left out (`rayhistory compact` them)" if missing else ""
        ),
        file=err,
    )
    started = time.monotonic()
    try:
        if settings.ray_address:
            printed, cut = _on_ray(settings, query, sessions, out, err)
        else:
            with answer(settings.archive, sessions, query, settings.sql_memory) as reader:
                printed, cut = output.write(reader, reader.schema.names, settings.format, settings.max_rows, out)
    except QueryError as e:
        print(f"rayhistory sql: {e}", file=err)
        return FAILED
    except on_ray.RayUnavailable as e:
        print(f"rayhistory sql: {e}", file=err)
        return UNUSABLE
    except ArchiveError as e:
        print(f"rayhistory sql: {e}", file=err)
        return UNUSABLE
    more = f"; cut at --max-rows {settings.max_rows}" if cut else ""
    print(f"rayhistory sql: {printed} row(s) in {time.monotonic() - started:.1f}s{more}", file=err)
    return OK


def _on_ray(settings: SqlSettings, query: Plan, sessions: list[Selected], out: TextIO, err: TextIO) -> tuple[int, bool]:
    con = duckdb.connect()
    combine = combine_for(query, aggregate_names(con))  # before Ray: a query outside the subset fails at once
    ray = on_ray.connect(settings.ray_address)
    chunks = [sessions[i : i + settings.sessions_per_task] for i in range(0, len(sessions), settings.sessions_per_task)]
    progress = Progress(err, "sql", len(sessions))
    parts: list[pa.Table] = []
    failure: list[BaseException] = []

    def done(call: tuple, table: pa.Table | None, error: BaseException | None) -> None:
        if error is not None:
            failure.append(error)
        elif table is not None:
            parts.append(table)
        for _ in call[1]:
            progress.step(error is not None)

    try:
        task = ray.remote(num_cpus=1, max_retries=1)(answer_table)
        calls = ((settings.archive, c, query, settings.sql_memory, settings.max_rows) for c in chunks)
        on_ray.bounded(ray, task, calls, max(2, int(ray.cluster_resources().get("CPU", 2))), done)
    finally:
        ray.shutdown()
    if failure:
        raise failure[0] if isinstance(failure[0], QueryError) else QueryError(str(failure[0]))
    if not parts:  # no sessions: the answer's columns from the query over nothing
        with answer(settings.archive, [], query, settings.sql_memory) as reader:
            return output.write(reader, reader.schema.names, settings.format, settings.max_rows, out)
    combined = pa.concat_tables(parts, promote_options="permissive")
    return _write_combined(con, combined, combine, settings, out)


def _write_combined(
    con: duckdb.DuckDBPyConnection, combined: pa.Table, combine: Combine, settings: SqlSettings, out: TextIO
) -> tuple[int, bool]:
    con.register("answers", combined)
    names = combined.schema.names
    terms = [
        f'"{names[c - 1] if isinstance(c, int) else c}" {"DESC" if desc else "ASC"}' for c, desc in combine.order_by
    ]
    sql = (
        f"SELECT {'DISTINCT ' if combine.distinct else ''}* FROM answers"
        + (f" ORDER BY {', '.join(terms)}" if terms else "")
        + (f" LIMIT {combine.limit}" if combine.limit is not None else "")
    )
    reader = con.execute(sql).to_arrow_reader(8192)
    return output.write(reader, names, settings.format, settings.max_rows, out)
