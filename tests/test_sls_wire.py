"""The SLS sink's fast paths against their definitions: the LogGroup encoder against the SDK's own protobuf
message, and the one-pass line reader (lines.py) against LogLineParser, on Ray's real line formats."""

from __future__ import annotations

import random

from aliyun.log.proto import LogGroupRaw

from archive.log_records import LogLineParser, Record
from collector.sinks.sls.lines import LineReader
from collector.sinks.sls.wire import Encoder, group_tail
from tests import needs

SAMPLES = needs.REFERENCE / "logs" / "log_line_samples.txt"
CPP_NAMED = b"[2026-11-25 19:58:42,362 W 7013 7023] (raylet) store.cc:366: Disconnecting client %d\n"
CPP_BARE = b"[2026-11-25 19:58:42,%03d I 7100 7188] core_worker.cc:906: Task done: %d\n"
PY = b"2026-11-25 19:58:12,%03d\tINFO utils.py:319 -- modules: %d\n"


def sdk_bytes(items: list[tuple[int, int, list[tuple[str, str]]]], tags: list[tuple[str, str]]) -> bytes:
    group = LogGroupRaw()
    group.Topic, group.Source = "ray", "node-1"
    for seconds, nanos, contents in items:
        log = group.Logs.add()
        log.Time, log.Time_ns = seconds, nanos
        for k, v in contents:
            c = log.Contents.add()
            c.Key, c.Value = k, v.encode()
    for k, v in tags:
        t = group.LogTags.add()
        t.Key, t.Value = k, v
    return group.SerializeToString()


def test_the_encoder_writes_exactly_the_sdks_message():
    rng = random.Random(7)
    messages = ["", "short", "ünïcode ✓", "x" * 127, "y" * 128, "z" * 20000, "w" * 3_000_000]
    levels = ["INFO", None, "ERROR", "WARNING", None, "DEBUG", "INFO"]
    seconds = [0, 127, 128, 1_700_000_000, 2**32 - 1, 5, 16384]
    nanos = [rng.randrange(10**9) for _ in messages]
    offsets = [0, 127, 128, 16383, 16384, 2**31, 2**40]
    records = [
        Record(
            "raylet.out",
            "n",
            offsets[i],
            offsets[i] + 10,
            messages[i],
            "cpp",
            time_ns=seconds[i] * 10**9 + nanos[i],
            level=levels[i],
            component="raylet",
            pid=12,
            job_id="01000000" if i % 2 else None,
            part=i % 3,
            complete=i != 4,
            line=i + 1,
        )
        for i in range(7)
    ]
    entries = Encoder().entries(records, "f:")
    tags = [("node", "n1"), ("file", "logs/raylet.out")]

    def contents(i: int) -> list[tuple[str, str]]:
        r = records[i]
        pairs = (
            ("message", r.message),
            ("__dedup__", f"f:{r.offset}"),
            ("line", str(r.line)),
            ("offset", str(r.offset)),
            ("level", r.level),
            ("component", "raylet"),
            ("pid", "12"),
            ("job_id", r.job_id),
            ("part", str(r.part) if r.part or not r.complete else None),
        )
        return [(k, v) for k, v in pairs if v is not None]

    expected = sdk_bytes([(seconds[i], nanos[i], contents(i)) for i in range(7)], tags)
    assert b"".join(entries) + group_tail("ray", "node-1", tags) == expected
    # any run of entries is a LogGroup's Logs on its own
    assert b"".join(entries[2:5]) + group_tail("ray", "node-1", []) == sdk_bytes(
        [(seconds[i], nanos[i], contents(i)) for i in range(2, 5)], []
    )


def _reference_lines() -> list[bytes]:
    return [
        l + b"\n"
        for l in needs.reference("logs", SAMPLES.name).read_bytes().splitlines()
        if l and not l.startswith((b"#", b"====="))
    ]


def _both_ways(name: str, data: bytes, chunk: int = 4096) -> tuple[bytes, bytes, int]:
    """The encoded items of data, by LogLineParser alone and by the sink's reader (fed in chunks, with the same
    hand-over the sink does); and how many records the fast path produced."""
    slow = LogLineParser(name, "n")
    expected = Encoder().entries(slow.feed(data) + slow.flush(), "fid:")

    reader = LineReader(LogLineParser(name, "n"), Encoder())
    fast_chunk = reader.chunk
    fast = 0

    def counted(*args):  # the fast path's records, counted
        nonlocal fast
        got = fast_chunk(*args)
        fast += got[0].count if got is not None else 0
        return got

    reader.chunk = counted  # type: ignore[method-assign]
    entries, pos = [], 0
    while pos < len(data):  # the sink's loop (SlsSink._read_file), without the file
        piece = data[pos : pos + chunk]
        got, pos = reader.read(piece, pos, pos + len(piece) < len(data), "fid:")
        entries += [e for part in got for e in part.entries]
    flushed = reader.flush("fid:")
    if flushed is not None:
        entries += flushed.entries
    return b"".join(expected), b"".join(entries), fast


def test_the_fast_path_yields_what_loglineparser_yields_on_mixed_input():
    rng = random.Random(11)
    header_lines = [CPP_NAMED % i for i in range(300)] + [CPP_BARE % (i % 1000, i) for i in range(300)]
    rng.shuffle(header_lines)
    traceback = b'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'
    cpp = b"".join(header_lines[:200]) + traceback + b"".join(header_lines[200:]) + b"[not a header\n"
    slow, mixed, fast = _both_ways("python-core-worker-ab12cd_4242.log", cpp)
    assert mixed == slow and fast > 400, fast

    py = (
        b"".join(PY % (i % 1000, i) for i in range(500))
        + b"  continuation of the last one\n"
        + b"".join(PY % (i % 1000, i) for i in range(100))
    )
    slow, mixed, fast = _both_ways("dashboard.log", py)
    assert mixed == slow and fast > 400, fast

    # a record longer than a chunk stays with LogLineParser; the fast path resumes after it
    long = (
        b"".join(PY % (i, i) for i in range(50))
        + (PY % (1, 1)).rstrip()
        + b"z" * 10000
        + b"\n"
        + b"".join(PY % (i, i) for i in range(300))
    )
    slow, mixed, fast = _both_ways("dashboard.log", long)
    assert mixed == slow and fast > 250, fast


