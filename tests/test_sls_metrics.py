"""The collector's scrapes into an SLS MetricStore by Prometheus remote write (collector/sinks/sls/metrics.py): the
encoding proven against a real Prometheus's remote-write receiver, then SLS's side (BasicAuth, STS, the MetricStore,
errors) against the SLS test server (tests/servers/sls_remote_write.py; no SLS emulator exists)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from archive import metrics_blocks
from collector.components import Listing
from collector.sinks.sls import remote_write
from collector.sinks.sls.metrics import SlsMetricsSink
from collector.sources.metrics import to_openmetrics
from collector.sources.session_dir import LogFile
from collector.spool import AppendOnlySpool
from tests.servers.sls import running_sls

NODE = "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40"
EXPOSITION = """# HELP ray_tasks Current number of tasks.
# TYPE ray_tasks gauge
ray_tasks{SessionName="session_x",State="RUNNING",Name="f"} 3.0
ray_tasks{SessionName="session_x",State="FAILED",Name="we \\"quote\\" \\\\ and\\nbreak"} 1.0
# HELP ray_node_mem_used Memory.
# TYPE ray_node_mem_used gauge
ray_node_mem_used{SessionName="session_x"} NaN
ray_node_mem_total{SessionName="session_x"} +Inf
# HELP ray_grpc_requests_total Requests.
# TYPE ray_grpc_requests_total counter
ray_grpc_requests_total{SessionName="session_x",Method="Get"} 1234.0
# HELP ray_latency_ms Latency.
# TYPE ray_latency_ms histogram
ray_latency_ms_bucket{SessionName="session_x",le="1.0"} 2.0
ray_latency_ms_bucket{SessionName="session_x",le="+Inf"} 5.0
ray_latency_ms_sum{SessionName="session_x"} 17.5
ray_latency_ms_count{SessionName="session_x"} 5.0
"""


def write_scrapes(folder: Path, n: int, start_ms: int, step_ms: int = 1000) -> None:
    """n scrapes of two targets into the metrics spool, as collector/sources/metrics.py writes them."""
    spool = AppendOnlySpool(folder, metrics_blocks.FILE_PREFIX, metrics_blocks.FILE_EXT, max_file_bytes=4000)
    for i in range(n):
        for target in ("10.0.0.1:8080", "10.0.0.1:44217"):
            labels = {"job": "ray", "ray_io_cluster": "c", "instance": target}
            families, count = to_openmetrics(
                EXPOSITION.replace("1234.0", f"{1234 + i}.0"), labels, start_ms + i * step_ms
            )
            header = metrics_blocks.scrape_header(labels, start_ms + i * step_ms, 1, 0.01, count)
            spool.append(metrics_blocks.render(header + families))
    spool.close()


def expected_samples(folder: Path) -> set[tuple]:
    """Every sample of the spool, read with prometheus_client's (strict) OpenMetrics parser, not ours."""
    out = set()
    for path in sorted(folder.iterdir()):
        for block in metrics_blocks.split_scrapes(path.read_text()):
            for family in text_string_to_metric_families(block):
                for s in family.samples:
                    labels = tuple(sorted({**s.labels, "__name__": s.name}.items()))
                    out.add((labels, round(float(s.timestamp) * 1000), _text(s.value)))
    return out


