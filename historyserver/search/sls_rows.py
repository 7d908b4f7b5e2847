"""SLS's answers as ours: a GetLogs row as a Hit or a ContextLine (session from the tags, node, file, line and offset
from the tags and contents archive/sls_schema.py names), and the cursor of SLS pages."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from archive import sls_schema as schema
from archive.layout import SessionRef
from historyserver.search.archive_backend import log_view_url
from historyserver.search.backend import ContextLine, Hit
from historyserver.search.errors import SearchRefused


def hit(row: Mapping[str, Any], match: list[tuple[int, int]]) -> Hit:
    tags = {
        t: str(row.get(schema.tag(t)) or "") for t in (schema.TAG_NAMESPACE, schema.TAG_CLUSTER, schema.TAG_SESSION)
    }
    try:
        session = SessionRef(tags[schema.TAG_NAMESPACE], tags[schema.TAG_CLUSTER], tags[schema.TAG_SESSION]).id
    except ValueError:
        session = ""  # a line sent without our tags (another writer, an older collector)
    node = row.get(schema.tag(schema.TAG_NODE_ID)) or None
    file = row.get(schema.tag(schema.TAG_FILE)) or None
    line = integer(row.get(schema.KEY_LINE))
    return Hit(
        kind="log",
        session=session,
        node_id=node,
        file=file,
        line=line,
        offset=integer(row.get(schema.KEY_OFFSET)),
        time=seconds(row),
        level=row.get(schema.KEY_LEVEL) or None,
        job_id=row.get(schema.KEY_JOB_ID) or None,
        message=message(row),
        match=match,
        url=log_view_url(session, node, file, line) if session and node and file and line else "",
        task_name=row.get(schema.KEY_TASK_NAME) or None,
        actor_name=row.get(schema.KEY_ACTOR_NAME) or None,
        worker_id=row.get(schema.tag(schema.TAG_WORKER_ID)) or None,
        pid=integer(row.get(schema.KEY_PID)),
        component=row.get(schema.KEY_COMPONENT) or None,
    )


def context_lines(rows: list[dict[str, Any]]) -> list[ContextLine]:
    """Rows in file order, each record once (a line sent twice, at least once delivery, has the same offset)."""
    out: list[ContextLine] = []
    seen: set[int] = set()
    for r in sorted(rows, key=lambda r: integer(r.get(schema.KEY_OFFSET)) or 0):
        n, offset = integer(r.get(schema.KEY_LINE)), integer(r.get(schema.KEY_OFFSET))
        if n is None or offset is None or offset in seen:
            continue
        seen.add(offset)
        out.append(
            ContextLine(
                n,
                offset,
                message(r),
                seconds(r),
                r.get(schema.KEY_LEVEL),
                r.get(schema.KEY_TASK_NAME),
                r.get(schema.KEY_ACTOR_NAME),
            )
        )
    return out


def message(row: Mapping[str, Any]) -> str:
    return str(row.get(schema.KEY_MESSAGE, ""))


def field(row: Mapping[str, Any], key: str) -> str | None:
    v = row.get(key)
    return None if v in (None, "", "null") else str(v)


def integer(v: Any) -> int | None:
    try:
        return int(v) if v not in (None, "", "null") else None
    except (TypeError, ValueError):
        return None


def seconds(row: Mapping[str, Any]) -> float | None:
    whole = integer(row.get(schema.ROW_TIME))
    if whole is None:
        return None
    return whole + (integer(row.get(schema.ROW_TIME_NS)) or 0) / 1e9


@dataclass
class Cursor:
    """Where the next page starts; `to` pinned so that lines arriving meanwhile do not shift the pages."""

    offset: int
    to: int
    total: int | None

    def encode(self) -> str:
        raw = json.dumps({"o": self.offset, "to": self.to, "t": self.total}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            cursor = cls(int(data["o"]), int(data["to"]), None if data["t"] is None else int(data["t"]))
        except (binascii.Error, ValueError, KeyError, TypeError) as e:
            raise SearchRefused(f"cursor {text!r} is not one this server gave ({e}); start again without it") from None
        if cursor.offset < 0:
            raise SearchRefused(f"cursor {text!r} is not one this server gave; start again without it")
        return cursor
