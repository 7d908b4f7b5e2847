"""Ray's events into an SLS logstore (collector/sinks/sls/events.py) through the real SDK's transport, against
the SLS test server (no SLS emulator exists; tests/servers/sls.py): both of Ray's paths flattened to the same keys,
the LogGroup bytes equal to the SDK's, delivery through errors, dedup keys, tags, and the settings that switch it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from archive import sls_schema as schema
from archive.credentials import Credentials, StaticCredentials
from collector.components import Listing
from collector.sinks.sls import loggroup, ray_events
from collector.sinks.sls.events import SlsEventsSink
from collector.sinks.sls.transport import make_client
from collector.sources.session_dir import LogFile
from tests.servers.sls import SlsServer, running_sls

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ray-2.60"
NODE = "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40"
TAGS = {"cluster": "c", "namespace": "ns", "session": "session_x", "node_id": NODE}


def export_lines() -> list[bytes]:
    text = (REFERENCE / "export_events" / "export_event_samples.jsonl.txt").read_text()
    return [l.encode() for l in text.splitlines() if l.strip() and not l.startswith("#")]


def http_lines() -> list[bytes]:
    out = []
    for name in ("one_task_all_events.json", "one_event_per_type.json"):
        data = json.loads((REFERENCE / "ray_events_http" / name).read_text())
        events = data["events"]
        events = events.values() if isinstance(events, dict) else [e["event"] for e in events]
        out += [json.dumps(e).encode() for e in events]
    return out


def listing(folder: Path) -> Listing:
    files = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            files.append(LogFile(p.relative_to(folder).as_posix(), st.st_size, st.st_ino, st.st_mtime_ns))
    return Listing(files)


def sink_for(server: SlsServer, logs: Path, spool: Path, tmp_path: Path) -> SlsEventsSink:
    keys = StaticCredentials(Credentials(server.access_key_id, server.access_key_secret))
    client = make_client(server.endpoint, keys, 10, server.proxy)  # the collector's PutLogs, without the SDK
    return SlsEventsSink(
        client,
        "rayhistory",
        "ray-events",
        TAGS,
        {"logs": logs, "ray_events": spool},
        tmp_path / "events-ck.json",
        NODE,
        backoff_initial=0.05,
        backoff_max=0.2,
        checkpoint_interval=0.05,
    )


@pytest.fixture
def sls():
    with running_sls() as server:
        yield server


def test_loggroup_bytes_are_the_sdks():
    from aliyun.log.proto import LogGroupRaw

    contents = [("event_type", "TASK"), ("error_message", "héllo\nworld"), ("", "")]
    group = LogGroupRaw()
    log = group.Logs.add()
    log.Time, log.Time_ns = 1_795_636_996, 248_569_359
    for k, v in contents:
        c = log.Contents.add()
        c.Key, c.Value = k, v.encode()
    group.Topic, group.Source = schema.TOPIC_EVENTS, NODE
    for k, v in TAGS.items():
        t = group.LogTags.add()
        t.Key, t.Value = k, v
    ours = loggroup.log_group(
        [loggroup.log_entry(1_795_636_996_248_569_359, contents)], schema.TOPIC_EVENTS, NODE, list(TAGS.items())
    )
    assert ours == group.SerializeToString()


def test_both_paths_give_the_same_keys_ids_in_hex():
    export = [r for r in (ray_events.from_export(json.loads(l)) for l in export_lines()) if r]
    http = [r for r in (ray_events.from_http(json.loads(l)) for l in http_lines()) if r]
    assert {f["event_type"] for _, f in export} >= {"TASK", "ACTOR", "DRIVER_JOB", "SUBMISSION_JOB", "NODE"}
    assert {f["event_type"] for _, f in http} >= {"TASK", "ACTOR", "DRIVER_JOB", "NODE"}
    for _, f in export + http:
        assert set(f) - set(schema.EVENT_KEYS) <= {k for k in f if k.startswith(schema.EV_STATE_TS_PREFIX)}, f
        for key in ("task_id", "job_id", "actor_id", "node_id", "worker_id", "parent_task_id"):
            if key in f:
                assert f[key] == f[key].lower() and all(c in "0123456789abcdef" for c in f[key]), (key, f)
    # The same failed task, one from each path: the same keys and values where both know them.
    [(_, from_file)] = [r for r in export if r[1].get("func_name") == "boom" and r[1].get("state") == "FAILED"]
    ts, from_http = next(r for r in http if r[1].get("state") == "FAILED" and r[1]["event_type"] == "TASK")
    for key in ("event_type", "attempt", "job_id", "state", "error_type"):
        assert from_file[key] == from_http[key], key
    assert from_http["state_ms"] == from_http["ts_FAILED"] and int(from_http["state_ms"]) == ts // 1_000_000
    assert from_file["task_id"].endswith("01000000") and len(from_file["task_id"]) == 48
    # The export files write a submission's driver node in hex already: kept, not decoded again.
    [sub] = [f for _, f in export if f.get("submission_id") and f.get("node_id")]
    assert sub["node_id"] == "92856556e566d03eb409f0bed9b8a7d70d81b923586f0d658dd38908"


def test_placement_groups_where_ray_sends_them():
    """Ray 2.60 defines placement group RayEvents but its GCS does not send them (tests/placement_group_events.py
    writes them as the aggregator would): kept with their own event type, id in hex, name and state."""
    from tests.placement_group_events import KEPT_PG, REMOVED_PG, _pg_events

    rows = [f for _, f in (ray_events.from_http(e) for e in _pg_events())]
    assert {f["event_type"] for f in rows} == {"PLACEMENT_GROUP"}
    removed = [f for f in rows if f["placement_group_id"] == REMOVED_PG]
    assert [f.get("state") for f in removed if "state" in f][-2:] == ["REMOVED", "CREATED"]
    assert {f.get("placement_group_name") for f in rows if f["placement_group_id"] == KEPT_PG} >= {"pg_kept"}
    assert all(set(f) <= set(schema.EVENT_KEYS) | {k for k in f if k.startswith("ts_")} for f in rows)


def test_the_sink_sends_both_paths_once_each_with_tags_dedup_and_function_names(sls, tmp_path):
    logs, spool = tmp_path / "logs", tmp_path / "spool"
    (logs / "export_events").mkdir(parents=True)
    spool.mkdir()
    (logs / "export_events" / "event_EXPORT_TASK_42.log").write_bytes(b"\n".join(export_lines()) + b"\n")
    (logs / "raylet.out").write_bytes(b"not an event\n")
    (spool / "events-00000001.jsonl").write_bytes(b"\n".join(http_lines()) + b"\n")
    sls.fail_puts(500, times=2)
    sink = sink_for(sls, logs, spool, tmp_path)
    sink.open()
    sink.offer("logs", listing(logs), False)
    sink.offer("ray_events", listing(spool), False)
    assert sink.close(30)
    items = sls.items("ray-events")
    expected = len(export_lines()) + sum(1 for l in http_lines() if ray_events.from_http(json.loads(l)) is not None)
    assert len(items) == expected and len({x.contents[schema.DEDUP] for x in items}) == expected
    assert all(x.tags == TAGS and x.topic == schema.TOPIC_EVENTS for x in items)
    assert {x.contents["path"] for x in items} == {"export", "http"}
    # The HTTP path's FAILED lifecycle event names no function: the sink gives it the definition's.
    failed = Counter(x.contents.get("func_name") for x in items if x.contents.get("state") == "FAILED")
    assert None not in failed and failed["boom"] >= 2  # `* | SELECT func_name, count(*) WHERE state = 'FAILED' ...`
    http_failed = [x for x in items if x.contents["path"] == "http" and x.contents.get("state") == "FAILED"]
    assert http_failed and all(x.contents["ray_event_type"] == "TASK_LIFECYCLE_EVENT" for x in http_failed)
    stats = sink.stats()
    assert stats.sent == expected and stats.retries == 2 and stats.lag_bytes == 0 and stats.dropped == 0
    for f in listing(logs).files + listing(spool).files:
        assert sink.holds("ray_events" if "events-" in f.path else "logs", f)
    # Again from the checkpoint: nothing more is sent.
    again = sink_for(sls, logs, spool, tmp_path)
    again.open()
    again.offer("logs", listing(logs), False)
    again.offer("ray_events", listing(spool), False)
    assert again.close(30) and len(sls.items("ray-events")) == expected


def test_a_line_still_being_written_waits_and_unreadable_lines_are_counted(sls, tmp_path):
    logs, spool = tmp_path / "logs", tmp_path / "spool"
    (logs / "export_events").mkdir(parents=True)
    spool.mkdir()
    path = logs / "export_events" / "event_EXPORT_NODE.log"
    line = export_lines()[0]
    path.write_bytes(line + b"\n{not json\n" + line[:40])
    sink = sink_for(sls, logs, spool, tmp_path)
    sink.open()
    sink.offer("logs", listing(logs), False)
    assert sink.close(30)
    assert len(sls.items("ray-events")) == 1 and sink.stats().errors["unreadable"] == 1
    [f] = listing(logs).files
    assert not sink.holds("logs", f)  # the partial line is not sent, so the file is not held whole
    with path.open("ab") as fh:
        fh.write(line[40:] + b"\n")
    sink = sink_for(sls, logs, spool, tmp_path)
    sink.open()
    sink.offer("logs", listing(logs), False)
    assert sink.close(30)
    assert len(sls.items("ray-events")) == 2


def test_each_sls_output_is_switched_on_by_its_store_alone(tmp_path):
    from archive.settings import SettingsError
    from collector.settings import CollectorSettings

    base = dict(session_dir="s", archive="a", sls_endpoint="e", sls_project="p")
    for store in ("sls_logstore", "sls_events_logstore", "sls_metricstore"):
        CollectorSettings(**base, **{store: "x"})
        CollectorSettings(session_dir="s", archive="a", **{store: "x"})  # no endpoint: SLS stays off
        with pytest.raises(SettingsError, match="--sls-project"):
            CollectorSettings(session_dir="s", archive="a", sls_endpoint="e", **{store: "x"})
    with pytest.raises(SettingsError, match="nothing is sent to SLS"):
        CollectorSettings(**base)


def test_the_example_manifests_show_the_sls_settings_off_until_an_endpoint_is_given():
    from collector.settings import CollectorSettings
    from tests.deploy_manifests import collectors, ray_pod_templates, sample_env

    for where, _, template, docs in ray_pod_templates():
        (sidecar,) = collectors(template)
        env = sample_env(sidecar, docs)
        # the keys (or nothing, with RRSA) come from the Secret deploy/README.md has you create
        assert {"secretRef": {"name": "rayhistory-archive-credentials"}} in sidecar["envFrom"], where
        env = {**env, "RAYHISTORY_SESSION_DIR": "s", "RAYHISTORY_ARCHIVE": "a"}
        off = CollectorSettings.load({}, env)
        assert not off.sls_endpoint and off.sls_events_logstore and off.sls_metricstore, where
        on = CollectorSettings.load({}, {**env, "RAYHISTORY_SLS_ENDPOINT": "e", "RAYHISTORY_SLS_PROJECT": "p"})
        assert (on.sls_logstore, on.sls_events_logstore, on.sls_metricstore) == (
            "ray-logs",
            "ray-events",
            "ray-metrics",
        )


@pytest.mark.parametrize(
    "stores, sinks",
    [
        ({"sls_events_logstore": "ev"}, ["sls_events", "archive"]),
        ({"sls_metricstore": "m"}, ["sls_metrics", "archive"]),
        ({"sls_logstore": "l", "sls_metricstore": "m"}, ["sls", "sls_metrics", "archive"]),
    ],
)
def test_the_topology_has_exactly_the_outputs_named(tmp_path, monkeypatch, stores, sinks):
    from archive.layout import SessionRef
    from archive.manifest import NodeRecord
    from archive.storage.local import LocalStore
    from collector import topology
    from collector.settings import CollectorSettings
    from collector.sources.session_dir import SessionDir
    from tests.fake_session import NODE_ID, make_session

    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    session = SessionDir(make_session(tmp_path))
    settings = CollectorSettings(
        session_dir=str(session.path),
        archive=str(tmp_path / "a"),
        once=True,
        sls_endpoint="e",
        sls_project="p",
        **stores,
    )
    state = topology.SessionState.of(tmp_path / "state", settings, session)
    node = NodeRecord(node_id=NODE_ID, is_head=True)
    built = topology.build(
        settings, LocalStore(tmp_path / "a"), SessionRef("ns", "c", session.name), session, node, state
    )
    assert [s.name for s in built.sinks] == sinks


def test_sls_init_command_is_reachable_from_the_cli(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "sls", "init", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--events-logstore" in out.stdout and "--dry-run" in out.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "RAYHISTORY_"))}
    out = subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "sls", "init", "--endpoint", "e", "--project", "p", "--logstore", "l"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2 and "ALIBABA_CLOUD_ACCESS_KEY_ID" in out.stderr


def test_a_spool_file_on_a_reused_inode_is_a_new_file(sls, tmp_path):
    """A spool deletes the files every sink holds; the next file may get the deleted one's inode."""
    logs, spool = tmp_path / "logs", tmp_path / "spool"
    logs.mkdir()
    spool.mkdir()
    lines = http_lines()[:6]
    old = spool / "events-00000001.jsonl"
    old.write_bytes(b"\n".join(lines[:3]) + b"\n")
    sink = sink_for(sls, logs, spool, tmp_path)
    sink.open()
    sink.offer("ray_events", listing(spool), False)
    assert sink.close(30)
    inode = old.stat().st_ino
    old.rename(spool / "events-00000002.jsonl")  # the same inode under the next name: as a reuse would look
    (spool / "events-00000002.jsonl").write_bytes(b"\n".join(lines[3:]) + b"\n" * 40)  # longer than the first
    assert (spool / "events-00000002.jsonl").stat().st_ino == inode
    sink = sink_for(sls, logs, spool, tmp_path)
    sink.open()
    sink.offer("ray_events", listing(spool), False)
    assert sink.close(30)
    sent = [x.contents["event_id"] for x in sls.items("ray-events")]
    assert len(sent) == len({x.contents["__dedup__"] for x in sls.items("ray-events")})
    expected = [f["event_id"] for _, f in (r for r in (ray_events.from_http(json.loads(l)) for l in lines) if r)]
    assert sent == expected
