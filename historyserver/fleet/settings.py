"""Settings of `rayhistory compact` and `rayhistory sql` (archive/settings.py: flag, RAYHISTORY_ variable, default)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from archive.settings import Settings, SettingsError, parse_duration

_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)")


@dataclass
class FleetSettings(Settings):
    archive: str = field(metadata={"help": "archive URL: a directory, file://PATH or s3://bucket/prefix"})
    namespace: str = field(default="", metadata={"help": "only sessions of this namespace (empty: all)"})
    cluster: str = field(default="", metadata={"help": "only sessions of clusters of this name (empty: all)"})
    since: str = field(
        default="",
        metadata={"help": "only sessions started within this duration, e.g. 30d, 12h (empty: all)"},
    )
    ray_address: str = field(
        default="",
        metadata={
            "help": "a Ray cluster (e.g. ray-head:6379, or auto) to fan the work out to as Ray tasks; empty: "
            "this machine"
        },
    )

    def check(self) -> None:
        if self.since:
            try:
                parse_duration(_days(self.since))
            except ValueError as e:
                raise SettingsError(f"--since: {e}; days are written e.g. 30d") from None

    @property
    def since_s(self) -> float | None:
        return parse_duration(_days(self.since)) if self.since else None

    def _at_least_one(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")

    def _size(self, name: str) -> None:
        if not _SIZE.fullmatch(getattr(self, name).strip()):
            raise SettingsError(f"--{name.replace('_', '-')}: {getattr(self, name)!r} is not a size; give e.g. 1GB")


def _days(text: str) -> str:
    """archive/settings.py's durations stop at hours; a fleet question speaks in days and weeks."""
    m = re.fullmatch(r"\s*(\d+)\s*([dw])\s*", text)
    if m:
        return f"{int(m.group(1)) * (24 if m.group(2) == 'd' else 168)}h"
    return text


@dataclass
class CompactSettings(FleetSettings):
    command = "rayhistory compact"

    parallel: int = field(
        default=2,
        metadata={
            "help": "sessions compacted at once: processes on this machine, or Ray tasks in flight with "
            "--ray-address (each takes up to --compaction-memory)"
        },
    )
    compaction_memory: str = field(
        default="600MB", metadata={"help": "DuckDB's memory while compacting one session (as rayhistory serve's)"}
    )
    force: bool = field(
        default=False,
        metadata={"help": "compact again sessions whose tables of this version are already in the archive"},
    )

    def check(self) -> None:
        super().check()
        self._at_least_one("parallel")
        self._size("compaction_memory")


@dataclass
class SqlSettings(FleetSettings):
    command = "rayhistory sql"

    format: str = field(
        default="table",
        metadata={"help": "how the answer is printed: table, csv or json", "choices": ("table", "csv", "json")},
    )
    max_rows: int = field(
        default=10_000, metadata={"help": "rows printed at most; the answer is cut there and says so"}
    )
    sql_memory: str = field(
        default="1GB",
        metadata={"help": "DuckDB's memory for the query (per Ray task with --ray-address); more spills to disk"},
    )
    sessions_per_task: int = field(
        default=50, metadata={"help": "with --ray-address: sessions one Ray task answers the query over"}
    )

    def check(self) -> None:
        super().check()
        self._at_least_one("max_rows", "sessions_per_task")
        self._size("sql_memory")
