"""The durable spool and the HTTP receiver of Ray's event export: unit tests, every bad input, a kill -9 in the
middle of appends, and a real Ray 2.60 cluster exporting to the receiver (also through a full spool)."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collector.sources.http_events import HttpEventsSource
from collector.spool import Spool, SpoolError, SpoolFull, file_name
from rayhistory.local_ray import LocalRayCluster, wait_for

ROOT = Path(__file__).resolve().parents[1]


def read_lines(spool: Spool) -> list[bytes]:
    """Every line the spool acknowledged, in order (sizes from files(), as a reader sees them)."""
    out = []
    for f in spool.files():
        with open(spool.path(f.path), "rb") as h:
            data = h.read(f.size)
        assert data == b"" or data.endswith(b"\n"), f"{f.path} ends inside a line"
        out += data.splitlines()
    return out


# -- the spool ----------------------------------------------------------------------------------------------


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


# -- the HTTP receiver ------------------------------------------------------------------------------------


@pytest.fixture
def receiver(tmp_path):
    source = HttpEventsSource(Spool(tmp_path / "spool")).start()
    yield source
    source.stop()


def post(
    source: HttpEventsSource,
    body: bytes,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
    path: str = "/v1/events",
):
    host, port = source.address
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        hdrs = dict(headers or {})
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        conn.request("POST", path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"null")
    finally:
        conn.close()


def sample_events(reference) -> list[dict]:
    return list(json.loads((reference / "ray_events_http" / "one_event_per_type.json").read_text())["events"].values())


def test_a_batch_is_stored_as_compact_lines_exactly_as_sent(receiver, reference):
    events = sample_events(reference)
    body = json.dumps(events).encode()  # what aiohttp's json= sends: ASCII, ", " separators
    status, _, answer = post(receiver, body)
    assert (status, answer) == (200, {"stored": len(events)})
    lines = read_lines(receiver.spool)
    assert [json.loads(x) for x in lines] == events
    assert lines[0] == json.dumps(events[0], separators=(",", ":")).encode()
    stats = receiver.stats.snapshot()
    assert stats["received_events"] == stats["stored_events"] == len(events)
    assert stats["received_bytes"] == len(body) and stats["stored_bytes"] == receiver.spool.size
    assert stats["refused_requests"] == 0 and stats["by_status"] == {200: 1}


@pytest.mark.parametrize(
    "body, content_type, status, message",
    [
        (b'[{"eventId": "a"', "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "body is empty"),
        (b"  \n", "application/json", 400, "body is empty"),
        (b'{"eventId": "a"}', "application/json", 400, "got a JSON object"),
        (b'[{"eventId": "a"}, 7]', "application/json", 400, "item 1 is a JSON number"),
        (b'[{"v": NaN}]', "application/json", 400, "NaN is not valid JSON"),
        (b'[{"v": "\xff\xfe"}]', "application/json", 400, "not UTF-8 (byte 8)"),
        (b"[" * 200_000 + b"]" * 200_000, "application/json", 400, "not valid JSON"),
        (b"eventId=a", "application/x-www-form-urlencoded", 415, "is not application/json"),
        (b'[{"v": "\xff"}]', "text/plain", 415, "is not application/json"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_nothing_stored(receiver, body, content_type, status, message):
    got, headers, answer = post(receiver, body, content_type)
    assert got == status, answer
    assert message in answer["error"]["message"]
    assert receiver.spool.size == 0
    stats = receiver.stats.snapshot()
    assert stats["refused_requests"] == 1 and stats["refused_bytes"] == len(body) and stats["stored_events"] == 0
    assert post(receiver, b'[{"after": true}]')[0] == 200  # and the server is still there


def test_an_empty_array_is_a_batch_of_nothing(receiver):
    assert post(receiver, b"[]")[:3:2] == (200, {"stored": 0})
    assert receiver.spool.size == 0 and receiver.spool.files() == []


def test_valid_json_under_another_content_type_is_stored(receiver):
    for ctype in ("text/plain", None, "application/json; charset=utf-8"):
        assert post(receiver, b'[{"eventId": "x"}]', ctype)[0] == 200
    assert post(receiver, b'\xef\xbb\xbf[{"bom": 1}]')[0] == 200
    assert [json.loads(x) for x in read_lines(receiver.spool)] == [{"eventId": "x"}] * 3 + [{"bom": 1}]


def test_a_10_mb_batch_is_stored_and_a_body_above_the_limit_is_413(receiver, reference):
    template = sample_events(reference)
    events = [
        {**template[i % len(template)], "eventId": base64.b64encode(i.to_bytes(8, "big")).decode()}
        for i in range(13_000)
    ]
    body = json.dumps(events).encode()
    assert len(body) > 10 << 20
    status, _, answer = post(receiver, body)
    assert (status, answer) == (200, {"stored": len(events)})
    lines = read_lines(receiver.spool)
    assert len(lines) == len(events) and json.loads(lines[-1]) == events[-1]

    # Above 64 MiB: answered from the headers, before any body byte is read (or sent, with Expect).
    for expect in (False, True):
        host, port = receiver.address
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.putrequest("POST", "/v1/events")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str((64 << 20) + 1))
        if expect:
            conn.putheader("Expect", "100-continue")
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413 and "above the limit of 67108864" in json.loads(resp.read())["error"]["message"]
        conn.close()
    assert len(read_lines(receiver.spool)) == len(events)


def test_a_full_spool_answers_503_with_retry_after(tmp_path):
    spool = Spool(tmp_path, max_total_bytes=100)
    source = HttpEventsSource(spool, retry_after=7).start()
    try:
        assert post(source, json.dumps([{"pad": "p" * 80}]).encode())[0] == 200
        status, headers, answer = post(source, b'[{"a": 1}, {"b": 2}]')
        assert status == 503 and headers["Retry-After"] == "7" and "bound of 100 bytes" in answer["error"]["message"]
        stats = source.stats.snapshot()
        assert stats["refused_events"] == 2 and stats["stored_events"] == 1
        spool.max_total_bytes = 1 << 20  # the operator (or the shipped files' release) makes room
        assert post(source, b'[{"a": 1}, {"b": 2}]')[0] == 200
    finally:
        source.stop()


def test_protocol_edges(receiver):
    host, port = receiver.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    # Keep-alive: the agent sends many batches on one connection.
    for i in range(3):
        conn.request("POST", "/v1/events", body=b'[{"n": %d}]' % i, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {"stored": 1}
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"status": "ok"}
    conn.request("GET", "/v1/events")
    resp = conn.getresponse()
    assert resp.status == 405 and resp.getheader("Allow") == "POST"
    resp.read()
    conn.close()
    assert post(receiver, b"[{}]", path="/v2/other")[0] == 404
    assert post(receiver, b"[{}]", headers={"Content-Encoding": "gzip"})[0] == 415
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("POST", "/v1/events")
    conn.putheader("Content-Length", "many")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 400 and "not a byte count" in json.loads(resp.read())["error"]["message"]
    conn.close()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request(
        "POST", "/v1/events", body=iter([b"[{}]"]), headers={"Content-Type": "application/json"}, encode_chunked=True
    )
    resp = conn.getresponse()
    assert resp.status == 411
    conn.close()
    assert [json.loads(x)["n"] for x in read_lines(receiver.spool)] == [0, 1, 2]


def test_concurrent_senders_lose_nothing(receiver):
    def send(worker: int) -> None:
        for i in range(25):
            body = json.dumps([{"w": worker, "i": i, "j": j} for j in range(20)]).encode()
            assert post(receiver, body)[0] == 200

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sorted((e["w"], e["i"], e["j"]) for e in map(json.loads, read_lines(receiver.spool)))
    assert got == sorted((w, i, j) for w in range(8) for i in range(25) for j in range(20))
    assert receiver.stats.snapshot()["stored_events"] == 4000


# -- a real Ray 2.60 cluster exporting to the receiver ---------------------------------------------------------


def ray_exporting_to(source: HttpEventsSource) -> LocalRayCluster:
    cluster = LocalRayCluster()
    cluster.env.update(
        {
            "RAY_enable_core_worker_ray_event_to_aggregator": "1",
            "RAY_enable_ray_event": "1",
            "RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR": source.url,
            "RAY_DASHBOARD_AGGREGATOR_AGENT_EXPOSABLE_EVENT_TYPES": "ALL",
        }
    )
    return cluster


def spooled_events(spool: Spool) -> list[dict]:
    return [json.loads(x) for x in read_lines(spool)]


def square_definitions(spool: Spool) -> set[str]:
    return {
        e["taskDefinitionEvent"]["taskId"]
        for e in spooled_events(spool)
        if e.get("eventType") == "TASK_DEFINITION_EVENT" and e["taskDefinitionEvent"].get("taskName") == "square"
    }


def test_real_ray_exports_its_events_into_the_spool(tmp_path):
    from rayhistory import workload

    source = HttpEventsSource(Spool(tmp_path / "spool")).start()
    cluster = ray_exporting_to(source)
    try:
        cluster.start()
        cluster.wait_ready()
        workload.run(cluster.env, cluster.address, cluster.dashboard)
        wait_for(
            "the definitions of the 8 square tasks in the spool",
            lambda: len(square_definitions(source.spool)) == 8,
            60,
            cluster.proc,
        )
    finally:
        cluster.stop()
        cluster.kill()
        source.stop()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    events = spooled_events(source.spool)
    kinds = {e["eventType"] for e in events}
    assert {
        "NODE_DEFINITION_EVENT",
        "TASK_DEFINITION_EVENT",
        "TASK_LIFECYCLE_EVENT",
        "ACTOR_DEFINITION_EVENT",
        "DRIVER_JOB_DEFINITION_EVENT",
    } <= kinds
    stats = source.stats.snapshot()
    assert stats["stored_events"] == len(events) and stats["refused_requests"] == 0
    assert set(stats["by_status"]) == {200}


class RecordingSpool(Spool):
    """The real spool, remembering the batches it refused as full."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.refused: list[list[bytes]] = []

    def append(self, lines: list[bytes]) -> None:
        try:
            super().append(lines)
        except SpoolFull:
            self.refused.append(lines)
            raise


def test_real_ray_retries_through_a_full_spool_and_loses_nothing(tmp_path):
    spool = RecordingSpool(tmp_path / "spool", max_total_bytes=1)
    spool.append([b'{"eventId":"unshipped"}'])  # a spool full of data not yet shipped
    source = HttpEventsSource(spool, retry_after=1).start()
    cluster = ray_exporting_to(source)
    try:
        cluster.start()
        wait_for("Ray's agent to be refused, then retry", lambda: len(spool.refused) >= 3, 90, cluster.proc)
        assert spooled_events(spool) == [{"eventId": "unshipped"}]
        refused_ids = {json.loads(x)["eventId"] for batch in spool.refused for x in batch}
        assert spool.refused[0] in spool.refused[1:], "the agent did not resend the refused batch"
        spool.max_total_bytes = 1 << 30
        wait_for(
            "every refused event to arrive once there is room",
            lambda: refused_ids <= {e["eventId"] for e in spooled_events(spool)},
            60,
            cluster.proc,
        )
    finally:
        cluster.stop()
        cluster.kill()
        source.stop()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    stats = source.stats.snapshot()
    assert stats["by_status"][503] >= 3 and stats["refused_events"] > 0
    assert stats["stored_events"] == len(spooled_events(spool)) - 1
