"""The collector's cost: throughput to the archive per core, and CPU and RSS at a steady log rate.

    .venv/bin/python -m benchmarks.collector_throughput [--mb 512] [--seconds 30] [--sls-mb 64]

Prints three markdown tables. Beside our throughput, in the same run: `gzip -1` (C) over the same bytes, the floor
for compressing them on one core. Beside the steady-rate numbers: Fluent Bit's published figures (it does not run
here). The archive is a local directory; log lines are Ray's real line formats (../shared/reference).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.outcome import exit_status

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ray-2.60" / "logs" / "log_line_samples.txt"
NODE_ID = "ab" * 28
SESSION = "session_2026-11-25_20-59-21_325155_1996"
FLUENT_BIT = "Fluent Bit (published): ~12% of a core and 47 MB RSS at 10 MB/s; ~36 MB/s per core"


def sample_lines() -> list[bytes]:
    if REFERENCE.exists():
        lines = [l for l in REFERENCE.read_bytes().splitlines() if l and not l.startswith(b"#")]
        if lines:
            return [l + b"\n" for l in lines]
    return [b"[2026-11-25 19:58:17,283 I 7013 7013] (raylet) main.cc:283: a line of log\n"]


def make_session(root: Path) -> Path:
    session = root / SESSION
    (session / "logs").mkdir(parents=True)
    (session / f"metrics_export_port_{NODE_ID}").write_text("1")
    (session / "logs" / "raylet.out").write_bytes(b"Setting node ID node_id=" + NODE_ID.encode() + b"\n")
    return session


def fill(logs: Path, total_mb: int, files: int = 16) -> int:
    rng = random.Random(1)
    lines = sample_lines()
    block = b"".join(rng.choice(lines) for _ in range(20000))
    per_file = total_mb * 2**20 // files
    written = 0
    for i in range(files):
        with open(logs / f"worker-{i:056x}-01000000-{1000 + i}.out", "wb") as f:
            n = 0
            while n < per_file:
                f.write(block)
                n += len(block)
            written += n
    return written


def throughput(total_mb: int) -> tuple[float, float, float]:
    """(MB/s per CPU-second for our collector, wall MB/s, MB/s per core for gzip -1) over the same files."""
    from archive.storage.local import LocalStore
    from collector.service import Collector
    from collector.settings import CollectorSettings
    from collector.sources.session_dir import SessionDir

    root = Path(tempfile.mkdtemp(prefix="rh-bench-collector-"))
    try:
        session = make_session(root)
        size = fill(session / "logs", total_mb)
        print(f"  shipping {size / 2**20:.0f} MiB of log lines", file=sys.stderr)
        settings = CollectorSettings(
            session_dir=str(session), archive=str(root / "archive"), cluster="bench", namespace="bench", once=True
        )
        collector = Collector(settings, LocalStore(root / "archive"), SessionDir(session))
        before = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        collector.run()
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        archived = archived_bytes(root / "archive", "worker-")
        if archived != size:  # a fast collector that loses bytes is no result
            raise BenchmarkError(f"the archive holds {archived:,} bytes of the worker files, {size:,} were written")
        mb = size / 1e6
        gz_cpu = 0.0
        for f in (session / "logs").glob("worker-*.out"):
            b0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            with open(f, "rb") as src:
                subprocess.run(["gzip", "-1", "-c"], stdin=src, stdout=subprocess.DEVNULL, check=True)
            b1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            gz_cpu += (b1.ru_utime - b0.ru_utime) + (b1.ru_stime - b0.ru_stime)
        return mb / cpu, mb / wall, mb / gz_cpu
    finally:
        shutil.rmtree(root, ignore_errors=True)


class BenchmarkError(Exception):
    """A run whose answer is wrong: its numbers are not a result."""


def archived_bytes(archive: Path, name_prefix: str) -> int:
    """The bytes of the archived log files whose names start with name_prefix, decoded from their segments."""
    from archive import logs as segments
    from archive.storage.local import LocalStore

    store = LocalStore(archive)
    return sum(
        len(segments.decode(store.get(o.key)))
        for o in store.list("")
        if "/logs/" in o.key and o.key.rsplit("/logs/", 1)[1].startswith(name_prefix)
    )


def sls_files(logs: Path, total_mb: int) -> int:
    """One file per line format Ray writes (C++ components, Python components, raw worker output), from the
    reference's real lines, so each format's path is measured on its own share."""
    rng = random.Random(3)
    lines = sample_lines()
    kinds = {
        "raylet.out": [l for l in lines if l.startswith(b"[")],
        "dashboard.log": [l for l in lines if l[:4].isdigit() and b"\t" in l[:30]],
        f"worker-{'c' * 56}-01000000-4242.out": [
            l for l in lines if not l.startswith(b"[") and not l[:4].isdigit() and not l.startswith(b":")
        ],
    }
    written = 0
    for name, pool in kinds.items():
        block = b"".join(rng.choice(pool) for _ in range(20000))
        with open(logs / name, "wb") as f:
            n = 0
            while n < total_mb * 2**20 // len(kinds):
                f.write(block)
                n += len(block)
        written += n
    return written


def sls(total_mb: int) -> list[tuple[str, float, float, int]]:
    """(path, MB per CPU-second, lines per CPU-second, lines) into the SLS test server (its own process): our
    sink, then in the same run the SDK's `put_logs` over LogLineParser's records (the straightforward design)."""
    from aliyun.log import LogClient, LogItem, PutLogsRequest

    from archive.log_records import LogLineParser
    from collector.sinks.sls import SlsConfig, SlsSink, hash_key
    from collector.sources.session_dir import LogFile

    root = Path(tempfile.mkdtemp(prefix="rh-bench-sls-"))
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.sls"],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline())
        logs = root / "logs"
        logs.mkdir()
        size = sls_files(logs, total_mb)
        files = [
            LogFile(p.name, p.stat().st_size, p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(logs.iterdir())
        ]
        endpoint, proxy = "sls.test", f"http://127.0.0.1:{port}"
        key_id, secret = "test-akid", "test-secret"  # the test server's fixed credentials (tests/servers/sls.py)
        print(f"  sending {size / 2**20:.0f} MiB to the SLS test server", file=sys.stderr)
        sink = SlsSink(
            SlsConfig(
                endpoint,
                "rayhistory",
                "ray-logs",
                key_id,
                secret,
                str(root / "ck.json"),
                proxy=proxy,
                shard_bytes_per_second=1 << 40,
            ),
            "n" * 56,
            logs,
        )
        cpu = time.process_time()
        sink.offer(files)
        assert sink.close(600), "the sink did not drain"
        cpu = time.process_time() - cpu
        lines = sink.stats().lines_sent
        rows = [("rayhistory sink (one-pass reader, plain Python)", size / 1e6 / cpu, lines / cpu, lines)]
        client = LogClient(endpoint, key_id, secret)
        client._session.proxies = {"http": proxy, "https": proxy}
        client._session.trust_env = False
        cpu = time.process_time()
        sent = 0
        for f in files:
            parser = LogLineParser(f.path, "n" * 56)
            records = parser.feed((logs / f.path).read_bytes()) + parser.flush()
            for i in range(0, len(records), 4096):
                items = []
                for r in records[i : i + 4096]:
                    item = LogItem(r.time_ns // 10**9 if r.time_ns else int(time.time()))
                    item.set_contents(
                        [
                            (k, str(v))
                            for k, v in (
                                ("message", r.message),
                                ("level", r.level),
                                ("component", r.component),
                                ("caller", r.source),
                                ("pid", r.pid),
                                ("tid", r.tid),
                            )
                            if v is not None
                        ]
                    )
                    items.append(item)
                client.put_logs(
                    PutLogsRequest(
                        "rayhistory",
                        "ray-logs",
                        "ray",
                        "n",
                        items,
                        hashKey=hash_key("n", f.path),
                        compress=True,
                        compress_type="lz4",
                    )
                )
                sent += len(items)
        cpu = time.process_time() - cpu
        rows.append(("baseline: LogLineParser + SDK put_logs", size / 1e6 / cpu, sent / cpu, sent))
        if lines != sent:
            raise BenchmarkError(f"the sink sent {lines:,} lines, the baseline {sent:,} from the same files")
        return rows
    finally:
        server.stdin.close()
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def _proc_cpu_rss(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, peak RSS bytes, current anonymous RSS bytes): the anonymous part excludes the pages of
    shared libraries mapped from disk, which the kernel can drop and other processes share."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = {
        l.split(":")[0]: l.split()[1]
        for l in Path(f"/proc/{pid}/status").read_text().splitlines()
        if l.startswith(("VmHWM:", "RssAnon:"))
    }
    return cpu, int(status["VmHWM"]) * 1024, int(status["RssAnon"]) * 1024


def steady(rate_mb: float, seconds: float, interval: float, with_sls: bool = False) -> tuple[float, float, float]:
    """(% of one core, peak RSS MiB, anonymous RSS MiB at the end) of a collector process while a writer appends at rate_mb MB/s; with_sls: it
    also streams every line to the SLS test server (in its own process)."""
    root = Path(tempfile.mkdtemp(prefix="rh-bench-steady-"))
    proc = server = None
    try:
        session = make_session(root)
        extra: list[str] = []
        env = dict(os.environ)
        if with_sls:
            server = subprocess.Popen(
                [sys.executable, "-m", "tests.servers.sls"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            port = int(server.stdout.readline())
            extra = [
                "--sls-endpoint",
                "sls.test",
                "--sls-project",
                "rayhistory",
                "--sls-logstore",
                "ray-logs",
                "--sls-proxy",
                f"http://127.0.0.1:{port}",
            ]
            env.update(ALIBABA_CLOUD_ACCESS_KEY_ID="test-akid", ALIBABA_CLOUD_ACCESS_KEY_SECRET="test-secret")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rayhistory.cli",
                "collect",
                "--session-dir",
                str(session),
                "--archive",
                str(root / "archive"),
                "--cluster",
                "bench",
                "--namespace",
                "bench",
                "--interval",
                str(interval),
                *extra,
            ],
            stderr=subprocess.DEVNULL,
            env=env,
        )
        lines = sample_lines()
        rng = random.Random(2)
        chunk = b"".join(rng.choice(lines) for _ in range(2000))
        files = [open(session / "logs" / f"worker-{i:056x}-01000000-{2000 + i}.out", "ab") for i in range(8)]
        warmup = time.monotonic() + 3
        while time.monotonic() < warmup:
            time.sleep(0.1)
        cpu0, _, _ = _proc_cpu_rss(proc.pid)
        start = time.monotonic()
        written = 0
        while (now := time.monotonic()) - start < seconds:
            due = rate_mb * 1e6 * (now - start)
            while written < due:
                f = files[written // len(chunk) % len(files)]
                f.write(chunk)
                f.flush()
                written += len(chunk)
            time.sleep(0.02)
        cpu1, rss, anon = _proc_cpu_rss(proc.pid)
        if proc.poll() is not None:
            raise BenchmarkError(f"the collector exited with status {proc.returncode} during the steady run")
        for f in files:
            f.close()
        return 100 * (cpu1 - cpu0) / (time.monotonic() - start), rss / 2**20, anon / 2**20
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        if server is not None:
            server.stdin.close()
            server.wait(30)
        shutil.rmtree(root, ignore_errors=True)


SLS_TARGET_MB = 40  # MB per CPU-second, our sink
ARCHIVE_TARGET_MB = 100  # MB/s per core, to the archive
STEADY_TARGET = (5.0, 80.0)  # at 1 MB/s: % of one core, anonymous RSS MiB (the process's own memory)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except BenchmarkError as e:
        return exit_status([str(e)], "benchmarks.collector_throughput")


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=int, default=512, help="MiB of logs for the throughput run")
    p.add_argument("--seconds", type=float, default=30, help="length of each steady-rate run")
    p.add_argument("--interval", type=float, default=10, help="collector upload interval in the steady runs")
    p.add_argument("--sls-mb", type=int, default=64, help="MiB of logs for the SLS run (0: skip it)")
    p.add_argument("--steady-only", action="store_true", help="only the steady-rate runs")
    args = p.parse_args(argv)
    problems = []
    if args.steady_only:
        args.sls_mb = 0
    if args.sls_mb:
        print("SLS run", file=sys.stderr)
        rows = sls(args.sls_mb)
        print("\n| to SLS (local test server) | MB per CPU-second | lines per CPU-second | lines | target |")
        print("|---|---|---|---|---|")
        for name, mb, lines, n in rows:
            ours = name.startswith("rayhistory")
            print(f"| {name} | {mb:.1f} | {lines:,.0f} | {n:,} | {f'>= {SLS_TARGET_MB}' if ours else ''} |")
            if ours and mb < SLS_TARGET_MB:
                problems.append(f"FAIL {name}: {mb:.1f} MB per CPU-second (target >= {SLS_TARGET_MB})")
        print("Fluent Bit (published): ~36 MB/s per core on single-line logs")
    if not args.steady_only:
        print("throughput run", file=sys.stderr)
        per_core, wall, gzip_core = throughput(args.mb)
        print("\n| to the archive (local dir) | rayhistory | gzip -1 (C), same bytes | target |")
        print("|---|---|---|---|")
        print(f"| MB/s per core | {per_core:.0f} | {gzip_core:.0f} | >= {ARCHIVE_TARGET_MB} |")
        if per_core < ARCHIVE_TARGET_MB:
            problems.append(f"FAIL to the archive: {per_core:.0f} MB/s per core (target >= {ARCHIVE_TARGET_MB})")
        print(f"| MB/s wall clock (2 cores) | {wall:.0f} | | |")
    rows = []
    for rate, with_sls in ((1, False), (10, False), (1, True), (10, True)):
        print(f"steady run at {rate} MB/s{' with SLS' if with_sls else ''}", file=sys.stderr)
        cpu, rss, anon = steady(rate, args.seconds, args.interval, with_sls)
        rows.append((f"{rate} MB/s{', archive + SLS' if with_sls else ''}", cpu, rss, anon))
    print(f"\n| steady log rate | CPU (% of one core) | peak RSS | anonymous RSS | target (1 MB/s) | {FLUENT_BIT} |")
    print("|---|---|---|---|---|---|")
    for rate, cpu, rss, anon in rows:
        target = f"<= {STEADY_TARGET[0]:g}%, <= {STEADY_TARGET[1]:g} MB" if rate.startswith("1 ") else ""
        print(f"| {rate} | {cpu:.1f}% | {rss:.0f} MiB | {anon:.0f} MiB | {target} | |")
        if target and (cpu > STEADY_TARGET[0] or anon > STEADY_TARGET[1]):
            problems.append(f"FAIL steady {rate}: {cpu:.1f}% of a core, {anon:.0f} MiB anonymous RSS (target {target})")
    return exit_status(problems, "benchmarks.collector_throughput")


if __name__ == "__main__":
    sys.exit(main())
