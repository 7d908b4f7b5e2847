"""The SLS sink's fast paths against their definitions: the column-wise LogGroup encoder against the SDK's own
protobuf message, and the column-wise line parser against LogLineParser, on Ray's real line formats."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
from aliyun.log.proto import LogGroupRaw

from archive.log_records import LogLineParser, Markers
from collector.sinks.sls import records_columns
from collector.sinks.sls.columns import ColumnChunk, parse_chunk, read_chunk
from collector.sinks.sls.wire import Columns, encode_logs, group_tail, log_bytes
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
    cols = Columns(
        np.array(seconds),
        np.array(nanos, np.uint32),
        {"message": pa.array(messages), "__dedup__": pa.array([f"f:{i}" for i in range(7)]), "level": pa.array(levels)},
        {"component": "raylet", "pid": "12"},
    )
    logs = encode_logs(cols)
    tags = [("node", "n1"), ("file", "logs/raylet.out")]
    expected = sdk_bytes(
        [
            (
                seconds[i],
                nanos[i],
                [
                    (k, v)
                    for k, v in (
                        ("message", messages[i]),
                        ("__dedup__", f"f:{i}"),
                        ("level", levels[i]),
                        ("component", "raylet"),
                        ("pid", "12"),
                    )
                    if v is not None
                ],
            )
            for i in range(7)
        ],
        tags,
    )
    assert bytes(log_bytes(logs, 0, 7)) + group_tail("ray", "node-1", tags) == expected
    # any run of rows is a slice of the same bytes
    assert bytes(log_bytes(logs, 2, 5)) == b"".join(logs[i].as_py() for i in range(2, 5))


def _reference_lines() -> list[bytes]:
    return [
        l + b"\n"
        for l in needs.reference("logs", SAMPLES.name).read_bytes().splitlines()
        if l and not l.startswith((b"#", b"====="))
    ]


def _both_ways(name: str, data: bytes, chunk: int = 4096) -> tuple[bytes, bytes, int]:
    """The encoded items of data, by LogLineParser alone and by the sink's mix of both paths (fed in chunks,
    with the same hand-over the sink does); and how many records the column path produced."""
    slow = LogLineParser(name, "n")
    records = slow.feed(data) + slow.flush()
    expected = encode_logs(records_columns(records, "fid:"))

    parser = LogLineParser(name, "n")
    parts, fast, pos = [], 0, 0
    while pos < len(data):  # the sink's loop (SlsSink._read_file), without the file
        piece = data[pos : pos + chunk]
        got, pos = read_chunk(parser, piece, pos, pos + len(piece) < len(data), 1 << 20, "fid:")
        for part in got:
            if isinstance(part, ColumnChunk):
                fast += part.count
                parts.append(encode_logs(part.columns))
            else:
                parts.append(encode_logs(records_columns(part, "fid:")))
    recs = parser.flush()
    if recs:
        parts.append(encode_logs(records_columns(recs, "fid:")))
    mixed = b"".join(bytes(log_bytes(p, 0, len(p))) for p in parts)
    return bytes(log_bytes(expected, 0, len(expected))), mixed, fast


def test_the_column_path_yields_what_loglineparser_yields_on_mixed_input():
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

    # a record longer than a chunk stays with LogLineParser; the column path resumes after it
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


def test_the_column_path_on_raw_output_with_colours():
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
    # an empty marker clears the state: left to LogLineParser
    slow, mixed, fast = _both_ways(worker, b":task_name:x\na\n:task_name:\nb\n")
    assert _contents(mixed) == _contents(slow) and fast == 0


def test_the_column_path_on_rays_real_lines():
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


def test_the_column_path_declines_what_it_does_not_know():
    markers = Markers()
    for data in (b"windows line\r\n" * 3, b"\xff\xfe not utf-8\n" * 3):
        assert parse_chunk(data, 0, "worker-" + "a" * 56 + "-01000000-1.out", markers, 1 << 20, "f:") is None
    assert (
        parse_chunk(b"x" * 100 + b"\n" + b"y\n", 0, "worker-" + "a" * 56 + "-01000000-1.out", markers, 50, "f:") is None
    )
