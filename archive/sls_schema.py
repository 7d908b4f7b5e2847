"""What Rayhistory keeps in Alibaba SLS, spelt once: the key names of its logs and events, the tags every LogGroup
carries, and the index each logstore needs, as data. Both sides use it: the collector's SLS sinks write these keys,
`rayhistory sls init` creates the indexes, and the history server's SLS search (historyserver/search/) reads by them.

An index spec is the JSON of SLS's CreateIndex body (`{line: {...}, keys: {key: {...}}}`, as the SDK's
`IndexConfig.to_json()` writes it); `index_config()` turns a spec into the SDK's `IndexConfig`.

    logs logstore    one log per log record: full text with SLS's default delimiters, and the fields log search
                     filters and groups by (doc_value: SQL works on them)
    events logstore  one log per Ray event, flattened (EVENT_KEYS): e.g.
                     `* | SELECT func_name, count(*) WHERE state = 'FAILED' GROUP BY func_name`
    MetricStore      Prometheus series, written by remote write; no index of ours (SLS manages it)

The logs logstore: a LogGroup holds the lines of one file. What is constant for that file travels once, as LogGroup
tags (searched as `__tag__:<name>: value`); what changes from line to line is a content of each log:

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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aliyun.log import IndexConfig

# --- LogGroup tags (searched as `__tag__:<name>: value`) ------------------------------------------------------
TAG_CLUSTER = "cluster"
TAG_NAMESPACE = "namespace"
TAG_SESSION = "session"
TAG_NODE_ID = "node_id"
TAG_NODE = TAG_NODE_ID  # (the name the events sink uses)
TAG_FILE = "file"  # logs only: the file's path under the session's logs/
TAG_WORKER_ID = "worker_id"  # logs only, when the file names a worker
TAG_PACK_ID = "__pack_id__"  # logs only: SLS's reserved tag for context (reference 5b)
TAG_PREFIX = "__tag__:"  # how a tag is named in queries and in GetLogs rows
TOPIC_LOGS = "ray"
TOPIC_EVENTS = "ray_events"

# --- contents shared by logs and events ------------------------------------------------------------------------
DEDUP = "__dedup__"  # `<file id>:<byte offset>[:<n>]`: a repeat (delivery is at least once) has the same key

# --- log records (collector/sinks/sls/ writes them, from archive/log_records.py's records) ----------------------
KEY_MESSAGE = "message"
KEY_LINE = "line"  # 1-based line number in the file, as the archive's log rows
KEY_OFFSET = "offset"  # byte offset of the record in the file
KEY_LEVEL = "level"
KEY_COMPONENT = "component"
KEY_PID = "pid"
KEY_JOB_ID = "job_id"
KEY_TASK_NAME = "task_name"
KEY_ACTOR_NAME = "actor_name"
KEY_CALLER = "caller"
KEY_TID = "tid"
KEY_PART = "part"
KEY_DEDUP = DEDUP
LOG_KEYS = (
    KEY_MESSAGE,
    KEY_DEDUP,
    KEY_LINE,
    KEY_OFFSET,
    KEY_LEVEL,
    KEY_COMPONENT,
    KEY_CALLER,
    KEY_PID,
    KEY_TID,
    KEY_JOB_ID,
    KEY_TASK_NAME,
    KEY_ACTOR_NAME,
    KEY_PART,
)

# Row fields SLS adds to every GetLogs row
ROW_TIME = "__time__"
ROW_TIME_NS = "__time_ns_part__"
ROW_PACK_META = "__pack_meta__"  # asked for with `| with_pack_meta`; with __tag__:__pack_id__, a context anchor


def tag(name: str) -> str:
    """A tag as queries and GetLogs rows name it: `__tag__:node_id`."""
    return TAG_PREFIX + name


# --- events (collector/sinks/sls/events.py writes them) --------------------------------------------------------
EV_TYPE = "event_type"  # TASK, ACTOR, DRIVER_JOB, SUBMISSION_JOB, NODE, PLACEMENT_GROUP
EV_RAY_TYPE = "ray_event_type"  # Ray's own name: EXPORT_TASK, TASK_LIFECYCLE_EVENT, ...
EV_PATH = "path"  # export (files) or http (Ray's HTTP event export)
EV_STATE = "state"  # the entity's state this event reports (its latest, when it carries several)
EV_STATE_MS = "state_ms"  # when it entered that state, epoch milliseconds
EV_STATE_TS_PREFIX = "ts_"  # ts_<STATE>: epoch milliseconds of every state the event carries
EVENT_KEYS: dict[str, str] = {  # key -> SLS index type
    EV_TYPE: "text",
    EV_RAY_TYPE: "text",
    EV_PATH: "text",
    "event_id": "text",
    EV_STATE: "text",
    EV_STATE_MS: "long",
    "task_id": "text",
    "attempt": "long",
    "job_id": "text",
    "submission_id": "text",
    "actor_id": "text",
    "node_id": "text",
    "worker_id": "text",
    "placement_group_id": "text",
    "parent_task_id": "text",
    "pid": "long",
    "func_name": "text",
    "task_name": "text",
    "task_type": "text",
    "actor_class": "text",
    "actor_name": "text",
    "error_type": "text",
    "error_message": "text",
    "message": "text",
    "node_ip": "text",
    "start_time_ms": "long",
    "end_time_ms": "long",
    DEDUP: "text",
}

# SLS's default token delimiters (our query language's too: historyserver/search/query.py DELIMITERS)
DELIMITERS = ", '\";=()[]{}?@&<>/:\n\t\r"
DEFAULT_TOKENS = list(DELIMITERS)  # as the console sets them, in its order

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


@dataclass(frozen=True)
class IndexKey:
    """One key of a logstore's field index (SLS `IndexKeyConfig`)."""

    type: str  # "text" | "long" | "double"
    doc_value: bool  # column storage: needed by SQL (facets, counts, regexp_like)


