"""The SLS sink: the session's log lines, parsed into records, streamed to an Alibaba Cloud SLS logstore.

    transport.py   PutLogs over the standard library, signed as the SDK signs it, one attempt per request (SlsError)
    client.py      the SDK's client, one attempt per request (`rayhistory sls init`, tests)
    wire.py        records -> LogGroup entries (byte-identical to the SDK's message)
    (archive/log_records.py: Ray's log line formats -> records, LogLineParser, the definition)
    lines.py       the common case of LogLineParser, parsed and encoded in one pass
    checkpoint.py  per file: generation, inode, acknowledged offset
    sink.py        the engine: a reader and a sender thread, backpressure, rate limit, retries

`SlsLogsSink` is the topology's face of the engine (collector/topology.py); it takes only the `logs` source.

The events and metrics outputs (issue 14), each its own sink on one shared engine:

    shipper.py       whole lines of growing files, at least once: retries, backoff, checkpoint by inode
    events.py        Ray's events (export files or HTTP spool) -> the events logstore, one log per event
    ray_events.py    both event paths flattened to the same keys (archive/sls_schema.py)
    loggroup.py      a LogGroup from (key, value) pairs, and the protobuf field encoder every sink shares
    metrics.py       the metrics spool -> a MetricStore by Prometheus remote write
    remote_write.py  WriteRequest protobuf by hand, snappy (cramjam), BasicAuth
    outputs.py       which outputs the settings turn on

The collector's SLS path imports no SDK, pyarrow or numpy (a sidecar's memory: docs/benchmarks.md).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archive import credentials
from collector.components import FileState, Listing
from collector.errors import InvalidSettings
from collector.settings import CollectorSettings
from collector.stats import ComponentStats

if TYPE_CHECKING:
    from collector.sinks.sls.sink import SlsConfig, SlsSink

# Imported on first use (PEP 562): the SDK loads only for what uses it (sls init, tests), the engine only for log
# lines.
_LAZY = {
    "SlsError": "transport",
    "_OneAttemptClient": "client",
    "SlsConfig": "sink",
    "SlsCounters": "sink",
    "SlsSink": "sink",
    "file_id": "sink",
    "hash_key": "sink",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "SlsConfig",
    "SlsCounters",
    "SlsError",
    "SlsLogsSink",
    "SlsSink",
    "_OneAttemptClient",
    "file_id",
    "hash_key",
    "config_from_settings",
]


def config_from_settings(settings: CollectorSettings, checkpoint_path: Path, session: str = "") -> SlsConfig:
    """The SLS settings, with the credentials from the environment (RRSA or AccessKeys, archive/credentials.py);
    raises InvalidSettings naming what is missing."""
    missing = [f"--{k.replace('_', '-')}" for k in ("sls_project", "sls_logstore") if not getattr(settings, k)]
    try:
        source = credentials.from_environment()
    except credentials.CredentialsError as e:
        raise InvalidSettings(f"SLS is configured (--sls-endpoint) but {e}") from None
    if source is None:
        missing.append(
            f"credentials ({' and '.join(credentials.STATIC_VARIABLES)}, or RRSA's "
            f"{', '.join(credentials.RRSA_VARIABLES)})"
        )
    if missing:
        raise InvalidSettings("SLS is configured (--sls-endpoint) but " + ", ".join(missing) + " is missing")
    from collector.sinks.sls.sink import SlsConfig

    return SlsConfig(
        endpoint=settings.sls_endpoint,
        project=settings.sls_project,
        logstore=settings.sls_logstore,
        access_key_id="",
        access_key_secret="",
        credentials=source,
        checkpoint_path=str(checkpoint_path),
        proxy=settings.sls_proxy or None,
        cluster=settings.cluster,
        namespace=settings.namespace,
        session=session,
    )


class SlsLogsSink:
    """Never in the archive's way: `offer` only notes sizes, the engine reads the files at its own pace."""

    name = "sls"
    inputs = frozenset({"logs"})

    def __init__(self, config: SlsConfig, node_id: str, logs_dir: Path) -> None:
        self.config, self.node_id, self.logs_dir = config, node_id, logs_dir
        self.engine: SlsSink | None = None

    def open(self) -> None:
        if self.engine is None:
            from collector.sinks.sls.sink import SlsSink

            self.engine = SlsSink(self.config, self.node_id, self.logs_dir)

    def offer(self, source: str, listing: Listing, final: bool) -> int:
        assert self.engine is not None
        self.engine.offer(listing.files)
        return 0  # pending lines are the engine's to send, by close()'s deadline

    def holds(self, source: str, f: FileState) -> bool:
        return True  # it reads Ray's own files, which are never released

    def flush(self) -> None:
        pass  # the engine checkpoints after acknowledgements

    def close(self, timeout: float) -> bool:
        return self.engine.close(timeout) if self.engine is not None else True

    def stats(self) -> ComponentStats:
        if self.engine is None:
            return ComponentStats(errors={"request": 0, "quota": 0})
        s = self.engine.stats()
        return ComponentStats(
            received=s.records,
            received_bytes=s.bytes_read,
            sent=s.lines_sent,
            sent_bytes=s.bytes_sent,
            dropped=s.dropped,
            retries=s.retries,
            errors={"request": s.errors, "quota": s.throttled},
            lag_bytes=s.lag_bytes,
        )
