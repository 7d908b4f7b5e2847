"""`rayhistory sls init`: create the SLS resources the collector writes to, and their indexes, idempotently.

    rayhistory sls init --endpoint cn-hangzhou.log.aliyuncs.com --project P --logstore ray-logs \\
        [--events-logstore ray-events] [--metricstore ray-metrics] [--ttl 30] [--shards 2] [--dry-run]

What is missing is created: the logstores with the indexes of archive/sls_schema.py (log search; SQL over events),
and the MetricStore. An existing index is compared with ours: the difference is printed and the index updated
(keys of its own that ours does not name are kept). A store of the wrong kind (a logstore where a MetricStore is
wanted, or the reverse) is an error, never replaced. The project must exist. Credentials as the collector's:
ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN).

Exit codes: 0 done (or, with --dry-run, planned); 1 SLS refused a call midway (run it again after fixing what
the message says: every step is idempotent); 2 bad arguments or credentials.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archive import sls_schema as schema
from archive.settings import Settings, SettingsError


@dataclass
class SlsInitSettings(Settings):
    command = "rayhistory sls init"

    endpoint: str = field(
        metadata={
            "help": "SLS endpoint, e.g. cn-hangzhou.log.aliyuncs.com (https:// or http:// allowed)",
            "env": "RAYHISTORY_SLS_ENDPOINT",
        }
    )
    project: str = field(metadata={"help": "SLS project (it must exist)", "env": "RAYHISTORY_SLS_PROJECT"})
    logstore: str = field(
        metadata={"help": "logstore for log lines (the collector's --sls-logstore)", "env": "RAYHISTORY_SLS_LOGSTORE"}
    )
    events_logstore: str = field(
        default="",
        metadata={
            "help": "logstore for Ray's events (the collector's --sls-events-logstore); empty: none",
            "env": "RAYHISTORY_SLS_EVENTS_LOGSTORE",
        },
    )
    metricstore: str = field(
        default="",
        metadata={
            "help": "MetricStore for metrics (the collector's --sls-metricstore); empty: none",
            "env": "RAYHISTORY_SLS_METRICSTORE",
        },
    )
    ttl: int = field(default=30, metadata={"help": "days SLS keeps data, for the stores this creates (1-3650)"})
    shards: int = field(default=2, metadata={"help": "shards of the stores this creates"})
    proxy: str = field(
        default="", metadata={"help": "HTTP proxy for SLS requests (optional)", "env": "RAYHISTORY_SLS_PROXY"}
    )
    dry_run: bool = field(default=False, metadata={"help": "print what would be created or changed, change nothing"})

    def check(self) -> None:
        if not 1 <= self.ttl <= 3650:
            raise SettingsError(f"--ttl must be from 1 to 3650 days, got {self.ttl}")
        if not 1 <= self.shards <= 256:
            raise SettingsError(f"--shards must be from 1 to 256, got {self.shards}")
        names = [n for n in (self.logstore, self.events_logstore, self.metricstore) if n]
        if len(set(names)) != len(names):
            raise SettingsError("--logstore, --events-logstore and --metricstore must name different stores")


class InitFailed(Exception):
    pass


@dataclass
class Initializer:
    client: Any  # collector.sinks.sls.client._OneAttemptClient
    settings: SlsInitSettings
    say: Callable[[str], None] = print
    changes: list[str] = field(default_factory=list)

    def run(self) -> None:
        s = self.settings
        self.logstore(s.logstore, schema.logs_index(), "log lines")
        if s.events_logstore:
            self.logstore(s.events_logstore, schema.events_index(), "events")
        if s.metricstore:
            self.metricstore(s.metricstore)

    def _meta(self, name: str) -> dict[str, Any] | None:
        from collector.sinks.sls.client import SlsError

        try:
            response = self.client.get_logstore(self.settings.project, name)
        except SlsError as e:
            if e.code == "LogStoreNotExist":
                return None
            raise
        return dict(response.get_body())

    def _do(self, what: str, action: Callable[[], object]) -> None:
        self.changes.append(what)
        self.say(f"{'would ' if self.settings.dry_run else ''}{what}")
        if not self.settings.dry_run:
            action()

    def logstore(self, name: str, index: dict[str, Any], holds: str) -> None:
        s = self.settings
        meta = self._meta(name)
        if meta is not None and meta.get("telemetryType") == "Metrics":
            raise InitFailed(f"{name} is a MetricStore; give a logstore for the {holds} (or another name)")
        if meta is None:
            self._do(
                f"create logstore {name} ({holds}, {s.ttl} days, {s.shards} shards)",
                lambda: self.client.create_logstore(s.project, name, ttl=s.ttl, shard_count=s.shards),
            )
            self._do(f"create the index of {name} ({len(index['keys'])} keys)", lambda: self._create_index(name, index))
            return
        self.say(f"logstore {name} exists")
        existing = self._index(name)
        if existing is None:
            self._do(f"create the index of {name} ({len(index['keys'])} keys)", lambda: self._create_index(name, index))
            return
        diff = schema.index_diff(existing, index)
        if not diff:
            self.say(f"the index of {name} is up to date")
            return
        for line in diff:
            self.say(f"  {line}")
        merged = schema.merged_index(existing, index)
        self._do(
            f"update the index of {name} ({len(diff)} change{'s' if len(diff) > 1 else ''})",
            lambda: self.client.update_index(s.project, name, schema.index_config(merged)),
        )

    def _index(self, name: str) -> dict[str, Any] | None:
        from collector.sinks.sls.client import SlsError

        try:
            return dict(self.client.get_index_config(self.settings.project, name).get_body())
        except SlsError as e:
            if e.code == "IndexConfigNotExist":
                return None
            raise

    def _create_index(self, name: str, index: dict[str, Any]) -> None:
        """A logstore just created may take a moment to be usable: LogStoreNotExist is retried briefly."""
        from collector.sinks.sls.client import SlsError

        for attempt in range(10):
            try:
                self.client.create_index(self.settings.project, name, schema.index_config(index))
                return
            except SlsError as e:
                if e.code != "LogStoreNotExist" or attempt == 9:
                    raise
                time.sleep(1)

    def metricstore(self, name: str) -> None:
        s = self.settings
        meta = self._meta(name)
        if meta is None:
            self._do(
                f"create MetricStore {name} ({s.ttl} days, {s.shards} shards)",
                lambda: self.client.create_metric_store(s.project, name, ttl=s.ttl, shard_count=s.shards),
            )
        elif meta.get("telemetryType") != "Metrics":
            raise InitFailed(f"{name} is a logstore, not a MetricStore; give another --metricstore name")
        else:
            self.say(f"MetricStore {name} exists")
        self.say(
            "Grafana: a Prometheus datasource at "
            f"{schema.prometheus_url(s.endpoint, s.project, name)} (BasicAuth: the AccessKey id and secret)"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sls_command", required=True)
    init = sub.add_parser("init", help="create the SLS logstores, MetricStore and indexes the collector writes to")
    SlsInitSettings.add_arguments(init)


def run(args: argparse.Namespace) -> int:
    from collector.errors import InvalidSettings

    try:
        settings = SlsInitSettings.load(args)
        from collector.sinks.sls.client import SlsError, make_client
        from collector.sinks.sls.outputs import credentials

        creds = credentials()
    except (SettingsError, InvalidSettings) as e:
        print(f"rayhistory sls init: {e}", file=sys.stderr)
        return 2
    client = make_client(
        settings.endpoint,
        creds.access_key_id,
        creds.access_key_secret,
        "rayhistory-sls-init",
        30.0,
        settings.proxy or None,
        creds.security_token,
    )
    init = Initializer(client, settings)
    try:
        init.run()
    except InitFailed as e:
        print(f"rayhistory sls init: {e}", file=sys.stderr)
        return 1
    except SlsError as e:
        hint = " (create the project first, in the console or with the SDK)" if e.code == "ProjectNotExist" else ""
        print(f"rayhistory sls init: {e}{hint}; nothing after this step was done", file=sys.stderr)
        return 1
    if not init.changes:
        print("nothing to do: everything exists and is up to date")
    return 0
