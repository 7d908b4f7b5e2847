"""The SLS events sink: Ray's task, actor, job, node and placement group events, one SLS log per event, into the
events logstore (`--sls-events-logstore`), from whichever path Ray uses: the export-event files in the session's
logs/ (source `logs`, only `export_events/`) or the spool of its HTTP event export (source `ray_events`).

Each line becomes one log whose contents are the event flattened by ray_events.py, plus `__dedup__` (the file's id
and the line's byte offset: a line sent twice, after a crash, has the same key), stamped with the event's own time
and tagged with cluster, namespace, session and node (archive/sls_schema.py). Delivery, retries and the checkpoint
are shipper.py's; requests are PutLogs, signed as the SDK signs them (transport.py), one LogGroup per file chunk.
The archive keeps every event as Ray wrote it and stays the system of record; this is a searchable copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from archive import sls_schema as schema
from collector.sinks.sls import loggroup, ray_events
from collector.sinks.sls.shipper import FileShipper, Refused, Request, Retry, Track
from collector.sinks.sls.transport import SlsError

log = logging.getLogger("rayhistory.collector.sls")

EXPORT_FOLDER = "export_events/"
MAX_ITEMS = 4096  # logs per LogGroup (SLS's limit)
MAX_BYTES = 4 << 20  # raw LogGroup bytes per request, well under PutLogs' 10 MB
FUNC_NAMES_KEPT = 20_000  # task id -> function name, for state updates that do not carry it (bounded: LRU)


class SlsEventsSink(FileShipper):
    name = "sls_events"
    inputs = frozenset({"logs", "ray_events"})

    def __init__(
        self,
        client: Any,  # transport.PutLogsClient (or anything with put_log_group, e.g. client._OneAttemptClient)
        project: str,
        logstore: str,
        tags: dict[str, str],  # cluster, namespace, session, node
        folders: dict[str, Path],
        checkpoint_path: Path,
        node: str,
        **kw: Any,
    ) -> None:
        super().__init__(folders, checkpoint_path, node, **kw)
        self.client, self.project, self.logstore = client, project, logstore
        self.tags = list(tags.items())
        self.hash_key = hashlib.md5(f"{node}\0events".encode()).hexdigest()
        self.func_names: OrderedDict[str, str] = OrderedDict()
        self.unreadable = 0

    def wants(self, source: str, path: str) -> bool:
        if source == "logs":
            return path.startswith(EXPORT_FOLDER) and path[len(EXPORT_FOLDER) :].startswith("event_EXPORT_")
        return source == "ray_events"

    def encode(self, track: Track, lines: list[tuple[int, bytes]], end: int) -> Iterable[Request]:
        read = ray_events.from_http if track.source == "ray_events" else ray_events.from_export
        entries: list[bytes] = []
        size = 0
        for offset, line in lines:
            record = self._record(read, line, track)
            if record is not None:
                ts_ns, fields = record
                fields[schema.DEDUP] = f"{track.file_id}:{offset}"
                entry = loggroup.log_entry(ts_ns, fields.items())
                if entries and (len(entries) >= MAX_ITEMS or size + len(entry) > MAX_BYTES):
                    yield Request(self._group(entries), len(entries), offset)
                    entries, size = [], 0
                entries.append(entry)
                size += len(entry)
        if entries:
            yield Request(self._group(entries), len(entries), end)

    def _record(self, read, line: bytes, track: Track) -> ray_events.Record | None:
        try:
            record = read(json.loads(line))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            self.unreadable += 1
            self.counters.errors_by_type["unreadable"] = self.unreadable
            log.warning(
                "%s: an unreadable event in %s (%s: %s); the archive keeps it",
                self.name,
                track.path,
                type(e).__name__,
                e,
            )
            return None
        if record is not None and record[1].get("event_type") == "TASK":
            self._func_name(record[1])
        return record

    def _func_name(self, fields: dict[str, str]) -> None:
        task_id = fields.get("task_id", "")
        name = fields.get("func_name")
        if name:
            self.func_names[task_id] = name
            self.func_names.move_to_end(task_id)
            while len(self.func_names) > FUNC_NAMES_KEPT:
                self.func_names.popitem(last=False)
        elif task_id in self.func_names:
            fields["func_name"] = self.func_names[task_id]

    def _group(self, entries: list[bytes]) -> bytes:
        return loggroup.log_group(entries, schema.TOPIC_EVENTS, self.node, self.tags)

    def send(self, payload: bytes) -> None:
        try:
            self.client.put_log_group(self.project, self.logstore, payload, self.hash_key)
        except SlsError as e:
            if e.status == 400 and e.code in ("InvalidLogSize", "PostBodyInvalid", "InvalidLogGroup"):
                raise Refused(str(e)) from None
            raise Retry(str(e), quota=e.is_quota) from None
