"""The history server's settings, declared once with defaults and help text."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServerSettings:
    archive: str = field(metadata={"help": "archive URL: a directory, file://PATH or s3://bucket/prefix"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (use 0.0.0.0 inside a pod)"})
    port: int = field(default=8080, metadata={"help": "port to listen on"})
    cache_dir: str = field(
        default_factory=lambda: os.environ.get("RAYHISTORY_CACHE_DIR", str(Path.home() / ".cache" / "rayhistory")),
        metadata={"help": "where compacted tables are cached (throw-away; default ~/.cache/rayhistory)"},
    )
    catalog_ttl: float = field(default=5.0, metadata={"help": "seconds a listing of the archive's index is reused"})
    compact_on_end: bool = field(
        default=True,
        metadata={"help": "compact a session in the background as soon as the catalog sees it end, so that its "
                          "first visitor does not wait"},
    )
    running_refresh: float = field(
        default=10.0, metadata={"help": "seconds before a still-running session's tables are rebuilt"}
    )
    grafana_url: str = field(
        default_factory=lambda: os.environ.get("RAYHISTORY_GRAFANA_URL", ""),
        metadata={"help": "the Grafana users open (e.g. http://grafana:3000), with a Prometheus datasource on this "
                          "server's /prometheus/; Ray's Metrics tab then embeds its panels for archived sessions "
                          "(default $RAYHISTORY_GRAFANA_URL; empty: off)"},
    )
    grafana_datasource: str = field(
        default_factory=lambda: os.environ.get("RAYHISTORY_GRAFANA_DATASOURCE", "Rayhistory archive"),
        metadata={"help": "name of that datasource in Grafana (default $RAYHISTORY_GRAFANA_DATASOURCE or "
                          "'Rayhistory archive')"},
    )
