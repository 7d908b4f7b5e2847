"""`rayhistory demo`: a real Ray cluster, archived while it runs, stopped, then served from the archive."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOAD = Path(__file__).resolve().parent / "workload"
DEFAULT_ARCHIVE = ".rayhistory/archive"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", default=DEFAULT_ARCHIVE,
                        help=f"archive URL (default: the local directory {DEFAULT_ARCHIVE})")
    parser.add_argument("--cluster", default="demo", help="cluster name to archive under (default: demo)")
    parser.add_argument("--namespace", default="default", help="namespace to archive under (default: default)")
    parser.add_argument("--port", type=int, default=8080, help="history server port (default: 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="history server address (default: 127.0.0.1)")
    parser.add_argument("--no-serve", action="store_true", help="stop after archiving and print the session id")


def _step(msg: str, started: float) -> None:
    print(f"[demo {time.monotonic() - started:5.1f}s] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise DemoFailed(f"{what}: the process exited with code {proc.returncode}")
        time.sleep(0.3)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")


class DemoFailed(RuntimeError):
    pass


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        # Export events to files: they record final states even at shutdown. Every Ray process reads this,
        # drivers included, so it must be in the environment of the whole cluster.
        "RAY_enable_export_api_write": "1",
        "RAY_AUTH_MODE": "disabled",  # a throw-away local cluster bound to 127.0.0.1
        "RAY_USAGE_STATS_ENABLED": "0",
    })
    return env


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except DemoFailed as e:
        print(f"rayhistory demo: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from archive.errors import ArchiveError
    from archive.layout import SessionRef
    from archive.storage import open_store

    started = time.monotonic()
    try:
        store = open_store(args.archive)
        store.check()
    except ArchiveError as e:
        raise DemoFailed(str(e)) from e
    env = ray_env()
    temp_dir = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    gcs_port, dash_port = free_port(), free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    _step(f"starting a Ray {_ray_version()} head node in {temp_dir}", started)
    ray_proc = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--temp-dir={temp_dir}", f"--port={gcs_port}",
         "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
         "--include-dashboard=true", "--num-cpus=2", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    collector = None
    try:
        session_dir = _wait("Ray's session directory", lambda: _session_dir(temp_dir), 60, ray_proc)
        collector = subprocess.Popen(
            [sys.executable, "-m", "rayhistory.cli", "collect", "--session-dir", str(session_dir),
             "--archive", args.archive, "--cluster", args.cluster, "--namespace", args.namespace,
             "--interval", "5"],
            env=env,
        )
        ref = SessionRef(args.namespace, args.cluster, session_dir.name)
        _wait("the collector to register the session", lambda: store.exists(ref.index_key), 120, collector)
        dashboard = f"http://127.0.0.1:{dash_port}"
        _wait("Ray's dashboard", lambda: _http_ok(dashboard + "/api/version"), 60, ray_proc)
        _step(f"Ray is up; collector attached; running the workload (session {session_dir.name})", started)
        _run_workload(env, gcs_port, dashboard, started)
        _step("stopping Ray gracefully", started)
        ray_proc.send_signal(signal.SIGTERM)
        ray_proc.wait(timeout=90)
        _step("Ray stopped; collector makes its final upload", started)
        collector.send_signal(signal.SIGTERM)
        if collector.wait(timeout=120) != 0:
            raise DemoFailed(f"the collector exited with code {collector.returncode}; see its log above")
    finally:
        for proc in (collector, ray_proc):
            if proc is not None and proc.poll() is None:
                proc.kill()
    _step(f"session archived in {store.url}", started)
    if args.no_serve:
        print(ref.id, flush=True)
        return 0
    from historyserver.cli import serve
    from historyserver.settings import ServerSettings

    settings = ServerSettings(archive=args.archive, host=args.host, port=args.port)
    url = f"http://{args.host}:{args.port}/sessions/{ref.id}/"

    def announce() -> None:
        _step("history server ready; Ray has stopped, and this is its history:", started)
        print(url, flush=True)

    serve(settings, store, on_ready=announce)
    return 0


def _ray_version() -> str:
    from importlib.metadata import version

    return version("ray")


def _session_dir(temp_dir: Path) -> Path | None:
    latest = temp_dir / "session_latest"
    if latest.exists() and any(latest.resolve().glob("metrics_export_port_*")):
        return latest.resolve()
    return None


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _run_workload(env: dict[str, str], gcs_port: int, dashboard: str, started: float) -> None:
    driver_env = {**env, "RAY_ADDRESS": f"127.0.0.1:{gcs_port}"}
    out = subprocess.run([sys.executable, str(WORKLOAD / "driver.py")], env=driver_env, capture_output=True,
                         text=True, timeout=300)
    if out.returncode != 0:
        raise DemoFailed(f"the demo driver failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    _step("driver finished: tasks, failing tasks, actors", started)

    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(dashboard)
    jobs = {
        client.submit_job(entrypoint=f"{sys.executable} job.py", runtime_env={"working_dir": str(WORKLOAD)},
                          submission_id=f"demo_ok_{int(time.time())}"): JobStatus.SUCCEEDED,
        client.submit_job(entrypoint=f"{sys.executable} -c 'import sys; print(\"failing on purpose\"); sys.exit(3)'",
                          submission_id=f"demo_fail_{int(time.time())}"): JobStatus.FAILED,
    }
    for job_id, expected in jobs.items():
        status = _wait(f"job {job_id}", lambda: _terminal(client, job_id), 300)
        if status != expected:
            raise DemoFailed(f"job {job_id} ended {status}, expected {expected}:\n{client.get_job_logs(job_id)[-2000:]}")
    _step(f"submitted jobs finished: {', '.join(jobs)}", started)


def _terminal(client, job_id: str):
    status = client.get_job_status(job_id)
    return status if status.is_terminal() else None
