"""The log logstore's shape on SLS, written down once: what the collector's SLS sink sends (tags per LogGroup,
contents per log), what `rayhistory sls init` indexes, and what the history server's SLS search backend reads.

A LogGroup holds the lines of one file. What is constant for that file travels once, as LogGroup tags (searched
as `__tag__:<name>: value`); what changes from line to line is a content of each log:

    tags:      cluster, namespace, session, node_id, file, worker_id (when the file names one), __pack_id__
    contents:  message, line, offset, level, component, pid, job_id, task_name, actor_name,
               caller, tid, part (a cut record's part), __dedup__ (file id:offset, readers drop repeats by it)
    time:      __time__ and __time_ns_part__ (the line's own timestamp; raw output lines: when read)

`__pack_id__` is `<PREFIX>-<COUNTER>` in upper-case hex (SLS's documented form, e.g. 895CEA449A52FE-1): one prefix
per (session, node, file), the counter +1 per LogGroup in file order, persisted in the sink's checkpoint, so that
SLS's context query (`get_context_logs`) returns a hit's neighbouring lines in file order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# --- tags (one per LogGroup) -----------------------------------------------------------------------------------
TAG_CLUSTER = "cluster"
TAG_NAMESPACE = "namespace"
TAG_SESSION = "session"
TAG_NODE_ID = "node_id"
TAG_FILE = "file"
TAG_WORKER_ID = "worker_id"
TAG_PACK_ID = "__pack_id__"  # SLS's reserved tag for context
TAG_PREFIX = "__tag__:"  # how a tag is named in queries and in GetLogs rows

# --- contents (one per log) ------------------------------------------------------------------------------------
KEY_MESSAGE = "message"
KEY_LINE = "line"
KEY_OFFSET = "offset"
KEY_LEVEL = "level"
KEY_COMPONENT = "component"
KEY_PID = "pid"
KEY_JOB_ID = "job_id"
KEY_TASK_NAME = "task_name"
KEY_ACTOR_NAME = "actor_name"
KEY_CALLER = "caller"
KEY_TID = "tid"
KEY_PART = "part"
KEY_DEDUP = "__dedup__"

# Row fields SLS adds to every GetLogs row
ROW_TIME = "__time__"
ROW_TIME_NS = "__time_ns_part__"
ROW_PACK_META = "__pack_meta__"  # asked for with `| with_pack_meta`; with __tag__:__pack_id__, a context anchor


def tag(name: str) -> str:
    """A tag as queries and GetLogs rows name it: `__tag__:node_id`."""
    return TAG_PREFIX + name


# Our search fields (historyserver/search/query.py FIELDS) -> the logstore key holding each.
SEARCH_KEYS: dict[str, str] = {
    "message": KEY_MESSAGE,
    "node_id": tag(TAG_NODE_ID),
    "file": tag(TAG_FILE),
    "job_id": KEY_JOB_ID,
    "level": KEY_LEVEL,
    "worker_id": tag(TAG_WORKER_ID),
    "pid": KEY_PID,
    "task_name": KEY_TASK_NAME,
    "actor_name": KEY_ACTOR_NAME,
    "component": KEY_COMPONENT,
    "session": tag(TAG_SESSION),
    "cluster": tag(TAG_CLUSTER),
    "namespace": tag(TAG_NAMESPACE),
}

# SLS's default token delimiters (our query language's too: historyserver/search/query.py DELIMITERS)
DELIMITERS = ", '\";=()[]{}?@&<>/:\n\t\r"


@dataclass(frozen=True)
class IndexKey:
    """One key of the logstore's field index (SLS `IndexKeyConfig`)."""

    type: str  # "text" | "long" | "double"
    doc_value: bool  # column storage: needed by SQL (facets, counts, regexp_like)
    token: str = DELIMITERS  # for text keys
    case_sensitive: bool = False


# The field index the search needs (`rayhistory sls init` creates it). doc_value where SQL reads the key: the facet
# keys (node_id, file, level, job_id), the message (regex mode filters with regexp_like), line and offset (order).
LOG_INDEX_KEYS: dict[str, IndexKey] = {
    KEY_MESSAGE: IndexKey("text", doc_value=True),
    KEY_LINE: IndexKey("long", doc_value=True),
    KEY_OFFSET: IndexKey("long", doc_value=True),
    KEY_LEVEL: IndexKey("text", doc_value=True),
    KEY_COMPONENT: IndexKey("text", doc_value=True),
    KEY_PID: IndexKey("long", doc_value=True),
    KEY_JOB_ID: IndexKey("text", doc_value=True),
    KEY_TASK_NAME: IndexKey("text", doc_value=True),
    KEY_ACTOR_NAME: IndexKey("text", doc_value=True),
    KEY_CALLER: IndexKey("text", doc_value=False),
    tag(TAG_CLUSTER): IndexKey("text", doc_value=True),
    tag(TAG_NAMESPACE): IndexKey("text", doc_value=True),
    tag(TAG_SESSION): IndexKey("text", doc_value=True),
    tag(TAG_NODE_ID): IndexKey("text", doc_value=True),
    tag(TAG_FILE): IndexKey("text", doc_value=True),
    tag(TAG_WORKER_ID): IndexKey("text", doc_value=True),
}
# The full-text index on the whole line (SLS `IndexLineConfig`): what an unqualified term searches.
LOG_INDEX_LINE = IndexKey("text", doc_value=False)

# Facets the search answers with (our field -> logstore key); SQL needs doc_value on each.
FACET_KEYS: dict[str, str] = {f: SEARCH_KEYS[f] for f in ("node_id", "file", "level", "job_id")}


def pack_prefix(session: str, node_id: str, file: str) -> str:
    """The `__pack_id__` prefix of one file's LogGroups: upper-case hex, stable across restarts."""
    return hashlib.sha1(f"{session}\0{node_id}\0{file}".encode()).hexdigest()[:16].upper()


def pack_id(prefix: str, counter: int) -> str:
    return f"{prefix}-{counter:X}"


def parse_pack_id(value: str) -> tuple[str, int]:
    """(prefix, counter) of a `__pack_id__`; ValueError when it is not `<HEX>-<HEX>`."""
    prefix, sep, counter = value.rpartition("-")
    if not sep or not prefix or not counter:
        raise ValueError(f"{value!r} is not a __pack_id__ (<PREFIX>-<COUNTER>, hex)")
    int(prefix, 16)
    return prefix, int(counter, 16)