def _text(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(float(value))


def listing(folder: Path) -> Listing:
    files = [LogFile(p.name, p.stat().st_size, p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())]
    return Listing(files, {f.path for f in files[:-1]})


def ship(url: str, auth: str, folder: Path, tmp_path: Path, proxy: str | None = None, **kw) -> SlsMetricsSink:
    sink = SlsMetricsSink(
        url,
        auth,
        {"metrics": folder},
        tmp_path / "metrics-ck.json",
        NODE,
        proxy=proxy,
        backoff_initial=0.05,
        backoff_max=0.2,
        checkpoint_interval=0.05,
        **kw,
    )
    sink.open()
    sink.offer("metrics", listing(folder), False)
    return sink


def test_remote_write_is_what_a_real_prometheus_stores(tmp_path):
    from tests.needs import prometheus as needs_prometheus
    from tests.servers.prometheus import Prometheus

    needs_prometheus()
    folder = tmp_path / "metrics"
    now_ms = int(time.time() * 1000) - 60_000
    write_scrapes(folder, 6, now_ms)
    assert len(list(folder.iterdir())) > 1  # several files: order across files is kept
    prom = Prometheus(tmp_path / "prom")
    prom.data.mkdir(parents=True)
    prom.start(remote_write=True)
    try:
        sink = ship(f"{prom.url}/api/v1/write", "Basic eDp5", folder, tmp_path, max_samples=7)
        assert sink.close(60)
        stats = sink.stats()
        assert stats.dropped == 0 and stats.errors["request"] == 0
        data = prom.query('{__name__=~".+"}[10m]', now_ms / 1000 + 60)
        stored = {
            (tuple(sorted(r["metric"].items())), round(float(t) * 1000), _text(float(v)))
            for r in data["result"]
            for t, v in r["values"]
        }
    finally:
        prom.stop()
    expected = expected_samples(folder)
    assert len(expected) == 6 * 2 * 12  # 12 samples a scrape: 3 of the scrape itself, 9 of the target
    assert stored == expected
    assert stats.sent == len(expected) and sink.counters.requests >= len(expected) // 7


def test_remote_write_into_a_metricstore_with_sts_credentials(tmp_path):
    from rayhistory.sls_init import Initializer, SlsInitSettings

    folder = tmp_path / "metrics"
    write_scrapes(folder, 3, int(time.time() * 1000))
    with running_sls(security_token="tok") as sls:
        url = f"http://rayhistory.{sls.endpoint}/prometheus/rayhistory/ray-metrics/api/v1/write"
        wrong = ship(
            url, remote_write.basic_auth(sls.access_key_id, sls.access_key_secret), folder, tmp_path, sls.proxy
        )
        time_limit = time.monotonic() + 10
        while not any(r["status"] == 401 for r in sls.remote_write.requests):
            assert time.monotonic() < time_limit, "no request reached the server"
            time.sleep(0.05)
        assert not wrong.close(0.5)  # without the STS token: refused, retried, never dropped
        assert wrong.stats().dropped == 0 and sls.remote_write.series("ray-metrics") == {}

        auth = remote_write.basic_auth(sls.access_key_id, sls.access_key_secret, "tok")
        sink = ship(url, auth, folder, tmp_path, sls.proxy)  # no MetricStore yet: 404, retried
        while not any(r["status"] == 404 for r in sls.remote_write.requests):
            assert time.monotonic() < time_limit + 10, "no request reached the server"
            time.sleep(0.05)
        from collector.sinks.sls.client import make_client

        client = make_client(sls.endpoint, sls.access_key_id, sls.access_key_secret, "t", 10, sls.proxy, "tok")
        settings = SlsInitSettings(
            endpoint=sls.endpoint, project="rayhistory", logstore="ray-logs", metricstore="ray-metrics"
        )
        Initializer(client, settings, say=lambda line: None).run()
        sls.remote_write.fail(500, times=2)
        assert sink.close(60)
        got = sls.remote_write.series("ray-metrics")
        stats = sink.stats()
    stored = {(labels, ts, _text(v)) for labels, samples in got.items() for ts, v in samples}
    assert stored == expected_samples(folder)
    assert stats.dropped == 0 and stats.retries >= 3
    for f in listing(folder).files:
        assert sink.holds("metrics", f)


def test_a_request_refused_for_good_is_dropped_and_counted_the_rest_goes_on(tmp_path):
    from tests.servers.sls_resources import Resources

    folder = tmp_path / "metrics"
    write_scrapes(folder, 2, int(time.time() * 1000))
    with running_sls() as sls:
        sls.resources.logstores[("p", "m")] = {"telemetryType": "Metrics"}
        sls.resources.substores[("p", "m")] = {}
        assert isinstance(sls.resources, Resources)
        sls.remote_write.fail(400, times=1)
        url = f"http://p.{sls.endpoint}/prometheus/p/m/api/v1/write"
        sink = ship(
            url,
            remote_write.basic_auth(sls.access_key_id, sls.access_key_secret),
            folder,
            tmp_path,
            sls.proxy,
            max_samples=10,
        )
        assert sink.close(30)
        stored = sum(len(s) for s in sls.remote_write.series("m").values())
    stats = sink.stats()
    assert stats.dropped == 10 and stored == len(expected_samples(folder)) - 10
    assert stats.sent == stored


@pytest.mark.parametrize(
    "line, problem",
    [('up{instance="a" 1 2', "unterminated"), ("up", "no value"), ("up 1", "want")],
)
def test_malformed_sample_lines_are_named(line, problem):
    with pytest.raises(remote_write.BadLine, match=problem):
        remote_write.Encoder().timeseries(line)
