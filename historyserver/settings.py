"""The history server's settings, declared once with defaults and help text: each is a flag of `rayhistory serve`
and a RAYHISTORY_<NAME> variable (archive/settings.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from archive.settings import Settings, SettingsError, parse_duration, sls_field


@dataclass
class ServerSettings(Settings):
    command = "rayhistory serve"

    archive: str = field(metadata={"help": "archive URL: a directory, file://PATH or s3://bucket/prefix"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (use 0.0.0.0 inside a pod)"})
    port: int = field(default=8080, metadata={"help": "port to listen on"})
    cache_dir: str = field(
        default_factory=lambda: str(Path.home() / ".cache" / "rayhistory"),
        metadata={"help": "where compacted tables are cached (throw-away; default ~/.cache/rayhistory)"},
    )
    catalog_ttl: float = field(default=5.0, metadata={"help": "seconds a listing of the archive's index is reused"})
    compact_on_end: bool = field(
        default=True,
        metadata={
            "help": "compact a session in the background as soon as the catalog sees it end, so that its "
            "first visitor does not wait"
        },
    )
    running_refresh: float = field(
        default=10.0, metadata={"help": "seconds before a still-running session's tables are rebuilt"}
    )
    fold_running: bool = field(
        default=True,
        metadata={
            "help": "fold a running session's task events as its collectors archive them, batch by batch, so "
            "that less is left to build when it ends"
        },
    )
    fold_interval: float = field(
        default=5.0, metadata={"help": "seconds between two folds of each running session's newly archived events"}
    )
    grafana_url: str = field(
        default="",
        metadata={
            "help": "the Grafana users open (e.g. http://grafana:3000), with a Prometheus datasource on this "
            "server's /prometheus/; Ray's Metrics tab then embeds its panels for archived sessions "
            "(empty: off)"
        },
    )
    grafana_datasource: str = field(
        default="Rayhistory archive",
        metadata={"help": "name of that datasource in Grafana"},
    )
    prometheus_url: str = field(
        default="",
        metadata={
            "help": "the live clusters' Prometheus (e.g. http://prometheus:9090, or ACK managed Prometheus's HTTP "
            "API URL): a running session's charts read it, marked live, instead of the archive (empty: off)"
        },
    )
    prometheus_authorization_file: str = field(
        default="",
        metadata={
            "help": "with --prometheus-url: a file holding the Authorization header sent to it (e.g. `Bearer "
            "<token>`; ACK managed Prometheus V1: its token; V2: `Basic <base64 of AccessKeyID:AccessKeySecret>`), "
            "read again at every query, so a mounted Secret can rotate (empty: none)"
        },
    )
    grafana_live_datasource: str = field(
        default="Prometheus",
        metadata={
            "help": "with --grafana-url and --prometheus-url: name of the live Prometheus's datasource in Grafana, "
            "which a running session's panels use (Ray's own default name)"
        },
    )
    query_max_samples: int = field(
        default=50_000_000,
        metadata={
            "help": "samples one PromQL query may hold in memory, as Prometheus's --query.max-samples; more "
            "answers 422 execution"
        },
    )
    query_timeout: str = field(
        default="2m",
        metadata={
            "help": "how long one PromQL query may run (a Prometheus duration such as 2m or 90s, or seconds), "
            "as Prometheus's --query.timeout; longer answers 503 timeout"
        },
    )
    query_max_sessions: int = field(
        default=100,
        metadata={
            "help": "sessions one PromQL query over the whole archive or a cluster may read; more answers 422 "
            "naming the matchers that narrow it"
        },
    )
    max_concurrent_queries: int = field(
        default=4,
        metadata={
            "help": "PromQL queries evaluated at once; others wait up to --queue-wait, then get 503 with Retry-After"
        },
    )
    max_concurrent_searches: int = field(
        default=2,
        metadata={
            "help": "log searches run at once (each reads up to the sessions' log tables); others wait up to "
            "--queue-wait, then get 503 with Retry-After"
        },
    )
    max_concurrent_compactions: int = field(
        default=1,
        metadata={
            "help": "sessions compacted at once (each takes up to ~1 GB); others wait up to --queue-wait, "
            "then get 503 with Retry-After"
        },
    )
    max_concurrent_large: int = field(
        default=1,
        metadata={
            "help": "large answers built at once (task pages over 1,000 rows, trace downloads, timelines); "
            "others wait up to --queue-wait, then get 503 with Retry-After"
        },
    )
    queue_wait: float = field(
        default=10.0,
        metadata={"help": "seconds a heavy request (a query, a compaction) waits for a free slot before 503"},
    )

    auth: str = field(
        default="none",
        metadata={
            "help": "who may use the server: none (only on a loopback address unless --insecure-no-auth), "
            "token (--auth-token-file; browsers log in at /login) or proxy (user and groups from "
            "headers set by an authenticating proxy such as oauth2-proxy)",
            "choices": ("none", "token", "proxy"),
        },
    )
    insecure_no_auth: bool = field(
        default=False,
        metadata={
            "help": "allow --auth none on an address other machines can reach (only when something in front "
            "of the server authenticates every request)"
        },
    )
    auth_token_file: str = field(
        default="",
        metadata={
            "help": '--auth token: a file of token,user,uid[,"group1,group2"] lines, the format of '
            "kube-apiserver's --token-auth-file"
        },
    )
    auth_cookie_max_age: int = field(
        default=43200,
        metadata={"help": "--auth token: seconds the login cookie of a browser stays valid"},
    )
    auth_user_header: str = field(
        default="X-Forwarded-User",
        metadata={"help": "--auth proxy: the header naming the user"},
    )
    auth_groups_header: str = field(
        default="X-Forwarded-Groups",
        metadata={"help": "--auth proxy: the header listing the user's groups, comma-separated"},
    )
    auth_trusted_proxies: str = field(
        default="127.0.0.1/32,::1/128",
        metadata={
            "help": "--auth proxy: comma-separated CIDRs of the proxy; the user headers are believed only "
            "from these socket peers (default loopback: a proxy in the same pod)"
        },
    )
    authz: str = field(
        default="none",
        metadata={
            "help": "which namespaces a user may see: none (all), file (--authz-file) or kubernetes (those "
            "where Kubernetes lets them get rayclusters.ray.io, by SubjectAccessReview)",
            "choices": ("none", "file", "kubernetes"),
        },
    )
    authz_file: str = field(
        default="",
        metadata={
            "help": "--authz file: YAML mapping users and groups to namespaces, e.g. users: {alice: "
            '[team-a]} and groups: {platform: ["*"]}'
        },
    )
    authz_cache_ttl: float = field(
        default=30.0,
        metadata={"help": "--authz kubernetes: seconds a SubjectAccessReview's answer is reused"},
    )

    kubernetes: str = field(
        default="",
        metadata={
            "help": "how to reach the Kubernetes API for the live clusters list and --authz kubernetes: off, "
            "in-cluster, kubeconfig or kubeconfig:PATH (empty: in-cluster inside a pod, else off)"
        },
    )
    kubernetes_namespace: str = field(
        default="",
        metadata={"help": "comma-separated namespaces whose live clusters are listed (empty: all)"},
    )
    dashboard_url_template: str = field(
        default="http://{service}.{namespace}.svc:{port}",
        metadata={"help": "the live Ray dashboard link of a RayCluster, from its head service, namespace and port"},
    )
    metrics_cache_mb: int = field(
        default=4,
        metadata={
            "help": "MiB of decoded metric samples kept for PromQL queries (an LRU shared by all sessions; a day of "
            "50 nodes decodes to ~350 MiB, decoded again from the Parquet files when not kept)"
        },
    )
    compaction_memory: str = field(
        default="600MB",
        metadata={
            "help": "DuckDB's memory while compacting one session (e.g. 600MB, 2GB); larger sessions spill "
            "to the cache directory"
        },
    )
    sls_endpoint: str = sls_field("sls_endpoint", "whose logstore log search reads instead of the archive")
    sls_project: str = sls_field("sls_project")
    sls_logstore: str = sls_field("sls_logstore", "to search (the one the collectors stream log lines to)")
    sls_proxy: str = sls_field("sls_proxy")
    sls_search_timeout: float = field(
        default=30.0,
        metadata={
            "help": "seconds one SLS search may take, retries of an Incomplete answer included (then it answers "
            "what it has, marked incomplete)"
        },
    )

    def check(self) -> None:
        for name in (
            "metrics_cache_mb",
            "query_max_samples",
            "query_max_sessions",
            "max_concurrent_queries",
            "max_concurrent_searches",
            "max_concurrent_compactions",
            "max_concurrent_large",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", self.compaction_memory.strip()):
            raise SettingsError(
                f"--compaction-memory: {self.compaction_memory!r} is not a size; give e.g. 600MB or 2GB"
            )
        if not re.fullmatch(r"(off|in-cluster|kubeconfig(:.+)?)?", self.kubernetes.strip()):
            raise SettingsError(
                f"--kubernetes: {self.kubernetes!r} is not one of off, in-cluster, kubeconfig or kubeconfig:PATH"
            )
        if self.sls_endpoint and not (self.sls_project and self.sls_logstore):
            raise SettingsError(
                "--sls-endpoint is set: give --sls-project and --sls-logstore too (the logstore to search)"
            )
        if self.fold_interval <= 0:
            raise SettingsError(f"--fold-interval must be positive, got {self.fold_interval}")
        if self.sls_search_timeout <= 0:
            raise SettingsError(f"--sls-search-timeout must be positive, got {self.sls_search_timeout}")
        if self.prometheus_url and not re.match(r"https?://[^/\s]+", self.prometheus_url):
            raise SettingsError(
                f"--prometheus-url: {self.prometheus_url!r} is not an http(s) URL; give e.g. http://prometheus:9090"
            )
        if self.prometheus_authorization_file:
            if not self.prometheus_url:
                raise SettingsError(
                    "--prometheus-authorization-file is set: give --prometheus-url too (where to send it)"
                )
            from historyserver.live.prometheus import read_authorization

            read_authorization(self.prometheus_authorization_file, SettingsError)
        if self.queue_wait < 0:
            raise SettingsError(f"--queue-wait must not be negative, got {self.queue_wait}")
        try:
            timeout = parse_duration(self.query_timeout)
        except ValueError as e:
            raise SettingsError(f"--query-timeout: {e}") from None
        if timeout <= 0:
            raise SettingsError(f"--query-timeout must be positive, got {self.query_timeout!r}")

    @property
    def query_timeout_s(self) -> float:
        return parse_duration(self.query_timeout)
