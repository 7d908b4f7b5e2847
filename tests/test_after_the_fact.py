"""A real Ray 2.60 session archived twice: by a live collector that saw Ray stop, and with `collect --once` from a
copy of its session directory (file times lost) at a clock three days later. Both must end the session when Ray
stopped: the live one by its clock at shutdown, the late one by the newest time Ray wrote (FORMAT.md, `end_ms`);
a task still running at death ends with the session, never at the collection time.

Ray is killed (SIGKILL, the driver first, as a node lost with its pod) rather than stopped: a graceful stop lets the
dying driver fail or retry its running task, so whether anything is left unfinished would be a race."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types
from datetime import datetime
from pathlib import Path

import pytest

from archive.layout import SessionRef
from archive.storage.local import LocalStore
from collector import service
from collector.service import Collector
from collector.settings import CollectorSettings
from collector.sources.session_dir import SessionDir
from rayhistory.demo import start_collector
from rayhistory.local_ray import LocalRayCluster, wait_for
from tests.helpers import client_for

LATER_S = 3 * 86_400  # how long after Ray stopped the late archive is made

DRIVER = """
import sys, time, ray
ray.init(address=sys.argv[1])

@ray.remote
def hang(flag):
    open(flag, "w").close()
    time.sleep(3600)

@ray.remote(num_cpus=64)
def infeasible():
    pass

