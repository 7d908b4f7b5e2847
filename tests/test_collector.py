"""The collector against a local archive: byte-exact copies, idempotent restarts, generations, bad input."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from archive import logs as archive_logs
from archive.errors import BackendUnavailable
from archive.layout import SessionRef
from archive.manifest import ENDED, SessionManifest
from archive.storage.local import LocalStore
from collector.service import Collector, FlushIncomplete
from collector.settings import CollectorSettings
from collector.sources.session_dir import NotARaySession, SessionDir
from tests.fake_session import NODE_ID, SESSION_NAME, make_session


class RecordingStore(LocalStore):
    """The real local store, recording every put; fails puts after `fail_after` of them when set."""

    def __init__(self, root, fail_after=None):
        super().__init__(root)
        self.puts: list[str] = []
        self.fail_after = fail_after

    def put(self, key, data):
        if self.fail_after is not None and len(self.puts) >= self.fail_after:
            raise BackendUnavailable(self.url, "injected outage")
        super().put(key, data)
        self.puts.append(key)


def collect_once(session, store, **kw):
    settings = CollectorSettings(
        session_dir=str(session), archive=store.url, cluster="c", namespace="ns", once=True, **kw
    )
    Collector(settings, store, SessionDir(session)).run()


def archived(store, path):
    node = SessionRef("ns", "c", SESSION_NAME).node(NODE_ID)
    return archive_logs.read_file(store, node, path)


def segment_keys(store):
    return [k for k in store.puts if "/logs/" in k]


def test_once_archives_every_file_and_marks_the_session_ended(tmp_path):
    session = make_session(tmp_path)
    (session / "logs" / "old").mkdir()
    (session / "logs" / "old" / "worker-aa-ffffffff-1.err").write_bytes(b"\xff\xfe not utf-8 \x1b[31mred\n")
    store = RecordingStore(tmp_path / "archive")
    collect_once(session, store)
    for path in ["raylet.out", "gcs_server.out", "events/event_GCS.log", "old/worker-aa-ffffffff-1.err"]:
        assert archived(store, path) == (session / "logs" / path).read_bytes()
    ref = SessionRef("ns", "c", SESSION_NAME)
    manifest = SessionManifest.from_json(store.get(ref.manifest_key))
    assert manifest.status == ENDED and manifest.ended_by == "once" and manifest.ray_version == "2.60.0"
    assert manifest.nodes[0].node_id == NODE_ID and manifest.nodes[0].is_head
    assert store.get(ref.index_key) == store.get(ref.manifest_key)
    assert store.exists(ref.ended_key)
    assert store.puts[-1] == ref.ended_key  # the end marker is the last thing written


def test_restart_resumes_without_duplicating_or_overwriting(tmp_path):
    session = make_session(tmp_path)
    log = session / "logs" / "raylet.out"
    store = RecordingStore(tmp_path / "archive")
    collect_once(session, store)
    first = segment_keys(store)
    with open(log, "ab") as f:
        f.write(b"a line appended after the first run\n" * 100)
    collect_once(session, store)  # a new collector: it only knows what the archive holds
    second = segment_keys(store)[len(first) :]
    assert second and not set(second) & set(first)
    assert all("/logs/raylet.out/" in k for k in second)  # only the grown file is shipped again
    assert archived(store, "raylet.out") == log.read_bytes()


def test_outage_mid_upload_loses_nothing(tmp_path):
    session = make_session(tmp_path)
    big = session / "logs" / "worker.out"
    big.write_bytes(b"".join(b"line %d\n" % i for i in range(200_000)))
    flaky = RecordingStore(tmp_path / "archive", fail_after=2)
    with pytest.raises(FlushIncomplete, match="did not finish"):
        collect_once(session, flaky, final_flush_deadline=1)
    ref = SessionRef("ns", "c", SESSION_NAME)
    assert not flaky.exists(ref.ended_key)  # not marked ended while bytes are missing
    healthy = RecordingStore(tmp_path / "archive")
    collect_once(session, healthy)
    assert archived(healthy, "worker.out") == big.read_bytes()
    assert not set(segment_keys(healthy)) & set(segment_keys(flaky))


def test_truncated_file_becomes_a_new_generation(tmp_path):
    session = make_session(tmp_path)
    log = session / "logs" / "raylet.out"
    store = RecordingStore(tmp_path / "archive")
    settings = CollectorSettings(session_dir=str(session), archive=store.url, cluster="c", namespace="ns", once=True)
    collector = Collector(settings, store, SessionDir(session))
    collector.start()
    collector.ship_once()
    old = log.read_bytes()
    log.write_bytes(b"new\n")
    collector.ship_once()
    node = SessionRef("ns", "c", SESSION_NAME).node(NODE_ID)
    assert archive_logs.read_file(store, node, "raylet.out") == b"new\n"
    assert archive_logs.read_file(store, node, "raylet.out", epoch=0) == old


def test_missing_and_foreign_directories_are_refused(tmp_path):
    with pytest.raises(NotARaySession, match="does not exist"):
        SessionDir(tmp_path / "nope")
    (tmp_path / "photos").mkdir()
    with pytest.raises(NotARaySession, match="not a Ray session directory"):
        SessionDir(tmp_path / "photos")


def _cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "collect", *args], capture_output=True, text=True, timeout=60, **kw
    )


def test_cli_bad_session_dir_is_one_clear_line(tmp_path):
    out = _cli("--session-dir", str(tmp_path / "nope"), "--archive", str(tmp_path / "a"), "--wait-for-session", "0")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "does not exist" in out.stderr


def test_cli_waits_for_a_session_that_ray_has_not_created_yet(tmp_path):
    """A sidecar may start before Ray: with --wait-for-session it waits, then archives the session."""
    base = tmp_path / "ray"
    base.mkdir()
    archive = tmp_path / "archive"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rayhistory.cli",
            "collect",
            "--session-dir",
            str(base / SESSION_NAME),
            "--archive",
            str(archive),
            "--cluster",
            "c",
            "--namespace",
            "ns",
            "--once",
            "--wait-for-session",
            "60",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()  # the collector says it waits before Ray's directory exists
        assert "waiting up to 60s for Ray's session directory" in line, line
        make_session(base)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    manifest = SessionManifest.from_json(LocalStore(archive).get(SessionRef("ns", "c", SESSION_NAME).manifest_key))
    assert manifest.status == ENDED


def test_cli_sigterm_flushes_and_marks_ended(tmp_path):
    session = make_session(tmp_path)
    archive = tmp_path / "archive"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rayhistory.cli",
            "collect",
            "--session-dir",
            str(session),
            "--archive",
            str(archive),
            "--cluster",
            "c",
            "--namespace",
            "ns",
            "--interval",
            "60",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    store = LocalStore(archive)
    ref = SessionRef("ns", "c", SESSION_NAME)
    deadline = time.monotonic() + 30
    while not store.exists(ref.manifest_key):
        assert time.monotonic() < deadline and proc.poll() is None, "collector did not start"
        time.sleep(0.1)
    with open(session / "logs" / "raylet.out", "ab") as f:
        f.write(b"written just before the pod was told to stop\n")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    manifest = SessionManifest.from_json(store.get(ref.manifest_key))
    assert manifest.status == ENDED and manifest.ended_by == "signal:SIGTERM"
    node = ref.node(NODE_ID)
    assert archive_logs.read_file(store, node, "raylet.out") == (session / "logs" / "raylet.out").read_bytes()


def test_state_dumps_rewritten_in_place_are_archived_whole(tmp_path):
    """Ray rewrites debug_state.txt in place: the archive keeps whole snapshots, the last one current."""
    session = make_session(tmp_path)
    dump = session / "logs" / "debug_state.txt"
    dump.write_bytes(b"NodeManager:\nqueued: 0\n")
    store = RecordingStore(tmp_path / "archive")
    settings = CollectorSettings(session_dir=str(session), archive=store.url, cluster="c", namespace="ns", once=True)
    collector = Collector(settings, store, SessionDir(session))
    collector.start()
    collector.ship_once()
    dump.write_bytes(b"NodeManager:\nqueued: 7\n")  # same size, new content
    collector.finish()
    node = SessionRef("ns", "c", SESSION_NAME).node(NODE_ID)
    assert archive_logs.read_file(store, node, "debug_state.txt") == b"NodeManager:\nqueued: 7\n"
    assert archive_logs.read_file(store, node, "debug_state.txt", epoch=0) == b"NodeManager:\nqueued: 0\n"


def test_rotation_keeps_each_files_bytes_once_and_under_its_current_name(tmp_path):
    """x.log rotated to x.log.1 (as Ray's RotatingFileHandler does), then a new x.log: both read back exactly,
    the rotated bytes are not archived twice, and a restarted collector neither duplicates nor loses."""
    session = make_session(tmp_path)
    logs = session / "logs"
    store = RecordingStore(tmp_path / "archive")
    (logs / "x.log").write_bytes(b"first generation\n" * 100)
    collect_once(session, store)
    (logs / "x.log").rename(logs / "x.log.1")
    with open(logs / "x.log.1", "ab") as f:
        f.write(b"written by a handle still open on the old file\n")
    (logs / "x.log").write_bytes(b"second generation\n" * 10)
    collect_once(session, store)  # a new collector: it learns from the archive alone
    node = SessionRef("ns", "c", SESSION_NAME).node(NODE_ID)
    renamed = archive_logs.read_renames(store, node)
    assert renamed == {"x.log.1": ("x.log", 0)}
    assert archive_logs.read_file(store, node, "x.log") == (logs / "x.log").read_bytes()
    assert archive_logs.read_file(store, node, *renamed["x.log.1"]) == (logs / "x.log.1").read_bytes()
    shipped = [k for k in segment_keys(store) if "/x.log" in k]
    assert not any("/x.log.1/" in k for k in shipped)  # renamed, not copied
    archived_bytes = sum(int(k.rsplit("-", 1)[1][:-3]) - int(k.rsplit("-", 2)[1]) for k in shipped)
    assert archived_bytes == (logs / "x.log").stat().st_size + (logs / "x.log.1").stat().st_size
    before = len(store.puts)
    collect_once(session, store)  # nothing changed: nothing but the end markers is written again
    assert not [k for k in store.puts[before:] if "/logs/" in k]
    # The history server lists and serves the rotated file under its current name.
    from tests.helpers import client_for

    with client_for(store.url, tmp_path / "cache") as client:
        base = f"/sessions/{SessionRef('ns', 'c', SESSION_NAME).id}/api/v0/logs"
        listing = client.get(base, params={"node_id": NODE_ID}).json()["data"]["result"]
        assert "x.log.1" in sum(listing.values(), []) and "x.log" in sum(listing.values(), [])
        for name in ("x.log", "x.log.1"):
            served = client.get(base + "/file", params={"node_id": NODE_ID, "filename": name, "lines": -1})
            assert served.content == (logs / name).read_bytes(), name


def test_a_restarted_ray_is_a_new_session_archived_apart(tmp_path):
    """Given session_latest, the collector finishes the old session when Ray restarts and follows the new one."""
    first = make_session(tmp_path)
    latest = tmp_path / "session_latest"
    latest.symlink_to(first)
    archive = tmp_path / "archive"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rayhistory.cli",
            "collect",
            "--session-dir",
            str(latest),
            "--archive",
            str(archive),
            "--cluster",
            "c",
            "--namespace",
            "ns",
            "--interval",
            "0.2",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    store = LocalStore(archive)
    old = SessionRef("ns", "c", SESSION_NAME)
    new_name = "session_2026-11-25_21-30-00_000001_2002"

    def wait_for(check, what):
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline and proc.poll() is None, f"timed out waiting for {what}"
            time.sleep(0.05)

    try:
        wait_for(lambda: store.exists(old.manifest_key), "the first session")
        second = tmp_path / "restart" / new_name
        second.parent.mkdir()
        shutil.copytree(first, second)
        (second / "logs" / "raylet.out").write_bytes(b"the second life of this node\n")
        latest.unlink()
        latest.symlink_to(second)
        new = SessionRef("ns", "c", new_name)
        wait_for(lambda: store.exists(new.manifest_key), "the second session")
        wait_for(lambda: store.exists(old.ended_key), "the first session to end")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    ended_old = SessionManifest.from_json(store.get(old.manifest_key))
    ended_new = SessionManifest.from_json(store.get(new.manifest_key))
    assert (ended_old.ended_by, ended_new.ended_by) == ("session-replaced", "signal:SIGTERM")
    assert archive_logs.read_file(store, new.node(NODE_ID), "raylet.out") == b"the second life of this node\n"
    assert (
        archive_logs.read_file(store, old.node(NODE_ID), "raylet.out") == (first / "logs" / "raylet.out").read_bytes()
    )
