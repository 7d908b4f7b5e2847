"""The durable spool of Ray's HTTP event export (collector/spool.py): whole batches, rotation, its bound, releases,
names, torn lines on reopening, and every acknowledged batch surviving a kill -9 in the middle of appends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collector.spool import Spool, SpoolError, SpoolFull, file_name
from tests.spooled import read_lines

ROOT = Path(__file__).resolve().parents[1]


def test_append_stores_whole_batches_and_reports_size(tmp_path):
    spool = Spool(tmp_path)
    spool.append([b'{"a":1}', b'{"b":2}'])
    spool.append([b'{"c":3}'])
    spool.append([])
    assert read_lines(spool) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    assert spool.size == 24
    [f] = spool.files()
    assert (f.path, f.size, f.active) == (file_name(0), 24, True)
    assert (tmp_path / f.path).stat().st_size == 24
    with pytest.raises(ValueError, match="line break"):
        spool.append([b'{"a":\n1}'])
    assert spool.size == 24


def test_rotates_at_the_size_bound_without_splitting_a_batch(tmp_path):
    spool = Spool(tmp_path, max_file_bytes=100)
    batches = [[f'{{"batch":{i},"line":{j}}}'.encode() for j in range(1 + i % 3)] for i in range(20)]
    for b in batches:
        spool.append(b)
    files = spool.files()
    assert [f.path for f in files] == [file_name(i) for i in range(len(files))] and len(files) > 3
    assert all(f.size <= 100 for f in files)
    assert [f.active for f in files] == [False] * (len(files) - 1) + [True]
    for f in files:  # every file holds whole batches only
        lines = (tmp_path / f.path).read_bytes().splitlines()
        seen = {}
        for line in lines:
            ev = json.loads(line)
            seen.setdefault(ev["batch"], []).append(ev["line"])
        assert all(v == list(range(1 + k % 3)) for k, v in seen.items())
    assert read_lines(spool) == [line for b in batches for line in b]
    # A batch larger than a file goes whole into a file of its own.
    big = [b'{"x":"' + b"y" * 300 + b'"}']
    spool.append(big)
    assert spool.files()[-1].size == 309 and read_lines(spool)[-1] == big[0]


def test_bound_refuses_with_spool_full_until_files_are_released(tmp_path):
    spool = Spool(tmp_path, max_file_bytes=50, max_total_bytes=120)
    for i in range(3):
        spool.append([b'{"n":%d,"pad":"%s"}' % (i, b"p" * 20)])
    before = spool.size
    with pytest.raises(SpoolFull) as info:
        spool.append([b'{"n":3,"pad":"%s"}' % (b"p" * 20)])
    assert (info.value.size, info.value.bound) == (before, 120) and info.value.needed == 37
    assert "bound of 120 bytes" in str(info.value)
    assert spool.size == before  # nothing of the refused batch was written
    oldest = spool.files()[0]
    assert not oldest.active
    spool.release(oldest.path)
    assert not (tmp_path / oldest.path).exists() and spool.size == before - oldest.size
    spool.append([b'{"n":3,"pad":"%s"}' % (b"p" * 20)])
    assert json.loads(read_lines(spool)[-1])["n"] == 3


def test_an_empty_spool_takes_a_batch_above_its_bound(tmp_path):
    spool = Spool(tmp_path, max_total_bytes=10)
    spool.append([b'{"big":"' + b"z" * 50 + b'"}'])  # refusing it would wedge a sender that retries forever
    with pytest.raises(SpoolFull):
        spool.append([b"{}"])


def test_release_refuses_the_active_file_and_foreign_names(tmp_path):
    spool = Spool(tmp_path, max_file_bytes=10)
    spool.append([b'{"a":"first"}'])  # fills file 0, which closes
    spool.append([b"{}"])
    active = spool.files()[-1]
    assert active.active
    with pytest.raises(SpoolError, match="being appended to"):
        spool.release(active.path)
    with pytest.raises(ValueError, match="not a spool file"):
        spool.release("../../etc/passwd")
    spool.release(file_name(0))
    spool.release(file_name(0))  # already gone: nothing to do
    assert [f.path for f in spool.files()] == [active.path]


def test_names_are_never_reused_after_every_file_is_released(tmp_path):
    spool = Spool(tmp_path, max_file_bytes=10)
    spool.append([b'{"a":"fills"}'])
    spool.append([b'{"b":"fills"}'])
    for f in spool.files():
        spool.release(f.path)
    spool.close()
    # The archive holds byte ranges of events-00000000 and 01: a new spool must not write those names again.
    again = Spool(tmp_path, max_file_bytes=10)
    again.append([b'{"c":"new"}'])
    assert [f.path for f in again.files() if f.size] == [file_name(2)]


def test_reopening_cuts_a_torn_last_line_and_appends_after_it(tmp_path):
    spool = Spool(tmp_path)
    spool.append([b'{"a":1}', b'{"b":2}'])
    spool.close()
    name = file_name(0)
    with open(tmp_path / name, "ab") as f:
        f.write(b'{"c":3}\n{"d":')  # a batch interrupted by a crash: one whole line, one torn
    again = Spool(tmp_path)
    assert (tmp_path / name).read_bytes() == b'{"a":1}\n{"b":2}\n{"c":3}\n'
    again.append([b'{"e":5}'])
    assert [json.loads(x) for x in read_lines(again)] == [{"a": 1}, {"b": 2}, {"c": 3}, {"e": 5}]
    # A file holding nothing but a torn line is emptied, not deleted.
    (tmp_path / file_name(7)).write_bytes(b'{"torn')
    again.close()
    third = Spool(tmp_path)
    assert (tmp_path / file_name(7)).read_bytes() == b""
    third.append([b'{"f":6}'])
    assert read_lines(third)[-1] == b'{"f":6}'


_APPENDER = """
import sys
from collector.spool import Spool
spool = Spool(sys.argv[1], max_file_bytes=int(sys.argv[3]))
batch = int(sys.argv[2])
pad = b"x" * 2000
while True:
    spool.append([b'{"batch":%8d,"line":%4d,"pad":"%s"}' % (batch, j, pad) for j in range(LINES)])
    print(batch, flush=True)
    batch += 1
