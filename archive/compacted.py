"""The compacted tables: what a history server derives from a session and writes back under
`compacted/c{COMPACTION_VERSION}/` (FORMAT.md, "What is derived"), each table one Parquet file or several parts
(listed in INFO_FILE's `files`, read as one table), and INFO_FILE last.

The registry of tables is here, beside the keys, so that every reader (warehouse, queries, gc, benchmarks, tests)
names tables from one place; historyserver/compaction/tables.py binds each table to the builder that writes it.
They are a versioned cache: a change to a table's bytes sets its `version` to a new COMPACTION_VERSION, and every
table is rebuilt, never migrated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

COMPACTION_VERSION = 20  # 20: tasks have the record's fields as typed columns, no rendered record; 19: task_timeline may be parts, its lane and node_rank ids (not an order), tasks have error_message; 18: log_lines and log_terms may be parts (indexed while the session ran), task_log_info merged field by field and unset offsets absent, as Ray answers; 17: a state reported twice keeps its later stamp, as Ray does; 16: tasks and profile_events may be several parts (info.json `files`); 15: driver jobs keep the job table's times (API snapshots); 14: log tables derive offsets and stamps; 13: tasks keep PENDING_NODE_ASSIGNMENT/SUBMITTED_TO_WORKER times, task_timeline; 12: log search
INFO_FILE = "info.json"  # counts, damage, the cluster's last status; written after the tables, it vouches for them
TABLE_SUFFIX = ".parquet"
FILES = "files"  # INFO_FILE's map of a table written as parts to its files, in order; absent: the table's one file
# INFO_FILE's list of the tables a build left to follow (our own indexes, of a session opened before they are built:
# historyserver/compaction/build.py add_deferred). Only in a server's local cache: never written to the archive.
PENDING = "pending"
_PART = re.compile(r"^([a-z_]+)\.([0-9]{4})" + re.escape(TABLE_SUFFIX) + "$")


@dataclass(frozen=True)
class Table:
    name: str
    schema: pa.Schema  # the columns readers may rely on
    version: int  # the COMPACTION_VERSION that last changed the table's bytes (<= COMPACTION_VERSION)

    @property
    def file(self) -> str:
        return self.name + TABLE_SUFFIX


_S, _I, _I32, _F, _B = pa.string(), pa.int64(), pa.int32(), pa.float64(), pa.bool_()

_OFFSETS = ("stdout_start", "stdout_end", "stderr_start", "stderr_end")

# Versions below 9 are those of the commits that bumped COMPACTION_VERSION for the table.
TASKS = Table(
    "tasks",
    pa.schema(
        [
            ("task_id", _S),
            ("attempt_number", _I),
            ("name", _S),
            ("state", _S),
            ("job_id", _S),
            ("actor_id", _S),
            ("type", _S),
            ("func_or_class_name", _S),
            ("parent_task_id", _S),
            ("node_id", _S),
            ("worker_id", _S),
            ("worker_pid", _I),
            ("error_type", _S),
            ("creation_time_ms", _F),
            ("start_time_ms", _F),
            ("end_time_ms", _F),
            # The first PENDING_NODE_ASSIGNMENT and SUBMITTED_TO_WORKER: with creation (waiting for arguments),
            # start (RUNNING) and end they split an attempt into the phases the timeline draws.
            ("pending_node_time_ms", _F),
            ("submitted_time_ms", _F),
            ("unfinished", _B),
            ("error_message", _S),  # the record's: searched as a line (historyserver/search/error_hits.py)
            # The rest of Ray's record, typed: a query renders the record (historyserver/queries/task_records.py)
            # from these and the attempt's profile_events rows.
            ("language", _S),
            ("required_resources", pa.map_(_S, _F)),
            ("runtime_env_info", _S),  # JSON
            ("placement_group_id", _S),
            ("events", pa.list_(pa.struct([("state", _S), ("created_ms", _F)]))),  # the states seen, in order
            # NULL when no report carried log info; an offset no report set is NULL (absent from the record).
            ("task_log_info", pa.struct([("stdout_file", _S), ("stderr_file", _S)] + [(f, _I) for f in _OFFSETS])),
            ("is_debugger_paused", _B),
            ("call_site", _S),
            ("label_selector", _S),  # JSON
        ]
    ),
    20,
)  # written by DuckDB, whose file has attempt_number INTEGER and the JSON columns as JSON (read back as these)
# The timeline's copy of the tasks (drivers left out), sorted by from_ms (an attempt's creation, or its start) in
# small row groups, so that a time window reads only the groups it overlaps. lane numbers the (node, worker) pairs
# and node_rank the nodes: ids, not an order (a one-shot build numbers them in the order the timeline draws them,
# node then worker pid; a session folded while it ran, as its workers appeared). It may be parts (info.json `files`),
# each sorted by from_ms.
TASK_TIMELINE = Table(
    "task_timeline",
    pa.schema(
        [
            ("from_ms", _F),
            ("to_ms", _F),
            ("lane", _I32),
            ("node_rank", _I32),
            ("task_id", _S),
            ("attempt_number", _I32),
            ("name", _S),
            ("func_or_class_name", _S),
            ("state", _S),
            ("unfinished", _B),
            ("job_id", _S),
            ("node_id", _S),
            ("worker_id", _S),
            ("worker_pid", _I),
            ("error_type", _S),
            ("parent_task_id", _S),
            ("actor_id", _S),
            ("type", _S),
            ("creation_time_ms", _F),
            ("pending_node_time_ms", _F),
            ("submitted_time_ms", _F),
            ("start_time_ms", _F),
            ("end_time_ms", _F),
        ]
    ),
    19,
)
PROFILE_EVENTS = Table(
    "profile_events",
    pa.schema(
        [
            ("task_id", _S),
            ("attempt_number", _I32),
            ("component_type", _S),
            ("component_id", _S),
            ("node_ip_address", _S),
            ("event_name", _S),
            ("start_time", _F),
            ("end_time", _F),
            ("extra_data", _S),
        ]
    ),
    2,
)
ACTORS = Table(
    "actors",
    pa.schema(
        [
            ("actor_id", _S),
            ("job_id", _S),
            ("state", _S),
            ("class_name", _S),
            ("name", _S),
            ("node_id", _S),
            ("pid", _I),
            ("record", _S),
        ]
    ),
    16,
)
JOBS = Table(
    "jobs",
    pa.schema(
        [
            ("job_id", _S),
            ("submission_id", _S),
            ("type", _S),
            ("status", _S),
            ("start_time", _I),
            ("record", _S),
        ]
    ),
    2,
)
NODES = Table(
    "nodes",
    pa.schema(
        [
            ("node_id", _S),
            ("state", _S),
            ("is_head_node", _B),
            ("node_ip", _S),
            ("record", _S),
        ]
    ),
    2,
)
LOG_FILES = Table(
    "log_files",
    pa.schema(
        [
            ("node_id", _S),
            ("path", _S),
            ("size", _I),
            ("segments", _I),
            ("complete", _B),
        ]
    ),
    2,
)
CLUSTER_EVENTS = Table(
    "cluster_events",
    pa.schema(
        [
            ("event_id", _S),
            ("job_id", _S),
            ("timestamp", _F),
            ("severity", _S),
            ("source_type", _S),
            ("record", _S),
        ]
    ),
    3,
)
WORKERS = Table(
    "workers",
    pa.schema(
        [
            ("worker_id", _S),
            ("node_id", _S),
            ("pid", _I),
            ("worker_type", _S),
            ("record", _S),
        ]
    ),
    4,
)
# labels: a MAP (keys sorted) so that label matchers are typed expressions DuckDB evaluates without parsing.
METRIC_SERIES = Table(
    "metric_series",
    pa.schema(
        [
            ("series_id", _I),
            ("name", _S),
            ("labels", pa.map_(_S, _S)),
        ]
    ),
    8,
)
# Sorted by (series_id, ts_ms); staleness markers are Prometheus's STALE_NAN bits.
METRIC_SAMPLES = Table("metric_samples", pa.schema([("series_id", _I), ("ts_ms", _I), ("value", _F)]), 9)
PLACEMENT_GROUPS = Table(
    "placement_groups",
    pa.schema(
        [
            ("placement_group_id", _S),
            ("name", _S),
            ("state", _S),
            ("creator_job_id", _S),
            ("is_detached", _B),
            ("strategy", _S),
            ("ray_namespace", _S),
            ("creation_time_ms", _I),
            ("scheduled_time_ms", _I),
            ("removal_time_ms", _I),
            ("unfinished", _B),
            ("record", _S),
        ]
    ),
    6,
)

# One row per physical line of the session's logs/ files (events/ and export_events/ aside), sorted by
# (node_id, file, line) (within each part, when written as parts), in row groups ("blocks") of a fixed number of rows; time_ms is NULL on lines without a
# timestamp of their own or of their record (raw worker output). LOG_HEAD_SQL + message is the line (ANSI escapes
# removed): a header's time stamp, when writing it from time_ms gives back the same text, is not stored twice but
# is the one character LOG_STAMP in `head` (`zone`: the seconds its clock is ahead of UTC; NULL: head as written).
LOG_LINES = Table(
    "log_lines",
    pa.schema(
        [
            ("node_id", _S),
            ("file", _S),
            ("line", _I32),
            ("offset", _I),
            ("time_ms", _I),
            ("zone", _I32),
            ("level", _S),
            ("job_id", _S),
            ("worker_id", _S),
            ("pid", _I),
            ("component", _S),
            ("task_name", _S),
            ("actor_name", _S),
            ("head", _S),
            ("message", _S),
            ("block", _I32),  # the row group's number, across the table's parts in order: the term index's unit
        ]
    ),
    14,
)
LOG_STAMP = "\x01"
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S"  # then ",mmm": Ray's C++ and Python headers alike
LOG_HEAD_SQL = (
    f"CASE WHEN zone IS NULL THEN head ELSE replace(head, chr({ord(LOG_STAMP)}), "
    f"strftime(epoch_ms(time_ms + zone * 1000), '{STAMP_FORMAT},%g')) END"
)
# The term index of log_lines: (lower-case token, block = row group of log_lines, lines of the block holding it),
# sorted by (token, block); tokens prefix-coded (DELTA_BYTE_ARRAY), blocks delta-coded (a third smaller than before).
LOG_TERMS = Table("log_terms", pa.schema([("token", _S), ("block", _I32), ("lines", _I32)]), 14)

TABLES = (
    TASKS,
    TASK_TIMELINE,
    PROFILE_EVENTS,
    ACTORS,
    JOBS,
    NODES,
    LOG_FILES,
    CLUSTER_EVENTS,
    WORKERS,
    METRIC_SERIES,
    METRIC_SAMPLES,
    PLACEMENT_GROUPS,
    LOG_LINES,
    LOG_TERMS,
)
TABLE_NAMES = tuple(t.name for t in TABLES)
_BY_NAME = {t.name: t for t in TABLES}
_BY_FILE = {t.file: t for t in TABLES}


def table(name: str) -> Table:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no compacted table {name!r}; the tables are {', '.join(TABLE_NAMES)}") from None


def pending(info: Mapping[str, Any]) -> list[str]:
    """The tables of a build that are not there yet (INFO_FILE's PENDING); [] for a complete build."""
    names = info.get(PENDING) or []
    if not isinstance(names, list) or any(n not in _BY_NAME for n in names):
        raise ValueError(f"{INFO_FILE}'s {PENDING} is not a list of table names: {names!r}")
    return names


def part_file(table: Table, index: int) -> str:
    """The name of a table's index-th part, for a table written as several files (sorted within each part)."""
    return f"{table.name}.{index:04d}{TABLE_SUFFIX}"


def table_files(info: Mapping[str, Any], table: Table) -> list[str]:
    """The files that hold a table of a build, in order: its parts as INFO_FILE lists them, else its one file.
    A listed name that is not one of the table's part names (a path, another table's file) is a ValueError: an
    INFO_FILE read from the archive names files to fetch and write."""
    listing = info.get(FILES) or {}
    if not isinstance(listing, dict):
        raise ValueError(f"{INFO_FILE}'s {FILES} is not an object")
    files = listing.get(table.name)
    if not files:
        return [table.file]
    if not isinstance(files, list):
        raise ValueError(f"{INFO_FILE} lists the parts of {table.name} as {type(files).__name__}, not a list")
    for name in files:
        part = _PART.match(name) if isinstance(name, str) else None
        if not part or part.group(1) != table.name:
            raise ValueError(f"{INFO_FILE} lists {name!r} among the parts of {table.name}: not a part's name")
    return list(files)


def parse_file_name(name: str) -> Table | None:
    """The table a file of a compacted/ folder holds (its one file or a part), or None (INFO_FILE, or a file of
    another version)."""
    part = _PART.match(name)
    return _BY_NAME.get(part.group(1)) if part else _BY_FILE.get(name)
