"""The collector's SLS outputs, each on when its store is named: log lines (`--sls-logstore`), Ray's events
(`--sls-events-logstore`) and metrics (`--sls-metricstore`). Built per session by collector/topology.py."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from archive import metrics_blocks
from archive import sls_schema as schema
from archive.layout import SessionRef
from collector.components import Sink
from collector.errors import InvalidSettings
from collector.settings import CollectorSettings

CHECKPOINTS = {
    "logs": "sls-checkpoint.json",
    "events": "sls-events-checkpoint.json",
    "metrics": "sls-metrics-checkpoint.json",
}


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str
    security_token: str = ""  # STS (RRSA on ACK)


def credentials(environ: dict[str, str] | None = None) -> Credentials:
    """From ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET (and _SECURITY_TOKEN); raises InvalidSettings naming what is missing."""
    env = os.environ if environ is None else environ
    key_id, secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", ""), env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
    missing = [
        v for v, ok in (("ALIBABA_CLOUD_ACCESS_KEY_ID", key_id), ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)) if not ok
    ]
    if missing:
        raise InvalidSettings(f"SLS is configured (--sls-endpoint) but {', '.join(missing)} is missing")
    return Credentials(key_id, secret, env.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""))


def build(
    settings: CollectorSettings,
    ref: SessionRef,
    node_id: str,
    logs_dir: Path,
    folders: dict[str, Path],
    state: Path,
) -> list[Sink]:
    """The SLS sinks the settings turn on (none without --sls-endpoint)."""
    if not settings.sls_endpoint:
        return []
    creds = credentials()
    sinks: list[Sink] = []
    tags = {
        schema.TAG_CLUSTER: ref.cluster,
        schema.TAG_NAMESPACE: ref.namespace,
        schema.TAG_SESSION: ref.session,
        schema.TAG_NODE: node_id,
    }
    if settings.sls_logstore:
        from collector.sinks.sls import SlsLogsSink, config_from_settings  # pyarrow: only when log lines are sent

        config = config_from_settings(settings, state / CHECKPOINTS["logs"], ref.session)
        sinks.append(SlsLogsSink(config, node_id, logs_dir))
    if settings.sls_events_logstore:
        from collector.sinks.sls.client import make_client
        from collector.sinks.sls.events import SlsEventsSink

        client = make_client(
            settings.sls_endpoint,
            creds.access_key_id,
            creds.access_key_secret,
            node_id,
            30.0,
            settings.sls_proxy or None,
            creds.security_token,
        )
        sinks.append(
            SlsEventsSink(
                client,
                settings.sls_project,
                settings.sls_events_logstore,
                tags,
                {k: v for k, v in folders.items() if k in SlsEventsSink.inputs},
                state / CHECKPOINTS["events"],
                node_id,
            )
        )
    if settings.sls_metricstore:
        from collector.sinks.sls import remote_write
        from collector.sinks.sls.metrics import SlsMetricsSink

        sinks.append(
            SlsMetricsSink(
                schema.remote_write_url(settings.sls_endpoint, settings.sls_project, settings.sls_metricstore),
                remote_write.basic_auth(creds.access_key_id, creds.access_key_secret, creds.security_token),
                {metrics_blocks.SOURCE: folders[metrics_blocks.SOURCE]},
                state / CHECKPOINTS["metrics"],
                node_id,
                proxy=settings.sls_proxy or None,
            )
        )
    return sinks
