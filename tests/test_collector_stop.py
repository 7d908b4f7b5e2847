"""A collector stopped together with Ray (KubeRay's injection makes it a plain container, so both get SIGTERM at
once) waits for this node's raylet to exit before its final upload, so Ray's last writes are archived; a collector
stopped after Ray (a native sidecar) does not wait."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archive import logs as archive_logs
from archive.layout import SessionRef
from archive.storage.local import LocalStore
from tests.fake_session import NODE_ID, SESSION_NAME, make_session


def _start(session: Path, archive: Path, *extra: str) -> subprocess.Popen:
    argv = ["--session-dir", str(session), "--archive", str(archive), "--cluster", "c", "--namespace", "ns"]
    return subprocess.Popen(
        [sys.executable, "-m", "rayhistory.cli", "collect", *argv, "--interval", "60", *extra],
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_started(proc: subprocess.Popen, store: LocalStore, ref: SessionRef) -> None:
    deadline = time.monotonic() + 30
    while not store.exists(ref.manifest_key):
        assert time.monotonic() < deadline and proc.poll() is None, "collector did not start"
        time.sleep(0.1)


def test_sigterm_while_ray_runs_waits_for_the_raylet_then_archives_its_last_writes() -> None:
    root = Path(tempfile.mkdtemp(prefix="rh-stop-", dir="/tmp"))  # short: a unix socket path has a length limit
    raylet = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        session = make_session(root)
        (session / "sockets").mkdir()
        raylet.bind(str(session / "sockets" / "raylet"))
        raylet.listen()
        store, ref = LocalStore(root / "archive"), SessionRef("ns", "c", SESSION_NAME)
        proc = _start(session, root / "archive")
        _wait_started(proc, store, ref)
        proc.send_signal(signal.SIGTERM)
        with open(session / "logs" / "raylet.out", "ab") as f:
            f.write(b"written by Ray while it stopped, after the collector got SIGTERM\n")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # Ray still runs: nothing is marked ended
            assert proc.poll() is None and not store.exists(ref.ended_key)
            time.sleep(0.2)
        raylet.close()
        (session / "sockets" / "raylet").unlink()
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert "waiting up to 20s for it to stop" in proc.stderr.read()
        archived = archive_logs.read_file(store, ref.node(NODE_ID), "raylet.out")
        assert archived == (session / "logs" / "raylet.out").read_bytes() and archived.endswith(b"SIGTERM\n")
    finally:
        raylet.close()
        shutil.rmtree(root, ignore_errors=True)


def test_a_collector_stopped_after_ray_does_not_wait(tmp_path: Path) -> None:
    session = make_session(tmp_path)  # no raylet socket: Ray has exited
    store, ref = LocalStore(tmp_path / "archive"), SessionRef("ns", "c", SESSION_NAME)
    proc = _start(session, tmp_path / "archive", "--ray-stop-wait", "600")
    _wait_started(proc, store, ref)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert time.monotonic() - started < 30 and store.exists(ref.ended_key)
    assert "waiting up to" not in proc.stderr.read()
