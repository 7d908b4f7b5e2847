"""`rayhistory demo`: a real Ray cluster, archived while it runs, stopped, then served from the archive."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from importlib.metadata import version

from rayhistory.local_ray import LocalRayCluster, RayFailed, wait_for

DEFAULT_ARCHIVE = ".rayhistory/archive"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archive", default=DEFAULT_ARCHIVE, help=f"archive URL (default: the local directory {DEFAULT_ARCHIVE})"
    )
    parser.add_argument("--cluster", default="demo", help="cluster name to archive under (default: demo)")
    parser.add_argument("--namespace", default="default", help="namespace to archive under (default: default)")
    parser.add_argument("--port", type=int, default=8080, help="history server port (default: 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="history server address (default: 127.0.0.1)")
    parser.add_argument("--no-serve", action="store_true", help="stop after archiving and print the session id")


def start_collector(
    session_dir, archive: str, cluster: str, namespace: str, env: dict[str, str], interval: float = 5
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rayhistory.cli",
            "collect",
            "--session-dir",
            str(session_dir),
            "--archive",
            archive,
            "--cluster",
            cluster,
            "--namespace",
            namespace,
            "--interval",
            str(interval),
            # The demo's drivers live a few seconds: scrape often enough that their task series are archived.
            "--metrics-interval",
            "2",
        ],
        env=env,
    )


def run(args: argparse.Namespace) -> int:
    from archive.errors import ArchiveError
    from archive.layout import SessionRef
    from archive.storage import open_store
    from rayhistory import workload

    started = time.monotonic()

    def step(msg: str) -> None:
        print(f"[demo {time.monotonic() - started:5.1f}s] {msg}", file=sys.stderr, flush=True)

    from historyserver.access.config import is_loopback

    if not args.no_serve and not is_loopback(args.host):  # said before Ray runs, not after
        print(
            f"rayhistory demo: --host {args.host} is reachable from other machines, and the demo serves without "
            "authentication; use 127.0.0.1, or archive with --no-serve and run `rayhistory serve` with --auth "
            'token or proxy (README, "Authentication and access by namespace")',
            file=sys.stderr,
        )
        return 2
    try:
        store = open_store(args.archive)
        store.check()
    except ArchiveError as e:
        print(f"rayhistory demo: {e}", file=sys.stderr)
        return 2
    ray = LocalRayCluster()
    collector = None
    try:
        step(f"starting a Ray {version('ray')} head node in {ray.temp_dir}")
        session_dir = ray.start()
        collector = start_collector(session_dir, args.archive, args.cluster, args.namespace, ray.env)
        ref = SessionRef(args.namespace, args.cluster, session_dir.name)
        wait_for("the collector to register the session", lambda: store.exists(ref.index_key), 120, collector)
        ray.wait_ready()
        step(f"Ray is up and the collector attached; running the workload in {session_dir.name}")
        workload.run(ray.env, ray.address, ray.dashboard, step)
        step("stopping Ray gracefully")
        ray.stop()
        step("Ray stopped; the collector makes its final upload")
        collector.send_signal(signal.SIGTERM)
        if collector.wait(timeout=120) != 0:
            raise RayFailed(f"the collector exited with code {collector.returncode}; see its log above")
    except (RayFailed, workload.WorkloadFailed) as e:
        print(f"rayhistory demo: {e}", file=sys.stderr)
        return 1
    finally:
        if collector is not None and collector.poll() is None:
            collector.kill()
        ray.kill()
    step(f"session {ref.id} archived in {store.url}")
    if args.no_serve:
        print(ref.id, flush=True)
        return 0

    from historyserver.cli import serve
    from historyserver.settings import ServerSettings

    url = f"http://{args.host}:{args.port}/sessions/{ref.id}/"
    # The exception the demo's failing task raised: printed by the task (its .err) and kept by Ray (its events).
    search = f"http://{args.host}:{args.port}/api/v1/sessions/{ref.id}/logs/search?q=%22intentional+failure%22"

    def announce() -> None:
        step("history server ready. Ray has stopped; its history is at:")
        print(url, flush=True)
        step("and the failing task's exception, searched in its logs and its errors:")
        print(search, flush=True)

    # The rest of the server's settings from RAYHISTORY_ variables, as `rayhistory serve` reads them.
    settings = ServerSettings.load({"archive": args.archive, "host": args.host, "port": args.port})
    serve(settings, store, on_ready=announce)
    return 0
