"""Every key of the archive is built and parsed here, and nowhere else (see FORMAT.md).

{root}/v1/
  index/{namespace}/{cluster}/{session}.json            catalog entry (copy of the manifest)
  deleting/{namespace}/{cluster}/{session}.json         `rayhistory gc` is deleting the session (see FORMAT.md)
  clusters/{namespace}/{cluster}/{session}/
    manifest.json                                        session manifest (mutable, single PUT)
    ended.json                                           end marker: the session is complete
    compacted/c{version}/{table}.parquet, info.json      derived tables (a reader's cache; info.json last;
                                                         tables and version: archive/compacted.py)
    nodes/{node_id}/
      node.json                                          what the node's collector knows of it
      ended.json                                         the node's collector flushed for the last time
      files.json                                         renamed files: current path -> (archived path, epoch)
      logs/{path under logs/}/{epoch}-{start}-{end}.gz   byte range [start, end) of one file generation
      ray_events/{spool file}/{epoch}-{start}-{end}.gz   the same, for events Ray POSTed to the collector
      metrics/metrics-{seq}.prom/{epoch}-{start}-{end}.gz    the same, for its scrapes (archive/metrics_blocks.py)
      api/api-{seq}.jsonl/{epoch}-{start}-{end}.gz       the same, for API snapshots (archive/api_snapshots.py)
      grafana/{file}.json/{epoch}-{start}-{end}.gz       head only: Ray's Grafana dashboards (archive/grafana.py)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

FORMAT_VERSION = 1
VERSION_DIR = f"v{FORMAT_VERSION}"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SESSION = re.compile(r"^session_[0-9A-Za-z_-]{1,120}$")
_NODE = re.compile(r"^[0-9a-f]{8,128}$")
_SEGMENT = re.compile(r"^(\d{4})-(\d{16})-(\d{16})\.gz$")
_COMPACTED = re.compile(r"^c([0-9]+)/([^/]+)$")
COMPACTED_DIR = "compacted/"
# Where a node's segments come from (the folders under nodes/{node_id}/, drawn above).
SOURCES = ("logs", "ray_events", "metrics", "api", "grafana")
SESSION_ID_SEPARATOR = "~"


class InvalidName(ValueError):
    """A name that cannot be part of an archive key."""


def _check(pattern: re.Pattern[str], value: str, what: str, hint: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidName(f"invalid {what} {value!r}: {hint}")
    return value


def check_name(value: str, what: str) -> str:
    return _check(_NAME, value, what, "use lowercase letters, digits, '-' and '.' (a Kubernetes name)")


def check_session(value: str) -> str:
    return _check(_SESSION, value, "session name", "expected Ray's 'session_<date>_<time>_<pid>'")


def check_node(value: str) -> str:
    return _check(_NODE, value, "node id", "expected Ray's node id in lowercase hex")


@lru_cache(maxsize=1 << 16)
def check_log_path(rel: str) -> str:
    """A path under the session's logs/ folder, with '/' separators and no way out of it. Cached: a listing checks
    each archived file's path once per segment (44k segments of 600 files at the end of a 1M-task session)."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise InvalidName(f"invalid log path {rel!r}: expected a relative path under logs/ without '..'")
    return rel


@dataclass(frozen=True, order=True)
class SessionRef:
    namespace: str
    cluster: str
    session: str

    def __post_init__(self) -> None:
        check_name(self.namespace, "namespace")
        check_name(self.cluster, "cluster name")
        check_session(self.session)

    @property
    def id(self) -> str:
        """The id used in URLs: stable, readable, and free of '/'."""
        return SESSION_ID_SEPARATOR.join((self.namespace, self.cluster, self.session))

    @classmethod
    def from_id(cls, session_id: str) -> SessionRef:
        parts = session_id.split(SESSION_ID_SEPARATOR)
        if len(parts) != 3:
            raise InvalidName(f"invalid session id {session_id!r}: expected 'namespace~cluster~session_...'")
        return cls(*parts)

    # --- keys ---------------------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return f"{VERSION_DIR}/clusters/{self.namespace}/{self.cluster}/{self.session}/"

    @property
    def index_key(self) -> str:
        return f"{VERSION_DIR}/index/{self.namespace}/{self.cluster}/{self.session}.json"

    @property
    def deleting_key(self) -> str:
        """Written by `rayhistory gc` before it unlists the session, removed once the session is gone."""
        return f"{DELETING_PREFIX}{self.namespace}/{self.cluster}/{self.session}.json"

    @property
    def manifest_key(self) -> str:
        return self.prefix + "manifest.json"

    @property
    def ended_key(self) -> str:
        return self.prefix + "ended.json"

    @property
    def nodes_prefix(self) -> str:
        return self.prefix + "nodes/"

    def compacted_prefix(self, version: int) -> str:
        """Query-ready tables derived from the session by a reader (a versioned cache, see FORMAT.md)."""
        return f"{self.prefix}{COMPACTED_DIR}c{version}/"

    def compacted_key(self, version: int, name: str) -> str:
        """A file of compacted/c{version}/: a table's file or its info document (archive/compacted.py)."""
        if not name or "/" in name:
            raise InvalidName(f"invalid compacted file name {name!r}: expected a file name without '/'")
        return self.compacted_prefix(version) + name

    def node(self, node_id: str) -> NodeRef:
        return NodeRef(self, check_node(node_id))