def _contents(encoded: bytes) -> list[list[tuple[str, bytes]]]:
    """Each item's contents (raw output carries no time of its own: each path stamps it when read)."""
    group = LogGroupRaw()
    group.ParseFromString(encoded)
    return [[(c.Key, c.Value) for c in log.Contents] for log in group.Logs]


def _without_raw_times(encoded: bytes) -> list:
    """Items with their time, except items of raw output (no header): each path stamps those when read."""
    group = LogGroupRaw()
    group.ParseFromString(encoded)
    return [
        (
            [(c.Key, c.Value) for c in log.Contents],
            (log.Time, log.Time_ns) if any(c.Key == "caller" for c in log.Contents) else None,
        )
        for log in group.Logs
    ]


def test_the_fast_path_on_raw_output_with_colours():
    worker = "worker-" + "b" * 56 + "-01000000-4242.out"
    lines = [
        b"plain %d\n",
        b"\x1b[36mray::Task.run()\x1b[39m (pid=7657) step %d\n",
        b"\x1b[1m\x1b[31mred\x1b[0m %d\n",
        b"2026-11-25 19:58:12,633\tINFO user.py:3 -- looks like a header %d\n",
    ]
    data = b"".join(lines[i % 3] % i for i in range(900))
    slow, mixed, fast = _both_ways(worker, data)
    assert _contents(mixed) == _contents(slow) and fast == 900
    assert [v for k, v in _contents(mixed)[1] if k == "message"] == [b"ray::Task.run() (pid=7657) step 1"]
    # header-shaped lines in raw output are read as headers (level, caller, time), as LogLineParser reads them
    lines.append(b"[2026-11-25 19:58:42,362 W 7013 7023] (raylet) store.cc:366: C++ from a driver %d\n")
    data = b"".join(lines[i % 5] % i for i in range(900))
    slow, mixed, fast = _both_ways(worker, data)
    assert _without_raw_times(mixed) == _without_raw_times(slow) and fast == 900
    # marker lines set the job, task and actor of the lines after them, across chunks
    tasks = b"".join(
        b":task_name:t%d\n" % (i // 7) + (lines[i % 3] % i) if i % 7 == 0 else lines[i % 3] % i for i in range(900)
    )
    slow, mixed, fast = _both_ways(worker, b":job_id:01000000\n:actor_name:A\n" + tasks)
    assert _contents(mixed) == _contents(slow) and fast == 900
    assert ("task_name", b"t128") in _contents(mixed)[-1] and ("job_id", b"01000000") in _contents(mixed)[-1]
    # an empty marker clears the state
    slow, mixed, fast = _both_ways(worker, b":task_name:x\na\n:task_name:\nb\n")
    assert _contents(mixed) == _contents(slow) and fast == 2
    assert ("task_name", b"x") in _contents(mixed)[0] and all(k != "task_name" for k, _ in _contents(mixed)[1])


def test_the_fast_path_on_rays_real_lines():
    lines = _reference_lines()
    assert len(lines) > 20, f"{SAMPLES} holds {len(lines)} lines of Ray's"
    for name, keep in (
        ("raylet.out", lambda l: l.startswith(b"[")),
        ("dashboard.log", lambda l: l[:4].isdigit() and b"\t" in l[:30]),
    ):
        data = b"".join(l for l in lines if keep(l)) * 20
        slow, mixed, fast = _both_ways(name, data, chunk=64 << 10)
        assert mixed == slow, name
        assert fast > 0.9 * data.count(b"\n"), (name, fast)
    # every kind at once in a worker's output (the collector benchmarks' mix): headers, markers, colours, JSON
    rng = random.Random(3)
    data = b"".join(rng.choice(lines) for _ in range(5000))
    slow, mixed, fast = _both_ways("worker-" + "c" * 56 + "-01000000-77.out", data, chunk=32 << 10)
    assert _without_raw_times(mixed) == _without_raw_times(slow)
    assert fast == len(_contents(slow)) > 4000


def test_the_fast_path_declines_what_it_does_not_know():
    worker = "worker-" + "a" * 56 + "-01000000-1.out"
    for data in (b"windows line\r\n" * 3, b"\xff\xfe not utf-8\n" * 3, b"x" * 100 + b"\n" + b"y\n"):
        reader = LineReader(LogLineParser(worker, "n", max_record_bytes=64), Encoder())
        assert reader.chunk(data, 0, "f:") is None
        # ... and LogLineParser reads it, to the records it gives on its own
        slow = LogLineParser(worker, "n", max_record_bytes=64)
        got, _ = reader.read(data, 0, False, "f:")
        flushed = reader.flush("f:")
        entries = [e for g in got for e in g.entries] + (flushed.entries if flushed else [])
        expected = Encoder().entries(slow.feed(data) + slow.flush(), "f:")
        assert _contents(b"".join(entries)) == _contents(b"".join(expected)) and len(entries) >= 2
    # a continuation line in a component's log is LogLineParser's
    reader = LineReader(LogLineParser("raylet.out", "n"), Encoder())
    assert reader.chunk(CPP_NAMED % 1 + b"  more\n" + CPP_NAMED % 2, 0, "f:") is None
