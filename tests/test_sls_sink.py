"""Log lines into Alibaba SLS through the real SDK (aliyun-log-python-sdk) against the SLS test server (no SLS
emulator exists; tests/servers/sls.py): the SDK and the server, the sink under errors, quotas and kill -9, its
throughput, and the collector streaming to SLS."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import pytest
from aliyun.log import GetLogsRequest

from collector.sinks.sls import SlsConfig, SlsError, SlsSink, _OneAttemptClient
from collector.sources.session_dir import LogFile
from tests.servers.sls import MAX_LOGS_PER_GROUP, SlsServer, decode_log_group, running_sls

ROOT = Path(__file__).resolve().parents[1]
NODE = "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40"
CPP = b"[2026-11-25 19:58:42,362 W 7013 7023] (raylet) store.cc:366: Disconnecting client %d\n"


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def scan(logs: Path) -> list[LogFile]:
    out = []
    for path in sorted(logs.rglob("*")):
        if path.is_file():
            st = path.stat()
            out.append(LogFile(path.relative_to(logs).as_posix(), st.st_size, st.st_ino, st.st_mtime_ns))
    return out


@pytest.fixture
def sls():
    with running_sls() as server:
        yield server


def config(server: SlsServer, tmp_path: Path, **kw) -> SlsConfig:
    base = dict(
        endpoint=server.endpoint,
        project="rayhistory",
        logstore="ray-logs",
        access_key_id=server.access_key_id,
        access_key_secret=server.access_key_secret,
        checkpoint_path=str(tmp_path / "sls-checkpoint.json"),
        proxy=server.proxy,
        backoff_initial=0.05,
        backoff_max=0.5,
        idle_flush_seconds=0.2,
        checkpoint_interval=0.05,
    )
    base.update(kw)
    return SlsConfig(**base)


def by_file(server: SlsServer) -> dict[str, list]:
    files = defaultdict(list)
    for x in server.items():
        files[x.tags["file"]].append(x)
    return files


# --- the SDK against the test server ----------------------------------------------------------------------
def test_sdk_signature_is_checked_and_getlogs_returns_what_was_put(sls):
    from aliyun.log import LogItem, PutLogsRequest

    def client(secret):
        c = _OneAttemptClient(sls.endpoint, sls.access_key_id, secret, source="n1")
        c._session.proxies = {"http": sls.proxy}
        c._session.trust_env = False
        return c

    req = PutLogsRequest("p", "ls", "t", "n1", [LogItem(contents=[("message", "héllo")])], hashKey="0" * 32)
    with pytest.raises(SlsError) as refused:
        client("wrong-secret").put_logs(req)
    assert refused.value.status == 401 and refused.value.code == "SignatureNotMatch"
    assert sls.items() == []
    client(sls.access_key_secret).put_logs(req)
    now = int(time.time())
    got = client(sls.access_key_secret).get_logs(GetLogsRequest("p", "ls", now - 60, now + 60, query="héllo"))
    assert [x.get_contents()["message"] for x in got.get_logs()] == ["héllo"]


def test_the_test_server_refuses_what_sls_refuses(sls):
    """More than 4,096 logs in one LogGroup (SLS's limit; the SDK itself allows 512,000), and a Log without its
    required Time, are refused, so that a sink breaking either rule fails its tests here."""
    from aliyun.log import LogItem, PutLogsRequest
    from aliyun.log.proto import LogGroupRaw

    c = _OneAttemptClient(sls.endpoint, sls.access_key_id, sls.access_key_secret, source="n1")
    c._session.proxies = {"http": sls.proxy}
    c._session.trust_env = False

    def put(n: int) -> None:
        items = [LogItem(1_764_100_000, contents=[("message", f"m{i}")]) for i in range(n)]
        c.put_logs(PutLogsRequest("p", "ls", "t", "n1", items, hashKey="0" * 32))

    put(MAX_LOGS_PER_GROUP)
    assert len(sls.items()) == 4096
    with pytest.raises(SlsError) as refused:
        put(MAX_LOGS_PER_GROUP + 1)
    assert refused.value.status == 400 and refused.value.code == "InvalidLogSize"
    assert len(sls.items()) == 4096

    group = LogGroupRaw()
    log = group.Logs.add()
    content = log.Contents.add()
    content.Key, content.Value = "message", b"no time"
    with pytest.raises(ValueError, match="no Time"):
        decode_log_group(group.SerializePartialToString())  # the SDK's own serializer refuses to write it
    log.Time = 7
    assert decode_log_group(group.SerializeToString())["logs"][0]["time"] == 7


def test_a_worker_files_nil_job_id_is_no_job_id(sls, tmp_path):
    """Ray names a worker's files worker-<worker id>-<job id>-<pid>; a worker started for no job yet has the nil
    job id ffffffff, which is not a job: its lines carry no job_id until a :job_id: marker gives one."""
    logs = tmp_path / "logs"
    logs.mkdir()
    idle = f"worker-{'b' * 56}-ffffffff-4242.out"
    busy = f"worker-{'c' * 56}-02000000-4243.out"
    (logs / idle).write_bytes(b"starting up\n:job_id:03000000\nnow in a job\n")
    (logs / busy).write_bytes(b"hello from job 2\n")
    sink = SlsSink(config(sls, tmp_path), NODE, logs)
    sink.offer(scan(logs))
    assert sink.close(60)
    files = by_file(sls)
    assert [(x.contents["message"], x.contents.get("job_id")) for x in files[idle]] == [
        ("starting up", None),
        ("now in a job", "03000000"),
    ]
    assert [(x.contents["message"], x.contents.get("job_id")) for x in files[busy]] == [
        ("hello from job 2", "02000000")
    ]


# --- the sink ----------------------------------------------------------------------------------------------
def test_a_10mb_line_goes_in_requests_under_10mb_and_order_holds_per_file(sls, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    big = b"2026-11-25 19:58:12,633\tINFO big.py:1 -- " + b"y" * (10 << 20)
    (logs / "dashboard.log").write_bytes(b"2026-11-25 19:58:12,633\tINFO a.py:1 -- first\n" + big + b"\nlast\n")
    (logs / "raylet.out").write_bytes(b"".join(CPP % i for i in range(20000)))
    sink = SlsSink(config(sls, tmp_path), NODE, logs)
    sink.offer(scan(logs))
    assert sink.close(60)
    assert sls.requests and all(r["raw_bytes"] < 10 << 20 and r["status"] == 200 for r in sls.requests)
    files = by_file(sls)
    dash = files["dashboard.log"]
    assert dash[0].contents["message"] == "first" and dash[-1].contents["message"] == "last"
    assert (
        "".join(x.contents["message"] for x in dash[1:-1])
        == big.decode()[len("2026-11-25 19:58:12,633\tINFO big.py:1 -- ") :]
    )
    raylet = files["raylet.out"]
    assert [int(x.contents["message"].rsplit(" ", 1)[1]) for x in raylet] == list(range(20000))
    # One route key per file, so that a file stays on one shard, in order: SLS routes by a 128-bit key in the
    # MD5 space of its shard ranges; ours is the MD5 of node, NUL, file path (collector/sinks/sls.py documents it).
    assert {x.hash_key for x in raylet} == {hashlib.md5(NODE.encode() + b"\0raylet.out").hexdigest()}
    assert re.fullmatch(r"[0-9a-f]{32}", raylet[0].hash_key) and dash[0].hash_key != raylet[0].hash_key
    assert raylet[0].contents["level"] == "WARNING" and raylet[0].tags["node_id"] == NODE
    stats = sink.stats()
    assert stats.lines_sent == len(sls.items()) and stats.lag_bytes == 0 and stats.dropped == 0


def test_sls_answering_500_then_recovering_loses_nothing_without_the_sdk_retry_loop(sls, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "raylet.out").write_bytes(b"".join(CPP % i for i in range(3000)))
    sls.fail_puts(500, times=4)
    started = time.monotonic()
    sink = SlsSink(config(sls, tmp_path), NODE, logs)
    sink.offer(scan(logs))
    assert sink.close(30)
    assert time.monotonic() - started < 4  # the SDK alone would have slept 4 x 1 s
    assert [r["status"] for r in sls.requests[:5]] == [500, 500, 500, 500, 200]
    got = [int(x.contents["message"].rsplit(" ", 1)[1]) for x in sls.items()]
    assert got == list(range(3000))
    assert sink.stats().retries == 4 and sink.stats().errors == 4
    # GetLogs through the SDK: what was sent, at most 100 rows a page, with its tags and dedup key
    now = int(time.time()) + 3600 * 24 * 400  # the sample lines are stamped 2026-11-25 in local time
    reader = _OneAttemptClient(sls.endpoint, sls.access_key_id, sls.access_key_secret, source="n1")
    reader._session.proxies = {"http": sls.proxy}
    reader._session.trust_env = False
    page = reader.get_logs(GetLogsRequest("rayhistory", "ray-logs", 0, now, query="client 2999", line=500))
    rows = [x.get_contents() for x in page.get_logs()]
    assert len(rows) == 1 and rows[0]["__tag__:file"] == "raylet.out" and rows[0]["caller"] == "store.cc:366"
    assert rows[0]["__dedup__"].endswith(f":{len(b''.join(CPP % i for i in range(2999)))}")
    page = reader.get_logs(GetLogsRequest("rayhistory", "ray-logs", 0, now, line=100, offset=2950))
    assert [x.get_contents()["message"] for x in page.get_logs()] == [
        f"Disconnecting client {i}" for i in range(2950, 3000)
    ]


def test_quota_403_slows_the_sink_down_then_it_catches_up(sls, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "gcs_server.out").write_bytes(b"".join(CPP % i for i in range(5000)))
    sls.fail_puts(403, times=3)
    sink = SlsSink(config(sls, tmp_path, backoff_initial=0.01), NODE, logs)
    sink.offer(scan(logs))
    assert sink.close(60)
    stats = sink.stats()
    assert stats.throttled == 3 and stats.errors == 0 and stats.dropped == 0
    assert [int(x.contents["message"].rsplit(" ", 1)[1]) for x in sls.items()] == list(range(5000))


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from collector.sinks.sls import SlsConfig, SlsSink
    from tests.test_sls_sink import scan, NODE
    logs, port, ckpt = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    cfg = SlsConfig(endpoint="sls.test", project="rayhistory", logstore="ray-logs", access_key_id="test-akid",
                    access_key_secret="test-secret", checkpoint_path=ckpt, proxy="http://127.0.0.1:" + port,
                    max_batch_items=200, shard_bytes_per_second=400_000, checkpoint_interval=0.05,
                    idle_flush_seconds=0.2)
    sink = SlsSink(cfg, NODE, logs)
    while True:
        sink.offer(scan(logs))
        time.sleep(0.05)
""")


