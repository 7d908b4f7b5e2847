"""The collector's events and metrics to SLS: throughput per CPU-second beside the archive sink, and the whole
collector with all three SLS outputs on at a steady load.

    .venv/bin/python -m benchmarks.collector_sls [--events 40000] [--scrapes 400] [--seconds 30]

Prints three markdown tables:
- events per CPU-second into the events logstore (the SLS test server, in its own process), and the archive sink
  over the same export-event file in the same run;
- samples per CPU-second by remote write into a MetricStore (same server), and the archive sink over the same
  metrics spool files;
- the collector process at 1 MB/s of logs, 100 tasks a second (4 export events each) and a 1,500-series metrics
  endpoint scraped every 5 s: CPU (% of one core), peak RSS and anonymous RSS, archive only, with SLS log lines,
  and with all three SLS outputs. Targets, for the last row: <= 5% of a core and <= 80 MB (peak RSS and, as
  collector_throughput.py judges, anonymous RSS).
Every run checks its answer (all events, all samples arrived); a wrong or failed run exits 1 (benchmarks/outcome.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from archive.credentials import Credentials, StaticCredentials
from benchmarks.collector_throughput import BenchmarkError, _proc_cpu_rss, make_session, sample_lines
from benchmarks.outcome import exit_status

ROOT = Path(__file__).resolve().parents[1]
NODE_ID = "ab" * 28
ENDPOINT, KEY_ID, SECRET = "sls.test", "test-akid", "test-secret"  # the SLS test server's (tests/servers/sls.py)
TARGET_CPU, TARGET_MB = 5.0, 80.0


# --- inputs -------------------------------------------------------------------------------------------------------


def task_events(i: int, now_s: int) -> list[bytes]:
    """The export-event lines Ray writes for one task: the owner's submission and finish (with task_info), the
    worker's RUNNING, and its profile events (shapes of the reference's real samples)."""
    tid = base64.b64encode(i.to_bytes(8, "big") + b"\xff" * 12 + b"\x01\x00\x00\x00").decode()
    ns = now_s * 1_000_000_000 + i * 1000
    info = {
        "func_or_class_name": f"work_{i % 7}",
        "language": "PYTHON",
        "parent_task_id": "//////////////////////////8BAAAA",
        "required_resources": {"CPU": 1},
        "task_id": tid,
        "type": "NORMAL_TASK",
    }
    base = {"attempt_number": 0, "job_id": "AQAAAA==", "task_id": tid}
    worker = "Ti5NeTZb4qaoY/y1JF3SCYpi9fDOSwP5OmavTQ=="
    events = [
        {**base, "task_info": info, "state_updates": {"state_ts_ns": {"1": str(ns), "2": str(ns + 100)}}},
        {**base, "state_updates": {"state_ts_ns": {"8": str(ns + 500)}, "worker_pid": 4242, "worker_id": worker}},
        {
            **base,
            "task_info": info,
            "state_updates": {
                "state_ts_ns": {"1": str(ns), "2": str(ns + 100), "5": str(ns + 200), "11": str(ns + 900)}
            },
        },
        {
            **base,
            "profile_events": {
                "component_id": worker,
                "component_type": "worker",
                "events": [
                    {
                        "end_time": str(ns + 800),
                        "event_name": "task:execute",
                        "extra_data": "{}",
                        "start_time": str(ns + 600),
                    }
                ],
                "node_ip_address": "10.0.0.1",
            },
        },
    ]
    return [
        json.dumps(
            {"event_data": e, "event_id": f"{i:016x}{k:04x}", "source_type": "EXPORT_TASK", "timestamp": now_s}
        ).encode()
        + b"\n"
        for k, e in enumerate(events)
    ]


def exposition(series: int, tick: int) -> str:
    lines = ["# HELP ray_bench_value A gauge per label set.", "# TYPE ray_bench_value gauge"]
    lines += [
        f'ray_bench_value{{SessionName="{SESSION}",Component="c{k % 13}",WorkerId="w{k}"}} {tick + k}.0'
        for k in range(series)
    ]
    return "\n".join(lines) + "\n"


SESSION = "session_2026-11-25_20-59-21_325155_1996"


def write_metrics(folder: Path, scrapes: int, series: int) -> int:
    """`scrapes` blocks of a `series`-series endpoint into the metrics spool, as the scraper writes them."""
    from archive import metrics_blocks
    from collector.sources.metrics import to_openmetrics
    from collector.spool import AppendOnlySpool

    spool = AppendOnlySpool(folder, metrics_blocks.FILE_PREFIX, metrics_blocks.FILE_EXT, 32 << 20)
    start = int(time.time() * 1000) - scrapes * 1000
    labels = {"job": "ray", "ray_io_cluster": "bench", "instance": "10.0.0.1:8080"}
    samples = 0
    for i in range(scrapes):
        families, count = to_openmetrics(exposition(series, i), labels, start + i * 1000)
        spool.append(
            metrics_blocks.render(metrics_blocks.scrape_header(labels, start + i * 1000, 1, 0.01, count) + families)
        )
        samples += count + 3
    spool.close()
    return samples


# --- the SLS test server, in its own process -------------------------------------------------------------------------


class TestServer:
    def __enter__(self) -> TestServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.servers.sls"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self.proc.stdout.readline())
        self.proxy = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)

    def client(self):
        from collector.sinks.sls.client import make_client

        return make_client(ENDPOINT, StaticCredentials(Credentials(KEY_ID, SECRET)), "bench", 30, self.proxy)

    def init(self, **stores: str) -> None:
        from rayhistory.sls_init import Initializer, SlsInitSettings

        settings = SlsInitSettings(endpoint=ENDPOINT, project="bench", **stores)
        Initializer(self.client(), settings, say=lambda line: None).run()


def _listing(folder: Path):
    from collector.components import Listing
    from collector.sources.session_dir import scan_tree

    return Listing(scan_tree(folder))


def _archive_cpu(source: str, folder: Path, root: Path) -> float:
    from archive.layout import SessionRef
    from archive.storage.local import LocalStore
    from collector.sinks.archive import ArchiveSink

    sink = ArchiveSink(
        LocalStore(root / "archive"), SessionRef("b", "b", SESSION).node(NODE_ID), {source: folder}, root / "ack.json"
    )
    sink.open()
    cpu = time.process_time()
    sink.offer(source, _listing(folder), True)
    sink.flush()
    return time.process_time() - cpu


def events_throughput(n_tasks: int) -> list[tuple[str, float, int]]:
    from collector.sinks.sls.events import SlsEventsSink

    root = Path(tempfile.mkdtemp(prefix="rh-bench-sls-events-"))
    try:
        logs = root / "logs"
        (logs / "export_events").mkdir(parents=True)
        now = int(time.time())
        with open(logs / "export_events" / "event_EXPORT_TASK_4242.log", "wb") as f:
            for i in range(n_tasks):
                f.writelines(task_events(i, now))
        events = n_tasks * 4
        with TestServer() as server:
            server.init(logstore="bench-logs", events_logstore="bench-events")
            sink = SlsEventsSink(
                server.client(),
                "bench",
                "bench-events",
                {"cluster": "b", "namespace": "b", "session": SESSION, "node": NODE_ID},
                {"logs": logs},
                root / "ck.json",
                NODE_ID,
            )
            cpu = time.process_time()
            sink.open()
            sink.offer("logs", _listing(logs), True)
            if not sink.close(600):
                raise BenchmarkError("the events sink did not drain")
            cpu = time.process_time() - cpu
            if sink.stats().sent != events:
                raise BenchmarkError(f"the events sink sent {sink.stats().sent:,} events of {events:,}")
        archive_cpu = _archive_cpu("logs", logs, root)
        return [
            ("SLS events sink (events logstore)", events / cpu, events),
            ("archive sink, same file", events / archive_cpu, events),
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def metrics_throughput(scrapes: int, series: int) -> list[tuple[str, float, int]]:
    from archive import sls_schema
    from collector.sinks.sls import remote_write
    from collector.sinks.sls.metrics import SlsMetricsSink

    root = Path(tempfile.mkdtemp(prefix="rh-bench-sls-metrics-"))
    try:
        folder = root / "metrics"
        samples = write_metrics(folder, scrapes, series)
        with TestServer() as server:
            server.init(logstore="bench-logs", metricstore="bench-metrics")
            sink = SlsMetricsSink(
                sls_schema.remote_write_url(f"http://{ENDPOINT}", "bench", "bench-metrics"),
                remote_write.authorization(StaticCredentials(Credentials(KEY_ID, SECRET))),
                {"metrics": folder},
                root / "ck.json",
                NODE_ID,
                proxy=server.proxy,
            )
            cpu = time.process_time()
            sink.open()
            sink.offer("metrics", _listing(folder), True)
            if not sink.close(600):
                raise BenchmarkError("the metrics sink did not drain")
            cpu = time.process_time() - cpu
            stats = sink.stats()
            if stats.sent != samples or stats.dropped:
                raise BenchmarkError(
                    f"remote write sent {stats.sent:,} samples of {samples:,} ({stats.dropped} dropped)"
                )
        archive_cpu = _archive_cpu("metrics", folder, root)
        return [
            ("SLS metrics sink (remote write)", samples / cpu, samples),
            ("archive sink, same files", samples / archive_cpu, samples),
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the steady run -------------------------------------------------------------------------------------------------


class Exporter(threading.Thread):
    def __init__(self, series: int) -> None:
        super().__init__(daemon=True)
        self.tick = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                exporter.tick += 1
                body = exposition(series, exporter.tick).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]

    def run(self) -> None:
        self.httpd.serve_forever()


def steady(outputs: str, seconds: float, series: int) -> tuple[float, float, float]:
    """(% of one core, peak RSS MiB, anonymous RSS MiB) of `rayhistory collect` under the steady load; outputs:
    "" (archive only), "logs", or "all" (logs, events and metrics to SLS too)."""
    root = Path(tempfile.mkdtemp(prefix="rh-bench-sls-steady-"))
    proc = None
    exporter = Exporter(series)
    exporter.start()
    try:
        with TestServer() as server:
            server.init(logstore="bench-logs", events_logstore="bench-events", metricstore="bench-metrics")
            session = make_session(root)
            (session / f"metrics_export_port_{NODE_ID}").write_text(str(exporter.port))
            with open(session / "logs" / "raylet.out", "ab") as f:
                f.write(b"[2026-11-25 20:59:24,790 I 1 1] (raylet) main.cc:1: node_manager address: 127.0.0.1:1\n")
            (session / "logs" / "export_events").mkdir()
            env = {**os.environ, "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
            sls = ["--sls-endpoint", f"http://{ENDPOINT}", "--sls-project", "bench", "--sls-proxy", server.proxy]
            if outputs == "logs":
                sls += ["--sls-logstore", "bench-logs"]
            elif outputs == "all":
                sls += ["--sls-logstore", "bench-logs", "--sls-events-logstore", "bench-events"]
                sls += ["--sls-metricstore", "bench-metrics"]
            else:
                sls = []
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rayhistory.cli",
                    "collect",
                    *("--session-dir", str(session), "--archive", str(root / "archive"), "--cluster", "bench"),
                    *("--namespace", "bench", "--interval", "10", "--metrics-interval", "5", "--api-interval", "0"),
                    *sls,
                ],
                stderr=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
            )
            rng = random.Random(2)
            lines = sample_lines()
            chunk = b"".join(rng.choice(lines) for _ in range(2000))
            logs = [open(session / "logs" / f"worker-{i:056x}-01000000-{2000 + i}.out", "ab") for i in range(8)]
            events = open(session / "logs" / "export_events" / "event_EXPORT_TASK_4242.log", "ab")
            time.sleep(3)  # start-up is not the steady state
            cpu0, _, _ = _proc_cpu_rss(proc.pid)
            start = time.monotonic()
            written = tasks = 0
            while (now := time.monotonic()) - start < seconds:
                while written < 1e6 * (now - start):
                    f = logs[written // len(chunk) % len(logs)]
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
                while tasks < 100 * (now - start):
                    events.writelines(task_events(tasks, int(time.time())))
                    tasks += 1
                events.flush()
                time.sleep(0.02)
            cpu1, rss, anon = _proc_cpu_rss(proc.pid)
            if proc.poll() is not None:
                raise BenchmarkError(f"the collector exited with status {proc.returncode} during the steady run")
            for f in [*logs, events]:
                f.close()
            proc.terminate()
            proc.wait(timeout=90)
            return 100 * (cpu1 - cpu0) / (time.monotonic() - start), rss / 2**20, anon / 2**20
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        exporter.httpd.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except BenchmarkError as e:
        return exit_status([str(e)], "benchmarks.collector_sls")


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10000, help="tasks (4 export events each) for the events run")
    p.add_argument("--scrapes", type=int, default=200, help="scrapes of a --series endpoint for the metrics run")
    p.add_argument("--series", type=int, default=1500, help="series an endpoint exposes")
    p.add_argument("--seconds", type=float, default=30, help="length of each steady run")
    args = p.parse_args(argv)
    problems: list[str] = []
    print("events run", file=sys.stderr)
    rows = events_throughput(args.events)
    print("\n| Ray's export events | events per CPU-second | events |")
    print("|---|---|---|")
    for name, rate, n in rows:
        print(f"| {name} | {rate:,.0f} | {n:,} |")
    print("metrics run", file=sys.stderr)
    rows = metrics_throughput(args.scrapes, args.series)
    print("\n| metrics scrapes | samples per CPU-second | samples |")
    print("|---|---|---|")
    for name, rate, n in rows:
        print(f"| {name} | {rate:,.0f} | {n:,} |")
    print(
        f"\n| steady: 1 MB/s of logs, 100 tasks/s (400 events/s), {args.series} series every 5 s "
        "| CPU (% of one core) | peak RSS | anonymous RSS | target |"
    )
    print("|---|---|---|---|---|")
    for outputs, name in (
        ("", "archive only"),
        ("logs", "archive + SLS log lines"),
        ("all", "archive + SLS logs, events, metrics"),
    ):
        print(f"steady run: {name}", file=sys.stderr)
        cpu, rss, anon = steady(outputs, args.seconds, args.series)
        target = f"<= {TARGET_CPU:g}%, <= {TARGET_MB:g} MB" if outputs == "all" else ""
        verdict = ""
        if outputs == "all":
            fails = [
                what
                for what, bad in (
                    ("CPU", cpu > TARGET_CPU),
                    ("peak RSS", rss > TARGET_MB),
                    ("anonymous RSS", anon > TARGET_MB),
                )
                if bad
            ]
            verdict = "PASS" if not fails else "FAIL: " + ", ".join(fails)
            if fails:
                problems.append(
                    f"FAIL steady, all SLS outputs: {cpu:.1f}% of a core, peak {rss:.0f} MiB, anonymous {anon:.0f} MiB ({', '.join(fails)} over {target})"
                )
        print(f"| {name} | {cpu:.1f}% | {rss:.0f} MiB | {anon:.0f} MiB | {target} {verdict} |")
    return exit_status(problems, "benchmarks.collector_sls")


if __name__ == "__main__":
    sys.exit(main())
