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
    auth: str = field(
        default="none",
        metadata={"help": "who may use the server: none (only on a loopback address unless --insecure-no-auth), "
                          "token (--auth-token-file; browsers log in at /login) or proxy (user and groups from "
                          "headers set by an authenticating proxy such as oauth2-proxy)",
                  "choices": ("none", "token", "proxy")},
    )
    insecure_no_auth: bool = field(
        default=False,
        metadata={"help": "allow --auth none on an address other machines can reach (only when something in front "
                          "of the server authenticates every request)"},
    )
    auth_token_file: str = field(
        default="",
        metadata={"help": "--auth token: a file of token,user,uid[,\"group1,group2\"] lines, the format of "
                          "kube-apiserver's --token-auth-file"},
    )
    auth_cookie_max_age: int = field(
        default=43200, metadata={"help": "--auth token: seconds the login cookie of a browser stays valid"},
    )
    auth_user_header: str = field(
        default="X-Forwarded-User", metadata={"help": "--auth proxy: the header naming the user"},
    )
    auth_groups_header: str = field(
        default="X-Forwarded-Groups", metadata={"help": "--auth proxy: the header listing the user's groups, "
                                                        "comma-separated"},
    )
    auth_trusted_proxies: str = field(
        default="127.0.0.1/32,::1/128",
        metadata={"help": "--auth proxy: comma-separated CIDRs of the proxy; the user headers are believed only "
                          "from these socket peers (default loopback: a proxy in the same pod)"},
    )
    authz: str = field(
        default="none",
        metadata={"help": "which namespaces a user may see: none (all), file (--authz-file) or kubernetes (those "
                          "where Kubernetes lets them get rayclusters.ray.io, by SubjectAccessReview)",
                  "choices": ("none", "file", "kubernetes")},
    )
    authz_file: str = field(
        default="",
        metadata={"help": "--authz file: YAML mapping users and groups to namespaces, e.g. users: {alice: "
                          "[team-a]} and groups: {platform: [\"*\"]}"},
    )
    authz_cache_ttl: float = field(
        default=30.0, metadata={"help": "--authz kubernetes: seconds a SubjectAccessReview's answer is reused"},
    )