@dataclass(frozen=True, order=True)
class NodeRef:
    session: SessionRef
    node_id: str

    @property
    def prefix(self) -> str:
        return f"{self.session.nodes_prefix}{self.node_id}/"

    @property
    def node_key(self) -> str:
        return self.prefix + "node.json"

    @property
    def ended_key(self) -> str:
        return self.prefix + "ended.json"

    @property
    def files_key(self) -> str:
        """Where renamed files are recorded: a file's bytes stay archived under the path it first had."""
        return self.prefix + "files.json"

    @property
    def logs_prefix(self) -> str:
        return self.prefix + "logs/"

    def source_prefix(self, source: str) -> str:
        if source not in SOURCES:
            raise InvalidName(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
        return f"{self.prefix}{source}/"

    def segment_key(self, segment: LogSegment) -> str:
        return (
            f"{self.source_prefix(segment.source)}{segment.path}/"
            f"{segment.epoch:04d}-{segment.start:016d}-{segment.end:016d}.gz"
        )


@dataclass(frozen=True, order=True)
class LogSegment:
    """Bytes [start, end) of generation `epoch` of the file {source}/{path}. The one empty range, [0, 0), is the
    segment of a file that exists but is empty (Ray lists such files, so the archive must hold them)."""

    path: str
    epoch: int
    start: int
    end: int
    source: str = "logs"

    def __post_init__(self) -> None:
        check_log_path(self.path)
        empty = self.start == self.end == 0
        if not (empty or 0 <= self.start < self.end) or not (0 <= self.epoch <= 9999) or self.end >= 10**16:
            raise InvalidName(f"invalid segment range {self.epoch}:{self.start}-{self.end} for {self.path}")


INDEX_PREFIX = f"{VERSION_DIR}/index/"
DELETING_PREFIX = f"{VERSION_DIR}/deleting/"


def index_prefix(namespace: str | None = None, cluster: str | None = None) -> str:
    if namespace is None:
        return INDEX_PREFIX
    if cluster is None:
        return f"{INDEX_PREFIX}{check_name(namespace, 'namespace')}/"
    return f"{INDEX_PREFIX}{check_name(namespace, 'namespace')}/{check_name(cluster, 'cluster name')}/"


def parse_index_key(key: str) -> SessionRef:
    return _parse_session_json(key, INDEX_PREFIX, "an index key")


def parse_deleting_key(key: str) -> SessionRef:
    return _parse_session_json(key, DELETING_PREFIX, "a deletion marker")


def _parse_session_json(key: str, prefix: str, what: str) -> SessionRef:
    if not key.startswith(prefix) or not key.endswith(".json"):
        raise InvalidName(f"not {what}: {key!r}")
    parts = key[len(prefix) : -len(".json")].split("/")
    if len(parts) != 3:
        raise InvalidName(f"not {what}: {key!r}")
    return SessionRef(*parts)


def parse_compacted_key(key: str, session: SessionRef) -> tuple[int, str] | None:
    """(version, file name) of a key under the session's compacted/ folder, or None for other keys."""
    if not key.startswith(session.prefix + COMPACTED_DIR):
        return None
    m = _COMPACTED.match(key[len(session.prefix) + len(COMPACTED_DIR) :])
    return (int(m.group(1)), m.group(2)) if m else None


def parse_node_key(key: str, session: SessionRef) -> str | None:
    """The node id of any key under the session's nodes/ folder, or None for other keys."""
    if not key.startswith(session.nodes_prefix):
        return None
    node_id = key[len(session.nodes_prefix) :].split("/", 1)[0]
    return check_node(node_id)


def parse_segment_key(key: str, node: NodeRef, source: str = "logs") -> LogSegment:
    prefix = node.source_prefix(source)
    if not key.startswith(prefix):
        raise InvalidName(f"not a {source} segment of node {node.node_id}: {key!r}")
    rel, _, name = key[len(prefix) :].rpartition("/")
    m = _SEGMENT.match(name)
    if not rel or not m:
        raise InvalidName(f"not a segment key: {key!r}")
    return LogSegment(rel, int(m.group(1)), int(m.group(2)), int(m.group(3)), source)
