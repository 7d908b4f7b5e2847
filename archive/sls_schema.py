"""What Rayhistory keeps in Alibaba SLS, spelt once: the key names of its logs and events, the tags every LogGroup
carries, and the index each logstore needs, as data. Both sides use it: the collector's SLS sinks write these keys,
`rayhistory sls init` creates the indexes, and a server-side SLS search reads by them.

An index spec is the JSON of SLS's CreateIndex body (`{line: {...}, keys: {key: {...}}}`, as the SDK's
`IndexConfig.to_json()` writes it); `index_config()` turns a spec into the SDK's `IndexConfig`.

    logs logstore    one log per log record: full text with SLS's default delimiters, and the fields log search
                     filters and groups by (doc_value: SQL works on them)
    events logstore  one log per Ray event, flattened (EVENT_KEYS): e.g.
                     `* | SELECT func_name, count(*) WHERE state = 'FAILED' GROUP BY func_name`
    MetricStore      Prometheus series, written by remote write; no index of ours (SLS manages it)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aliyun.log import IndexConfig

# --- LogGroup tags (searched as `__tag__:<name>: value`) ------------------------------------------------------
TAG_CLUSTER = "cluster"
TAG_NAMESPACE = "namespace"
TAG_SESSION = "session"
TAG_NODE = "node"
TAG_FILE = "file"  # logs only: the file's path under the session's logs/
TAG_PACK_ID = "__pack_id__"  # logs only: context (reference 5b)
TOPIC_LOGS = "ray"
TOPIC_EVENTS = "ray_events"

# --- contents shared by logs and events ------------------------------------------------------------------------
DEDUP = "__dedup__"  # `<file id>:<byte offset>[:<n>]`: a repeat (delivery is at least once) has the same key

# --- log records (collector/sinks/sls/parse.py writes them) ----------------------------------------------------
LOG_KEYS = (
    "message",
    DEDUP,
    "level",
    "component",
    "caller",
    "pid",
    "tid",
    "job_id",
    "worker_id",
    "task_name",
    "actor_name",
    "part",
)

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
    "placement_group_name": "text",
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

# SLS's default delimiters (reference 5b), as the console sets them.
DEFAULT_TOKENS = [",", " ", "'", '"', ";", "=", "(", ")", "[", "]", "{", "}", "?", "@", "&", "<", ">", "/", ":"]
DEFAULT_TOKENS += ["\n", "\t", "\r"]


def _text(doc_value: bool = True) -> dict[str, Any]:
    return {"type": "text", "token": list(DEFAULT_TOKENS), "caseSensitive": False, "doc_value": doc_value}


def _long() -> dict[str, Any]:
    return {"type": "long", "doc_value": True}


def _line() -> dict[str, Any]:
    return {"token": list(DEFAULT_TOKENS), "caseSensitive": False, "chn": False}


def tag_key(tag: str) -> str:
    return f"__tag__:{tag}"


def logs_index() -> dict[str, Any]:
    """Full text, plus the fields log search filters by (issue 11) with doc_value for SQL."""
    keys: dict[str, Any] = {"message": _text(doc_value=False)}
    for key in ("level", "component", "caller", "job_id", "worker_id", "task_name", "actor_name"):
        keys[key] = _text()
    keys["pid"] = _long()
    keys["tid"] = _long()
    for tag in (TAG_NODE, TAG_FILE, TAG_CLUSTER, TAG_NAMESPACE, TAG_SESSION):
        keys[tag_key(tag)] = _text()
    return {"line": _line(), "keys": keys}


def events_index() -> dict[str, Any]:
    """Every event key, doc_value on, so that SQL can filter and group by any of them."""
    keys: dict[str, Any] = {k: (_long() if kind == "long" else _text()) for k, kind in EVENT_KEYS.items()}
    for tag in (TAG_NODE, TAG_CLUSTER, TAG_NAMESPACE, TAG_SESSION):
        keys[tag_key(tag)] = _text()
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
