"""The collector with its events and metrics outputs to SLS, killed with SIGKILL mid-stream three times: nothing
acknowledged is lost. Every export-event line reaches the events logstore (by its dedup key, the same key for a
repeat), and the MetricStore holds exactly the samples the archive holds. SLS is the SLS test server (no emulator
exists; tests/servers/sls.py); Ray is stood in for by a growing export-event file and a Prometheus endpoint."""

from __future__ import annotations

import base64
import json
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from archive import logs as archive_logs
from archive import metrics_blocks
from archive.layout import SessionRef
from archive.storage import open_store
from tests.fake_session import NODE_ID, SESSION_NAME, make_session
from tests.servers.sls import running_sls
from tests.test_collector_faults import _stderr, collector, wait_until
from tests.test_sls_metrics import _text


class Exporter(threading.Thread):
    """A node's metrics endpoint: a counter that grows at every scrape."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                exporter.scrapes += 1
                body = (
                    "# TYPE ray_node_cpu_count gauge\n"
                    'ray_node_cpu_count{SessionName="%s"} 2.0\n'
                    "# TYPE ray_scrapes_seen gauge\n"
                    'ray_scrapes_seen{SessionName="%s",Method="Get"} %d.0\n'
                ) % (SESSION_NAME, SESSION_NAME, exporter.scrapes)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]

    def run(self) -> None:
        self.httpd.serve_forever()


class EventWriter(threading.Thread):
    """Appends EXPORT_TASK lines, as a worker's core does, until stopped."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.stop, self.lines = path, threading.Event(), 0

    def run(self) -> None:
        with open(self.path, "ab") as f:
            while not self.stop.is_set():
                task = (self.lines.to_bytes(8, "big") + b"\xff" * 12 + b"\x01\x00\x00\x00").hex()
                event = {
                    "event_id": f"{self.lines:036x}",
                    "source_type": "EXPORT_TASK",
                    "timestamp": int(time.time()),
                    "event_data": {
                        "task_id": base64.b64encode(bytes.fromhex(task)).decode(),
                        "attempt_number": 0,
                        "state_updates": {"state_ts_ns": {"11": str(time.time_ns())}},
                        "task_info": {"func_or_class_name": "f", "type": "NORMAL_TASK"},
                    },
                }
                f.write(json.dumps(event).encode() + b"\n")
                f.flush()
                self.lines += 1
                time.sleep(0.002)


def archived_samples(store, ref: SessionRef) -> set[tuple]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    node = ref.node(NODE_ID)
    out = set()
    for _path, segs in archive_logs.list_segments(store, node, source=metrics_blocks.SOURCE).items():
        text = b"".join(archive_logs.read_segment(store, node, s) for s in archive_logs.covering(segs)).decode()
        for block in metrics_blocks.split_scrapes(text):
            for family in text_string_to_metric_families(block):
                for s in family.samples:
                    labels = tuple(sorted({**s.labels, "__name__": s.name}.items()))
                    out.add((labels, round(float(s.timestamp) * 1000), _text(s.value)))
    return out


def test_kill_9_mid_stream_loses_no_event_or_sample_sent_to_sls(tmp_path):
    session = make_session(tmp_path)
    exporter = Exporter()
    exporter.start()
    (session / f"metrics_export_port_{NODE_ID}").write_text(str(exporter.port))
    with open(session / "logs" / "raylet.out", "ab") as f:  # where the scraper learns this node's IP
        f.write(b"[2026-11-25 20:59:24,790 I 2288 2288] (raylet) main.cc:1: node_manager address: 127.0.0.1:1234\n")
    events = session / "logs" / "export_events" / "event_EXPORT_TASK_4242.log"
    writer = EventWriter(events)
    archive = str(tmp_path / "archive")
    with running_sls() as sls:
        sls.resources.logstores[("p", "ray-metrics")] = {"telemetryType": "Metrics"}
        sls.resources.substores[("p", "ray-metrics")] = {}
        env = {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": sls.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": sls.access_key_secret,
        }
        flags = (
            *("--sls-endpoint", f"http://{sls.endpoint}", "--sls-project", "p", "--sls-proxy", sls.proxy),
            *("--sls-events-logstore", "ray-events", "--sls-metricstore", "ray-metrics", "--metrics-interval", "0.2"),
        )

        def progress() -> tuple[int, int]:
            return len(sls.items("ray-events")), sum(len(s) for s in sls.remote_write.series("ray-metrics").values())

        writer.start()
        try:
            for round_ in range(3):  # killed three times at arbitrary points of its sends
                proc = collector(session, archive, env, *flags)
                before = progress()
                wait_until(
                    lambda: all(a > b + 20 for a, b in zip(progress(), before)),  # noqa: B023 - within the round
                    f"events and samples in round {round_}",
                )
                assert proc.poll() is None, _stderr(proc)
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            writer.stop.set()
            writer.join()
            proc = collector(session, archive, env, *flags)
            wait_until(
                lambda: len({x.contents["__dedup__"] for x in sls.items("ray-events")}) >= writer.lines, "every event"
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 0, _stderr(proc)
        finally:
            writer.stop.set()
            exporter.httpd.shutdown()
        items = sls.items("ray-events")
        series = sls.remote_write.series("ray-metrics")
    # Events: one per line, every line, each key naming the line's offset; a repeat is the same item.
    offsets, seen = [], {}
    data = events.read_bytes()
    pos = 0
    for line in data.splitlines(keepends=True):
        offsets.append(pos)
        pos += len(line)
    for x in items:
        key = x.contents["__dedup__"]
        assert seen.setdefault(key, x.contents) == x.contents
    file_ids = {k.split(":")[0] for k in seen}
    assert len(file_ids) == 1, "the file's id changed across restarts: its checkpoint was not used"
    assert sorted(int(k.split(":")[1]) for k in seen) == offsets
    assert {x.contents["state"] for x in items} == {"FINISHED"} and {x.tags["cluster"] for x in items} == {"c"}
    # Metrics: the MetricStore holds what the archive (the system of record) holds, sample for sample.
    store = open_store(archive)
    expected = archived_samples(store, SessionRef("ns", "c", SESSION_NAME))
    stored = {(labels, ts, _text(v)) for labels, samples in series.items() for ts, v in samples}
    assert stored == expected and len(expected) > 40
    assert any(re.search(r"ray_scrapes_seen", str(labels)) for labels, _, _ in stored)
    print(
        f"\n{len(items)} event items for {len(offsets)} lines ({len(items) - len(offsets)} repeats), {len(stored)} samples"
    )
