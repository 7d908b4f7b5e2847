"""The collector's SLS outputs, each on when its store is named: log lines (`--sls-logstore`), Ray's events
(`--sls-events-logstore`) and metrics (`--sls-metricstore`). Built per session by collector/topology.py."""

from __future__ import annotations

from pathlib import Path

from archive import credentials as archive_credentials
from archive import metrics_blocks
from archive import sls_schema as schema
from archive.credentials import CredentialSource
from archive.layout import SessionRef
from collector.components import Sink
from collector.errors import InvalidSettings
from collector.settings import CollectorSettings

CHECKPOINTS = {
    "logs": "sls-checkpoint.json",
    "events": "sls-events-checkpoint.json",
    "metrics": "sls-metrics-checkpoint.json",
}


def credentials(environ: dict[str, str] | None = None) -> CredentialSource:
    """RRSA or AccessKeys from the environment (archive/credentials.py); raises InvalidSettings naming what is
    missing."""
    try:
        source = archive_credentials.from_environment(environ)
    except archive_credentials.CredentialsError as e:
        raise InvalidSettings(f"SLS is configured (--sls-endpoint) but {e}") from None
    if source is None:
        raise InvalidSettings(
            "SLS is configured (--sls-endpoint) but no credentials are set: "
            f"{' and '.join(archive_credentials.STATIC_VARIABLES)}, or RRSA's "
            f"{', '.join(archive_credentials.RRSA_VARIABLES)}"
        )
    return source


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
        from collector.sinks.sls import SlsLogsSink, config_from_settings

        config = config_from_settings(settings, state / CHECKPOINTS["logs"], ref.session)
        sinks.append(SlsLogsSink(config, node_id, logs_dir))
    if settings.sls_events_logstore:
        from collector.sinks.sls.events import SlsEventsSink
        from collector.sinks.sls.transport import make_client

        client = make_client(settings.sls_endpoint, creds, 30.0, settings.sls_proxy or None)
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
                remote_write.authorization(creds),
                {metrics_blocks.SOURCE: folders[metrics_blocks.SOURCE]},
                state / CHECKPOINTS["metrics"],
                node_id,
                proxy=settings.sls_proxy or None,
            )
        )
    return sinks
