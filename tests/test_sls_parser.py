"""Ray's log lines parsed into SLS records (archive/log_records.py): every real sample format, C++
continuations and one byte at a time, markers across calls and from a checkpoint, bad bytes and huge lines."""

from __future__ import annotations

import re
import time
from pathlib import Path

from archive.log_records import LogLineParser, Markers

NODE = "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40"


def sample_sections(reference: Path) -> dict[str, bytes]:
    text = (reference / "logs" / "log_line_samples.txt").read_bytes()
    parts = re.split(rb"^===== (\S+).*\n", text, flags=re.M)
    return {name.decode()[5:]: body for name, body in zip(parts[1::2], parts[2::2]) if name.startswith(b"logs/")}


def parse_all(name: str, data: bytes, **kw) -> list:
    p = LogLineParser(name, NODE, **kw)
    return p.feed(data) + p.flush()


def test_records_from_every_sample_format(reference):
    s = sample_sections(reference)
    raylet = parse_all("raylet.out", s["raylet.out"])
    assert len(raylet) == 4
    r = raylet[2]
    assert (r.format, r.level, r.component, r.source, r.pid, r.tid) == (
        "cpp",
        "INFO",
        "raylet",
        "main.cc:711",
        7013,
        7013,
    )
    assert r.message.startswith("Setting node ID node_id=a5f98df8")
    assert r.time_ns == int(time.mktime((2026, 11, 25, 19, 58, 17, 0, 0, -1))) * 10**9 + 302_000_000
    assert [x.offset for x in raylet[1:]] == [x.end for x in raylet[:-1]]

    core = parse_all(
        "python-core-worker-bd861563899ab84e4ee6a094b6d5b20b08369bd331f242f6455460a9_7475.log",
        s["python-core-worker-<worker_id>_<pid>.log"],
    )
    assert core[0].component == "python-core-worker" and core[0].source == "core_worker_process.cc:872"

    dash = parse_all("dashboard_StateHead.log", s["dashboard_StateHead.log"])
    assert (dash[1].format, dash[1].level, dash[1].source) == ("python", "WARNING", "__init__.py:160")
    assert dash[1].message.startswith("DeprecationWarning:")

    driver = parse_all("job-driver-probe_job_ok.log", s["job-driver-probe_job_ok.log"])
    assert [x.format for x in driver] == ["python", "raw", "python", "python"]
    assert driver[1].message == "Running entrypoint for job probe_job_ok: python job_ok.py"

    name = "worker-bd861563899ab84e4ee6a094b6d5b20b08369bd331f242f6455460a9-ffffffff-7475.out"
    out = parse_all(name, s[name])
    assert [(x.message, x.job_id, x.task_name, x.pid) for x in out] == [
        (f"ok task {i} stdout line", "01000000", "ok", 7475) for i in (1, 3, 5)
    ]
    name = "worker-622831487cb29763b95dc1466c2d71f0feafe167ea32a0d480ee305c-01000000-7657.err"
    err = parse_all(name, s[name])
    assert err[0].actor_name == "BadInit" and err[0].job_id == "01000000"
    assert "\x1b" not in err[0].message and "ray::BadInit.__init__()" in err[0].message
    assert err[-1].message == "RuntimeError: constructor failure"


def test_cpp_continuations_and_streaming_one_byte_at_a_time():
    data = (
        b"[2026-11-25 19:58:42,362 E 7013 7023] (raylet) node_manager.cc:1: worker died\n"
        b"*** stack trace:\n    frame 1\n"
        b"[2026-11-25 19:58:43,001 I 7013 7013] (raylet) main.cc:2: next\n"
    )
    whole = parse_all("raylet.out", data)
    assert [x.message for x in whole] == ["worker died\n*** stack trace:\n    frame 1", "next"]
    assert whole[0].level == "ERROR" and whole[0].end == whole[1].offset
    p = LogLineParser("raylet.out", NODE)
    streamed = [r for i in range(len(data)) for r in p.feed(data[i : i + 1])]
    assert [x.message for x in streamed] == [whole[0].message]
    assert p.resume_offset == whole[1].offset  # the held-back record is not complete yet
    streamed += p.flush()
    assert [(x.offset, x.end, x.message) for x in streamed] == [(x.offset, x.end, x.message) for x in whole]