# The logs logstore's field index, what log search needs (`rayhistory sls init` creates it). doc_value where SQL
# reads the key: the facets (node_id, file, level, job_id), the message (regex mode filters with regexp_like),
# line and offset (order, context by line number), and the hit's other fields (regex mode selects them by SQL).
LOG_INDEX_KEYS: dict[str, IndexKey] = {
    KEY_MESSAGE: IndexKey("text", doc_value=True),
    KEY_LINE: IndexKey("long", doc_value=True),
    KEY_OFFSET: IndexKey("long", doc_value=True),
    KEY_LEVEL: IndexKey("text", doc_value=True),
    KEY_COMPONENT: IndexKey("text", doc_value=True),
    KEY_PID: IndexKey("long", doc_value=True),
    KEY_TID: IndexKey("long", doc_value=False),
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


def _text(doc_value: bool = True) -> dict[str, Any]:
    return {"type": "text", "token": list(DEFAULT_TOKENS), "caseSensitive": False, "doc_value": doc_value}


def _long() -> dict[str, Any]:
    return {"type": "long", "doc_value": True}


def _line() -> dict[str, Any]:
    return {"token": list(DEFAULT_TOKENS), "caseSensitive": False, "chn": False}


def logs_index() -> dict[str, Any]:
    """Full text, plus LOG_INDEX_KEYS: the fields log search filters, groups and orders by (issue 11)."""
    keys: dict[str, Any] = {}
    for name, k in LOG_INDEX_KEYS.items():
        keys[name] = _text(k.doc_value) if k.type == "text" else {"type": k.type, "doc_value": k.doc_value}
    return {"line": _line(), "keys": keys}


def events_index() -> dict[str, Any]:
    """Every event key, doc_value on, so that SQL can filter and group by any of them."""
    keys: dict[str, Any] = {k: (_long() if kind == "long" else _text()) for k, kind in EVENT_KEYS.items()}
    for name in (TAG_NODE, TAG_CLUSTER, TAG_NAMESPACE, TAG_SESSION):
        keys[tag(name)] = _text()
    return {"line": _line(), "keys": keys}


def index_config(spec: dict[str, Any]) -> IndexConfig:
    """A spec as the SDK's IndexConfig (whose to_json() gives the spec back)."""
    from aliyun.log import IndexConfig, IndexKeyConfig, IndexLineConfig

    line = spec.get("line")
    line_config = (
        IndexLineConfig(token_list=line["token"], case_sensitive=line["caseSensitive"], chinese=line.get("chn"))
        if line
        else None
    )
    keys = {
        name: IndexKeyConfig(
            token_list=k.get("token"),
            case_sensitive=k.get("caseSensitive", False),
            index_type=k["type"],
            doc_value=k.get("doc_value", False),
            alias=k.get("alias"),
        )
        for name, k in spec.get("keys", {}).items()
    }
    return IndexConfig(line_config=line_config, key_config_list=keys)


_COMPARED = ("type", "token", "caseSensitive", "doc_value", "chn", "alias")


def _norm(entry: dict[str, Any] | None) -> dict[str, Any]:
    if not entry:
        return {}
    out = {k: entry[k] for k in _COMPARED if k in entry}
    if "token" in out:
        out["token"] = sorted(out["token"])
    if out.get("type", "text") not in ("text", "json"):  # tokens and case apply to text only
        out.pop("token", None)
        out.pop("caseSensitive", None)
    out.setdefault("doc_value", False)
    if not out.get("chn"):
        out.pop("chn", None)
    return out


def index_diff(existing: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What `wanted` changes in an existing index (GetIndex's JSON), one line each: `+ key`, `~ key: field a -> b`,
    `~ line: ...`; keys the existing index has and `wanted` does not are kept, and not listed."""
    out = []
    old_line, new_line = _norm(existing.get("line")), _norm(wanted.get("line"))
    if new_line and old_line != new_line:
        out.append(f"~ full-text line index: {_change(old_line, new_line)}" if old_line else "+ full-text line index")
    old_keys = existing.get("keys") or {}
    for key, spec in wanted.get("keys", {}).items():
        if key not in old_keys:
            out.append(f"+ {key} ({spec['type']}{', doc_value' if spec.get('doc_value') else ''})")
        elif _norm(old_keys[key]) != _norm(spec):
            out.append(f"~ {key}: {_change(_norm(old_keys[key]), _norm(spec))}")
    return out


def _change(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = []
    for field in _COMPARED:
        if old.get(field) != new.get(field):
            a, b = old.get(field), new.get(field)
            if field == "token":
                a, b = f"{len(a or [])} delimiters", f"{len(b or [])} delimiters"
            parts.append(f"{field} {a!r} -> {b!r}")
    return ", ".join(parts)


def merged_index(existing: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The index to write over an existing one: ours for our keys and the line, the existing one's other keys kept."""
    keys = {k: v for k, v in (existing.get("keys") or {}).items() if k not in wanted.get("keys", {})}
    keys.update(wanted.get("keys", {}))
    out: dict[str, Any] = {"keys": keys}
    if wanted.get("line") or existing.get("line"):
        out["line"] = wanted.get("line") or existing["line"]
    return out


def remote_write_url(endpoint: str, project: str, metricstore: str) -> str:
    """Prometheus remote write into a MetricStore (reference 5b); https unless the endpoint says http://."""
    scheme, host = _split_endpoint(endpoint)
    return f"{scheme}://{project}.{host}/prometheus/{project}/{metricstore}/api/v1/write"


def prometheus_url(endpoint: str, project: str, metricstore: str) -> str:
    """What Grafana's Prometheus datasource is pointed at to read a MetricStore."""
    scheme, host = _split_endpoint(endpoint)
    return f"{scheme}://{project}.{host}/prometheus/{project}/{metricstore}"


def _split_endpoint(endpoint: str) -> tuple[str, str]:
    scheme = "https"
    for s in ("https://", "http://"):
        if endpoint.startswith(s):
            scheme, endpoint = s[:-3], endpoint[len(s) :]
    return scheme, endpoint.rstrip("/")