def test_sigkilled_sink_resumes_from_its_checkpoint_at_least_once(sls, tmp_path):
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    n = 12000
    (logs / "raylet.out").write_bytes(b"".join(CPP % i for i in range(n)))
    worker = "old/worker-aa-ffffffff-42.out"
    (logs / worker).write_bytes(
        b":job_id:01000000\n" + b"".join(b":task_name:t%d\nline %d\n" % (i // 100, i) for i in range(3000))
    )
    ckpt = str(tmp_path / "ck.json")

    def child():
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, str(logs), str(sls.port), ckpt],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    first = child()
    try:
        wait_for(lambda: len(sls.items()) > 3000 and os.path.exists(ckpt), 60, "a first part to arrive")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        before = len(sls.items())
        assert before < n + 3000, "the sink finished before it was killed; slow it down"
        second = child()
        try:

            def complete():
                keys = {x.contents["__dedup__"] for x in sls.items()}
                return len(keys) >= n + 3000

            wait_for(complete, 120, "every line after the restart")
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    files = by_file(sls)
    seen: dict[str, str] = {}
    for x in sls.items():
        key = x.contents["__dedup__"]
        assert seen.setdefault(key, x.contents["message"]) == x.contents["message"]  # a repeat is the same item
    raylet = {int(x.contents["message"].rsplit(" ", 1)[1]) for x in files["raylet.out"]}
    assert raylet == set(range(n))
    lines = {x.contents["message"]: x.contents for x in files[worker]}
    assert len(lines) == 3000
    assert lines["line 2999"]["task_name"] == "t29" and lines["line 2999"]["job_id"] == "01000000"
    # line numbers survive the kill: every item, sent before or after it, names its own line in the file
    for file, items in files.items():
        data = (logs / file).read_bytes()
        assert all(data.count(b"\n", 0, int(x.contents["offset"])) + 1 == int(x.contents["line"]) for x in items)
    print(f"\n{before} items before SIGKILL, {len(sls.items()) - (n + 3000)} repeats after the restart")


def test_throughput_into_the_test_server(tmp_path):
    """Measured, not asserted tightly: MB of raylet-style lines parsed and sent per CPU-second of the sink's
    process (the server runs in its own process), and per wall second on this (shared) machine."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.sls"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())
        logs = tmp_path / "logs"
        logs.mkdir()
        body = b"".join(CPP % i for i in range(25000))
        for k in range(4):
            (logs / f"raylet{k}.out").write_bytes(body)
        total = 4 * len(body)
        remote = SlsServer(port=port)
        sink = SlsSink(
            config(remote, tmp_path, proxy=f"http://127.0.0.1:{port}", shard_bytes_per_second=1 << 30), NODE, logs
        )
        cpu, wall = time.process_time(), time.perf_counter()
        sink.offer(scan(logs))
        assert sink.close(300)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stats = sink.stats()
        assert stats.lines_sent == 100000 and stats.bytes_sent == total and stats.errors == 0
    finally:
        server.stdin.close()
        server.wait(10)
    print(
        f"\nSLS sink: {total / cpu / 1e6:.1f} MB per CPU-second, {total / wall / 1e6:.1f} MB/s wall "
        f"({total / 1e6:.1f} MB, {100000 / cpu:.0f} lines per CPU-second)"
    )


def test_the_collector_streams_to_sls_and_the_archive_is_unaffected(sls, tmp_path):
    """`rayhistory collect --sls-*`: lines reach SLS while the archive gets its byte-exact copy."""
    from archive import logs as archive_logs
    from archive.layout import SessionRef
    from archive.storage.local import LocalStore
    from tests.fake_session import NODE_ID, SESSION_NAME, make_session

    session = make_session(tmp_path)
    (session / "logs" / "raylet.out").write_bytes(CPP * 50)
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": sls.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": sls.access_key_secret,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rayhistory.cli",
            "collect",
            "--session-dir",
            str(session),
            "--archive",
            str(tmp_path / "archive"),
            "--cluster",
            "c",
            "--namespace",
            "ns",
            "--interval",
            "0.2",
            "--sls-endpoint",
            sls.endpoint,
            "--sls-project",
            "rayhistory",
            "--sls-logstore",
            "ray-logs",
            "--sls-proxy",
            sls.proxy,
        ],
        env=env,
    )
    try:
        wait_for(lambda: len(by_file(sls).get("raylet.out", [])) >= 50, what="raylet.out's lines in SLS")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    store = LocalStore(tmp_path / "archive")
    node = SessionRef("ns", "c", SESSION_NAME).node(NODE_ID)
    assert archive_logs.read_file(store, node, "raylet.out") == (session / "logs" / "raylet.out").read_bytes()
    # every LogGroup says where its lines come from, so that SLS search can be scoped like the archive's
    assert {(x.tags["namespace"], x.tags["cluster"], x.tags["session"], x.tags["node_id"]) for x in sls.items()} == {
        ("ns", "c", SESSION_NAME, NODE_ID)
    }


def test_sls_without_credentials_is_one_clear_line(tmp_path):
    from tests.fake_session import make_session

    session = make_session(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rayhistory.cli",
            "collect",
            "--session-dir",
            str(session),
            "--archive",
            str(tmp_path / "archive"),
            "--once",
            "--sls-endpoint",
            "cn-hangzhou.log.x",
            "--sls-project",
            "p",
            "--sls-logstore",
            "l",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "ALIBABA_CLOUD_ACCESS_KEY_ID" in out.stderr.strip().splitlines()[-1]