refs = [hang.remote(sys.argv[2]), infeasible.remote()]
time.sleep(3600)
"""


RUNNING = "8"  # TaskStatus code in export events (reference/ray-2.60/proto_event_schemas.txt)


def _running_in_export_events(logs: Path) -> bool:
    """The export files say `hang` runs: its definition (owner's file) and RUNNING (its worker's file) written."""
    lines = [
        json.loads(line)["event_data"]
        for f in (logs / "export_events").glob("event_EXPORT_TASK_*.log")
        for line in f.read_text().splitlines()
        if line.endswith("}")
    ]
    ids = {e["task_id"] for e in lines if (e.get("task_info") or {}).get("func_or_class_name") == "hang"}
    return any(e["task_id"] in ids and RUNNING in e.get("state_updates", {}).get("state_ts_ns", {}) for e in lines)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    work = tmp_path_factory.mktemp("after")
    ray = LocalRayCluster()
    procs: list[subprocess.Popen] = []
    try:
        session_dir = ray.start()
        live = str(work / "live")
        procs.append(start_collector(session_dir, live, "late", "default", ray.env, interval=2))
        ray.wait_ready()
        script = work / "driver.py"
        script.write_text(DRIVER)
        flag = work / "hang-started"
        procs.append(
            subprocess.Popen([sys.executable, str(script), ray.address, str(flag)], env=ray.env, start_new_session=True)
        )
        wait_for("the task to run", lambda: flag.exists(), 120, procs[1])
        running_ms = int(time.time() * 1000)
        wait_for("Ray to record it running", lambda: _running_in_export_events(session_dir / "logs"), 60)
        os.killpg(procs[1].pid, signal.SIGKILL)
        ray.kill()
        # Workers have process groups of their own: they see their raylet die, log it and exit.
        wait_for("Ray's workers to exit", lambda: not _processes_under(ray.temp_dir, procs[0].pid), 60)
        gone_ms = int(time.time() * 1000)
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=120) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        ray.kill()
    # A copy made later, elsewhere: file times are not kept.
    copy = work / "copied" / session_dir.name
    shutil.copytree(session_dir, copy, copy_function=shutil.copyfile, ignore=shutil.ignore_patterns("sockets"))
    shutil.rmtree(ray.temp_dir, ignore_errors=True)
    late = str(work / "late")
    store = LocalStore(late)
    later = types.SimpleNamespace(**{**vars(time), "time": lambda: time.time() + LATER_S})
    settings = CollectorSettings(session_dir=str(copy), archive=late, cluster="late", namespace="default", once=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(service, "time", later)  # the collector's clock: three days after Ray stopped
        Collector(settings, store, SessionDir(copy)).run()
    ref = SessionRef("default", "late", session_dir.name)
    yield types.SimpleNamespace(
        ref=ref, copy=copy, live=live, late=late, running_ms=running_ms, gone_ms=gone_ms, work=work
    )


_STAMP = re.compile(r"^\[?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3})[\t ]")


def _processes_under(temp_dir: Path, collector_pid: int) -> list[int]:
    """Ray's processes of this cluster, but for our collector: those naming its temp dir in their command line or
    holding a file open under it (workers retitle themselves `ray::...`, but keep their log files open)."""
    mark = str(temp_dir)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in (collector_pid, os.getpid()):
            continue
        try:
            if mark.encode() in (proc / "cmdline").read_bytes() or any(
                os.readlink(fd).startswith(mark) for fd in (proc / "fd").iterdir()
            ):
                found.append(int(proc.name))
        except OSError:
            continue  # exited meanwhile, or not ours to look at
    return found


def _newest_stamp(logs: Path) -> int:
    """Every line of every file Ray wrote itself, read whole (a brute-force reading of the rule)."""
    newest = 0
    for path in logs.rglob("*"):
        name = path.name
        if not path.is_file() or re.match(r"worker-.*\.(out|err)$|job-driver-", name):
            continue
        for line in path.read_text(errors="replace").splitlines():
            if path.parent.name in ("events", "export_events"):
                try:
                    newest = max(newest, int(float(json.loads(line)["timestamp"]) * 1000))
                except (ValueError, KeyError, TypeError):
                    pass
            elif m := _STAMP.match(line):
                stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
                newest = max(newest, int(stamp) * 1000 + int(m.group(2)))
    return newest


def _served(archive: str, ref: SessionRef, cache: Path):
    with client_for(archive, cache) as client:
        session = client.get(f"/api/v1/sessions/{ref.id}").json()
        base = f"/sessions/{ref.id}"
        tasks = client.get(f"{base}/api/v0/tasks", params={"detail": 1, "limit": 10000}).json()
        jobs = client.get(f"{base}/api/jobs/").json()
    return session, tasks["data"]["result"]["result"], jobs


def test_a_late_archive_ends_when_ray_stopped(stopped):
    session, tasks, jobs = _served(stopped.late, stopped.ref, stopped.work / "cache-late")
    end = session["end"]
    assert session["status"] == "ended" and session["ended_by"] == "once"
    assert end == _newest_stamp(stopped.copy / "logs")
    assert stopped.running_ms - 1000 <= end <= stopped.gone_ms + 1000  # when Ray died, not days later
    assert end - session["start"] < 600_000
    [hang] = [t for t in tasks if t["name"] == "hang"]
    assert hang["state"] == "RUNNING" and hang["end_time_ms"] == end
    [pending] = [t for t in tasks if t["name"] == "infeasible"]
    assert pending["state"] == "PENDING_NODE_ASSIGNMENT" and pending["end_time_ms"] == end
    assert all(t["end_time_ms"] is None or t["end_time_ms"] <= end for t in tasks)
    assert all(j["end_time"] is None or j["end_time"] <= end for j in jobs)


def test_the_live_archive_agrees(stopped):
    """The live collector's clock at shutdown is when Ray stopped: at or after everything Ray wrote, by no more
    than the collector's final flush."""
    live, live_tasks, _ = _served(stopped.live, SessionRef("default", "late", stopped.ref.session), stopped.work / "c")
    late, _, _ = _served(stopped.late, stopped.ref, stopped.work / "cache-late")
    assert late["end"] <= live["end"] <= late["end"] + 60_000
    assert live["start"] == late["start"] and live["nodes"] == late["nodes"] == 1
    [hang] = [t for t in live_tasks if t["name"] == "hang"]
    assert hang["state"] == "RUNNING" and hang["end_time_ms"] == live["end"]
