"""The per-session manifest, the node record and the end markers: JSON documents described in FORMAT.md."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from archive.layout import FORMAT_VERSION, SessionRef

RUNNING = "running"
ENDED = "ended"


@dataclass
class NodeRecord:
    node_id: str
    is_head: bool = False
    ip: str | None = None
    hostname: str | None = None
    session_dir: str | None = None  # Ray's path, as the node saw it: Ray's APIs show paths under it
    ray_version: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def to_json(self) -> bytes:
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> NodeRecord:
        return cls(**_known(cls, json.loads(data)))


@dataclass
class SessionManifest:
    namespace: str
    cluster: str
    session_name: str
    ray_version: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    status: str = RUNNING
    ended_by: str | None = None  # "signal:SIGTERM", "once", ... : how the collector saw the session end
    last_seen_ms: int | None = None  # the head collector's heartbeat: a stale running session is unfinished
    nodes: list[NodeRecord] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    @property
    def ref(self) -> SessionRef:
        return SessionRef(self.namespace, self.cluster, self.session_name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["id"] = self.ref.id
        return d

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> SessionManifest:
        raw = json.loads(data)
        raw["nodes"] = [NodeRecord(**_known(NodeRecord, n)) for n in raw.get("nodes", [])]
        return cls(**_known(cls, raw))


def _known(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    # Newer writers may add fields; readers of the same format version ignore what they do not know.
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


def end_marker(end_ms: int, ended_by: str) -> bytes:
    return json.dumps({"format_version": FORMAT_VERSION, "end_ms": end_ms, "ended_by": ended_by}).encode()