def test_markers_survive_across_calls_and_from_a_checkpoint():
    name = "worker-aa-ffffffff-42.out"
    p = LogLineParser(name, NODE)
    assert p.feed(b":job_id:02000000\n:task_na") == []
    recs = p.feed(b"me:f\nhello\n:actor_name:Act\nbye\n")
    assert [(r.message, r.job_id, r.task_name, r.actor_name) for r in recs] == [
        ("hello", "02000000", "f", None),
        ("bye", "02000000", "f", "Act"),
    ]
    resumed = LogLineParser(
        name, NODE, offset=recs[0].end, markers=Markers.from_json({"job_id": "02000000", "task_name": "f"})
    )
    again = resumed.feed(b":actor_name:Act\nbye\n")
    assert (again[0].offset, again[0].actor_name, again[0].task_name) == (recs[1].offset, "Act", "f")


def test_bad_bytes_ansi_and_a_10mb_line_never_crash_and_stay_bounded():
    line = b"[2026-11-25 19:58:42,362 I 1 1] (raylet) x.cc:1: " + b"\xff\xfe\x1b[31mred\x1b[0m" + b"z" * (10 << 20)
    data = line + b"\nafter\n"
    p = LogLineParser("raylet.out", NODE, max_record_bytes=1 << 20)
    recs = []
    for i in range(0, len(data), 65536):
        recs += p.feed(data[i : i + 65536])
        assert len(p._buf) <= (1 << 20) + 65536  # never holds the whole line
    recs += p.flush()
    parts = [r for r in recs if r.offset < len(line)]
    assert len(parts) == 11 and all(r.end - r.offset <= 1 << 20 for r in parts)
    assert [r.part for r in parts] == list(range(11)) and not any(r.complete for r in parts[:-1]) and parts[-1].complete
    assert parts[0].message.startswith("\\xff\\xfered") and parts[0].source == "x.cc:1" and parts[5].level == "INFO"
    assert sum(r.end - r.offset for r in parts) == len(line) + 1
    assert recs[-1].message == "after" and recs[-1].complete


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def test_every_record_knows_its_line_numbers_in_every_path_and_after_a_resume():
    """`line` is the 1-based number of the line holding a record's first byte (what search hits and the archive's
    log rows point at), `end_line` that of its end; markers, continuations, cut long lines and unterminated
    tails all count as the file counts them."""
    cases = {
        "raylet.out": (
            b"[2026-11-25 19:58:42,362 E 7013 7023] (raylet) node_manager.cc:1: worker died\n"
            b"*** stack trace:\n    frame 1\n"
            + b"[2026-11-25 19:58:43,001 I 7013 7013] (raylet) main.cc:2: "
            + b"w" * 300
            + b"\n"
            b"  trailing\n" + b"[2026-11-25 19:58:43,002 I 7013 7013] (raylet) main.cc:3: unterminated"
        ),
        "worker-aa-ffffffff-42.out": b":job_id:02000000\nhello\n:task_name:f\n\n" + b"x" * 250 + b"\nbye",
    }
    for name, data in cases.items():
        for chunk in (1, 7, len(data)):
            p = LogLineParser(name, NODE, max_record_bytes=100)
            recs = [r for i in range(0, len(data), chunk) for r in p.feed(data[i : i + chunk])] + p.flush()
            for r in recs:
                assert (r.line, r.end_line) == (_line_of(data, r.offset), _line_of(data, r.end)), (name, chunk, r)
            assert any(r.part for r in recs)  # the long line was cut into parts on its own line
        # resuming at each complete record's end with the line number a checkpoint keeps
        whole = parse_all(name, data, max_record_bytes=100)
        for r in whole:
            if r.complete:
                resumed = LogLineParser(name, NODE, offset=r.end, line=r.end_line, max_record_bytes=100)
                rest = resumed.feed(data[r.end :]) + resumed.flush()
                assert [(x.offset, x.line) for x in rest] == [(x.offset, x.line) for x in whole if x.offset >= r.end]