"""
LINES = 2000
LINE_BYTES = len(b'{"batch":00000000,"line":0000,"pad":""}\n') + 2000
BATCH_BYTES = LINES * LINE_BYTES  # every batch the same size


def test_every_acknowledged_batch_survives_kill_9_whole(tmp_path):
    """A child appends 4 MB batches; the parent kills it with SIGKILL while a batch is half written (seen from the
    file's size), three times, and checks that every batch the child was told is stored is on disk, whole, that the
    torn tail is cut off on reopening, and that no file a reader saw ever shrank."""
    spool_dir = tmp_path / "spool"
    acked: set[int] = set()
    next_batch = 0
    sizes_seen: dict[str, int] = {}
    torn_rounds = 0
    for round_no in range(3):
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _APPENDER.replace("LINES", str(LINES)),
                str(spool_dir),
                str(next_batch),
                str(3 * BATCH_BYTES),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        got: list[int] = []
        reader = threading.Thread(target=lambda: got.extend(int(x) for x in child.stdout))  # noqa: B023 - joined in this iteration
        reader.start()
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline and child.poll() is None, "the appender never got going"
            newest = max(spool_dir.glob("events-*.jsonl"), default=None)
            if len(got) >= 3 and newest is not None and newest.stat().st_size % BATCH_BYTES:
                break  # a batch is half way into the file
        child.send_signal(signal.SIGKILL)
        child.wait()
        reader.join()
        child.stdout.close()
        torn_rounds += newest.stat().st_size % BATCH_BYTES != 0
        acked |= set(got)
        next_batch = max(got) + 10  # a batch written but not acknowledged stays distinguishable

        spool = Spool(spool_dir)
        # Whole lines only (those of the interrupted batch may stay: it was never acknowledged, a sender resends it).
        assert all(f.size % LINE_BYTES == 0 for f in spool.files()), "a torn line survived the reopen"
        by_batch: dict[int, list[int]] = {}
        for raw in read_lines(spool):
            ev = json.loads(raw)
            by_batch.setdefault(ev["batch"], []).append(ev["line"])
        missing = sorted(b for b in acked if by_batch.get(b) != list(range(LINES)))
        assert not missing, f"round {round_no}: acknowledged batches missing or not whole: {missing}"
        for f in spool.files():
            assert f.size >= sizes_seen.get(f.path, 0), f"{f.path} shrank below what a reader already saw"
            sizes_seen[f.path] = f.size
        spool.close()
    assert torn_rounds >= 1, "no kill landed inside a write: the test proved less than it claims"
    assert len(sizes_seen) > 1  # rotation happened along the way
