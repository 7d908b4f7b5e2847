"""The HTTP receiver of Ray's event export (collector/sources/http_events.py): batches stored as sent, every bad
input, size limits, a full spool, protocol edges, concurrent senders, and a real Ray 2.60 cluster exporting to the
receiver (also through a full spool)."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import threading

import pytest

from collector.sources.http_events import HttpEventsSource
from collector.spool import Spool, SpoolFull
from rayhistory.local_ray import LocalRayCluster, wait_for
from tests.spooled import read_lines

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
    # A chunked body (no Content-Length) is refused from its headers alone: the receiver answers 411 and closes
    # without reading the body, so the body is not sent (sending it would race the close: EPIPE).
    with socket.create_connection((host, port), timeout=30) as raw:
        raw.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        status_line = raw.makefile("rb").readline()
    assert status_line.split()[1] == b"411", status_line
    assert [json.loads(x)["n"] for x in read_lines(receiver.spool)] == [0, 1, 2]


def _outward_address() -> str:
    """This machine's address on its default route (no packet is sent): a peer that is not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
        except OSError as e:
            pytest.fail(f"this machine has no non-loopback IPv4 address to test from: {e}", pytrace=False)
        address = s.getsockname()[0]
    assert not address.startswith("127."), f"the default route's address is loopback ({address})"
    return address


def test_events_from_another_host_are_refused_when_listening_on_the_pod_ip(tmp_path):
    """Bound to 0.0.0.0 (so /metrics is scrapable), the receiver still takes events only from its own pod."""
    spool = Spool(tmp_path / "spool")
    source = HttpEventsSource(spool, host="0.0.0.0").start()
    try:
        port = source.address[1]
        outside = _outward_address()
        conn = http.client.HTTPConnection(outside, port, timeout=60)
        conn.request("POST", "/v1/events", body=b"[{}]", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        conn.close()
        assert resp.status == 403 and "from this pod only" in answer["error"]["message"], answer
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/events", body=b"[{}]", headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
        assert read_lines(spool) == [b"{}"]
    finally:
        source.stop()


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
