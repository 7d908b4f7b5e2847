"""The metrics scraper: against a tiny local HTTP server for the format, and against a real Ray cluster."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from collector.sources.metrics import MetricsScraper, discover_targets, split_scrapes
from collector.sources.session_dir import SessionDir
from rayhistory.local_ray import LocalRayCluster, free_port, wait_for
from tests import needs
from tests.fake_session import NODE_ID, make_session
from tests.servers.loopback import LoopbackHTTP

EXPOSITION = r"""# HELP rh_requests_total Requests "served"\nover two lines, with a \\ backslash
# TYPE rh_requests_total counter
rh_requests_total{route="/a",instance="app-1"} 3.0
rh_requests_total{route="/a",instance="app-1"} 3.0
rh_requests_total{route="/b",instance="app-1"} 1.0
# HELP rh_requests_created Requests created
# TYPE rh_requests_created gauge
rh_requests_created{route="/a",instance="app-1"} 1.7e+09
rh_requests_created{route="/b",instance="app-1"} 1.7e+09
# HELP rh_latency_seconds Latency
# TYPE rh_latency_seconds histogram
rh_latency_seconds_bucket{path="a",le="1"} 1.0
rh_latency_seconds_bucket{path="a",le="+Inf"} 2.0
rh_latency_seconds_sum{path="a"} 3.5
rh_latency_seconds_count{path="a"} 2.0
rh_latency_seconds_bucket{path="b",le="1"} 0.0
rh_latency_seconds_bucket{path="b",le="+Inf"} 1.0
rh_latency_seconds_sum{path="b"} 2.0
rh_latency_seconds_count{path="b"} 1.0
# HELP rh_latency_seconds_created Latency created
# TYPE rh_latency_seconds_created gauge
rh_latency_seconds_created{path="a"} 1.7e+09
rh_latency_seconds_created{path="b"} 1.7e+09
# HELP rh_rpc_seconds RPC time
# TYPE rh_rpc_seconds summary
rh_rpc_seconds{quantile="0.5"} 0.2
rh_rpc_seconds_sum 1.0
rh_rpc_seconds_count 5.0
# TYPE rh_temp gauge
rh_temp{SessionName="session_x",msg="say \"hi\"\nbye \\ end"} 21.5
rh_untyped_thing 7
rh_with_ts 4 1700000000123
"""
TS = re.compile(r" (\d+)\.(\d{3})$")


class Endpoint:
    """A /metrics endpoint on 127.0.0.1 whose body the test sets."""

    def __init__(self, body: str = EXPOSITION) -> None:
        self.body = body
        self.requests = 0
        self.http = LoopbackHTTP(self._respond)
        self.address = self.http.address

    def _respond(self, path: str, headers) -> tuple[int, str, bytes]:
        self.requests += 1
        return (200 if path == "/metrics" else 404), "text/plain; version=0.0.4; charset=utf-8", self.body.encode()

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.close()


def read_samples(spool: Path) -> list[tuple]:
    """Every sample of every file, through prometheus_client's strict OpenMetrics parser, one scrape at a time."""
    out = []
    for path in sorted(spool.glob("metrics-*.prom")):
        for block in split_scrapes(path.read_text()):
            for family in parse_openmetrics(block):
                out += [(s.name, s.labels, s.value, str(s.timestamp), family) for s in family.samples]
    return out


def test_a_scrape_is_written_as_timestamped_openmetrics_with_target_labels(tmp_path, endpoint):
    scraper = MetricsScraper(tmp_path, cluster="c1", targets=[endpoint.address])
    before = int(time.time() * 1000)
    stats = scraper.scrape_once()
    after = int(time.time() * 1000)
    assert (stats.scrapes_ok, stats.scrapes_failed) == (1, 0)
    files = sorted(tmp_path.glob("metrics-*.prom"))
    assert [f.name for f in files] == ["metrics-000001.prom"]
    text = files[0].read_text()
    assert stats.bytes == len(text.encode()) and text.endswith("\n") and "# EOF" not in text
    assert text.startswith("# HELP up ")

    stamps = set()
    for line in text.splitlines():
        if not line.startswith("#"):
            m = TS.search(line)
            assert m, f"sample line without a timestamp: {line}"
            stamps.add(int(m.group(1)) * 1000 + int(m.group(2)))
    scrape_ms = stamps - {1700000000123}  # the target's own timestamp is kept
    assert len(scrape_ms) == 1 and before <= scrape_ms.pop() <= after
    assert 1700000000123 in stamps

    target = {"instance": endpoint.address, "job": "ray", "ray_io_cluster": "c1"}
    samples = read_samples(tmp_path)
    by_key = {(name, tuple(sorted(labels.items()))): value for name, labels, value, _, _ in samples}
    assert len(by_key) == len(samples), "a series repeated within one scrape must be written once"

    # Every exposed sample is there, under the name the text parser gives it, with the target labels added.
    expected = 0
    for family in parse_text(EXPOSITION):
        for s in family.samples:
            labels = dict(s.labels)
            if "instance" in labels:
                labels["exported_instance"] = labels.pop("instance")
            if "le" in labels:
                labels["le"] = {"1": "1.0"}.get(labels["le"], labels["le"])
            key = (s.name, tuple(sorted({**labels, **target}.items())))
            assert by_key[key] == s.value, key
            expected += 1
    assert stats.samples == expected - 1  # minus the duplicate
    assert by_key[("up", tuple(sorted(target.items())))] == 1
    assert by_key[("scrape_samples_scraped", tuple(sorted(target.items())))] == stats.samples

    families = {f.name: f for *_, f in samples}
    assert families["rh_requests"].type == "counter"
    assert families["rh_requests"].documentation == 'Requests "served"\nover two lines, with a \\ backslash'
    assert {s.name for s in families["rh_latency_seconds"].samples} == {
        "rh_latency_seconds_bucket",
        "rh_latency_seconds_sum",
        "rh_latency_seconds_count",
        "rh_latency_seconds_created",
    }
    assert families["rh_untyped_thing"].type == "unknown"
    temp = next(s for s in families["rh_temp"].samples)
    assert temp.labels["msg"] == 'say "hi"\nbye \\ end' and temp.labels["SessionName"] == "session_x"


def test_a_failed_scrape_is_counted_and_retried_next_interval(tmp_path):
    port = free_port()
    scraper = MetricsScraper(tmp_path, cluster="c1", targets=[f"127.0.0.1:{port}"], interval=0.2, timeout=2)
    stats = scraper.scrape_once()  # nothing listens there
    assert (stats.scrapes_ok, stats.scrapes_failed, stats.samples) == (0, 1, 0)
    assert f"127.0.0.1:{port}" in scraper.stats.last_error
    ups = [(s[0], s[2]) for s in read_samples(tmp_path) if s[0] == "up"]
    assert ups == [("up", 0.0)]

    # The loop keeps going and picks the endpoint up once it answers.
    endpoint = Endpoint()
    scraper.fixed_targets = [endpoint.address]
    stop = threading.Event()
    loop = threading.Thread(target=scraper.run, args=(stop,))
    loop.start()
    try:
        wait_for("two good scrapes", lambda: scraper.stats.scrapes_ok >= 2, 20)
    finally:
        stop.set()
        loop.join(10)
        endpoint.close()
    assert not loop.is_alive()
    assert scraper.stats.scrapes_failed == 1
    assert [v for name, _, v, *_ in read_samples(tmp_path) if name == "up"][:3] == [0.0, 1.0, 1.0]


def test_files_rotate_by_size_and_a_restart_never_rewrites_a_torn_file(tmp_path, endpoint):
    scraper = MetricsScraper(tmp_path, cluster="c1", targets=[endpoint.address], max_file_bytes=3000)
    for _ in range(4):
        scraper.scrape_once()
    files = sorted(tmp_path.glob("metrics-*.prom"))
    assert len(files) == 4  # one scrape (~4 KB) is over the limit: each file holds one
    for f in files:
        assert len(list(split_scrapes(f.read_text()))) == 1
    scraper.spool.close()

    # A crash mid-write leaves a torn line: the next writer leaves that file alone and starts the next one.
    torn = files[-1].read_bytes()
    files[-1].write_bytes(torn + b'rh_temp{msg="cut')
    again = MetricsScraper(tmp_path, cluster="c1", targets=[endpoint.address], max_file_bytes=1 << 20)
    again.scrape_once()
    again.scrape_once()
    assert files[-1].read_bytes() == torn + b'rh_temp{msg="cut'
    newest = sorted(tmp_path.glob("metrics-*.prom"))[-1]
    assert newest.name == "metrics-000005.prom" and len(list(split_scrapes(newest.read_text()))) == 2
    blocks = [b for f in sorted(tmp_path.glob("metrics-*.prom")) for b in split_scrapes(f.read_text())]
    assert len(blocks) == 6 and all(list(parse_openmetrics(b)) for b in blocks)
    again.spool.close()

    # A clean file below the limit is resumed, not abandoned.
    third = MetricsScraper(tmp_path, cluster="c1", targets=[endpoint.address], max_file_bytes=1 << 20)
    third.scrape_once()
    assert sorted(tmp_path.glob("metrics-*.prom"))[-1] == newest
    assert len(list(split_scrapes(newest.read_text()))) == 3


def test_targets_come_from_the_session_dir(tmp_path):
    session = make_session(tmp_path)  # head: metrics_export_port_<id> holds 34527
    head = SessionDir(session)
    assert NODE_ID in next(session.glob("metrics_export_port_*")).name
    # The raylet has not said which IP it registered under yet: nothing to name the endpoint by.
    assert discover_targets(head) == []
    scraper = MetricsScraper(tmp_path / "spool", cluster="c1", session=head)
    assert scraper.targets() == []
    scraper.own_address_grace = 0  # ... for long: loopback, which a pod's own endpoint always answers on
    assert scraper.targets() == ["127.0.0.1:34527"]

    with open(session / "logs" / "raylet.out", "ab") as f:
        f.write(
            b"[2026-11-25 20:59:24,900 I 2288 2288] (raylet) node_manager.cc:355: Raylet of id, "
            + NODE_ID.encode()
            + b" started. node_manager address: 10.0.0.5:0 object_manager address: 10.0.0.5:39757\n"
        )
    assert discover_targets(head) == ["10.0.0.5:34527"]
    (session / "prom_metrics_service_discovery.json").write_text(
        '[{"labels": {"job": "ray"}, "targets": ["10.0.0.5:34527", "10.0.0.9:8080", "10.0.0.5:44217", '
        '"10.0.0.5:44227"]}]'
    )
    # The head scrapes itself, plus the autoscaler and dashboard; 10.0.0.9 is another node (its own collector's).
    assert discover_targets(head) == ["10.0.0.5:34527", "10.0.0.5:44217", "10.0.0.5:44227"]
    # Once named, the node's endpoint keeps its name (its series must not change identity mid-session).
    assert discover_targets(head, own="127.0.0.1:34527") == ["127.0.0.1:34527", "10.0.0.5:44217", "10.0.0.5:44227"]

    worker = make_session(tmp_path / "w", head=False)
    (worker / "prom_metrics_service_discovery.json").write_text(
        '[{"labels": {"job": "ray"}, "targets": ["10.0.0.5:34527", "10.0.0.5:44217"]}]'
    )
    assert discover_targets(SessionDir(worker)) == ["10.0.0.5:34527"]


def promtool_dump(spool: Path, work: Path) -> tuple[Path, str]:
    """Backfill the spool the documented way (concatenate, append `# EOF`) and dump what Prometheus stored."""
    om = work / "all.om"
    om.write_bytes(b"".join(p.read_bytes() for p in sorted(spool.glob("metrics-*.prom"))) + b"# EOF\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(work / "db")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (work / "db" / "wal").mkdir()
    dump = subprocess.run(
        ["promtool", "tsdb", "dump", str(work / "db")], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    return om, dump


def test_promtool_backfills_the_spool(tmp_path, endpoint):
    needs.system_command("promtool", "prometheus")
    spool = tmp_path / "spool"
    scraper = MetricsScraper(spool, cluster="c1", targets=[endpoint.address], max_file_bytes=5000)
    scraper.scrape_once()
    endpoint.body = EXPOSITION.replace("21.5", "22.5")
    scraper.scrape_once()
    om, dump = promtool_dump(spool, tmp_path)
    temps = sorted(line for line in dump.splitlines() if '__name__="rh_temp"' in line)
    assert len(temps) == 2
    assert f'instance="{endpoint.address}"' in temps[0] and 'ray_io_cluster="c1"' in temps[0]
    written = sorted(
        int(m.group(1)) * 1000 + int(m.group(2))
        for line in om.read_text().splitlines()
        if line.startswith("rh_temp{") and (m := TS.search(line))
    )
    assert [(float(t.split()[-2]), int(t.split()[-1])) for t in temps] == list(zip([21.5, 22.5], written))


def test_scrapes_a_real_ray_node_and_counts_failures_once_it_stops(tmp_path):
    ray = LocalRayCluster()
    # Ray's autoscaler and dashboard metrics ports are fixed by default: free ones, beside other clusters.
    ray.env["AUTOSCALER_METRIC_PORT"] = str(free_port())
    ray.env["DASHBOARD_METRIC_PORT"] = str(free_port())
    spool = tmp_path / "spool"
    try:
        session_dir = ray.start()
        session = SessionDir(session_dir)
        scraper = MetricsScraper(spool, cluster="rtest", session=session, interval=1)

        def full_scrape():
            stats = scraper.scrape_once()
            names = {s[0] for s in read_samples(spool)}
            return stats.scrapes_ok == 3 and "ray_node_cpu_utilization" in names and stats

        stats = wait_for("a scrape of node, autoscaler and dashboard with ray_node_cpu_utilization", full_scrape, 120)
        assert stats.scrapes_failed == 0 and stats.samples > 100
        targets = scraper.targets()
        own_port = next(session_dir.glob("metrics_export_port_*")).read_text().strip()
        assert targets[0].endswith(f":{own_port}")
        assert {t.split(":")[1] for t in targets[1:]} == {
            ray.env["AUTOSCALER_METRIC_PORT"],
            ray.env["DASHBOARD_METRIC_PORT"],
        }

        samples = read_samples(spool)
        cpu = [s for s in samples if s[0] == "ray_node_cpu_utilization"]
        assert cpu
        name, labels, value, stamp, _ = cpu[-1]
        assert labels["instance"] == targets[0] and labels["ray_io_cluster"] == "rtest" and labels["job"] == "ray"
        assert labels["SessionName"] == session_dir.name
        assert abs(float(stamp) - time.time()) < 120
        assert {s[1]["instance"] for s in samples} == set(targets)
        assert any(s[0].endswith("_bucket") for s in samples) and any(s[0].endswith("_total") for s in samples)
        needs.system_command("promtool", "prometheus")
        _, dump = promtool_dump(spool, tmp_path)
        stored = [line for line in dump.splitlines() if '__name__="ray_node_cpu_utilization"' in line]
        assert len(stored) == len(cpu) and f'SessionName="{session_dir.name}"' in stored[0]

        ray.stop()
        failed = scraper.scrape_once()  # no exception
        assert failed.scrapes_failed == len(targets) and failed.scrapes_ok == 0
        downs = [s for s in read_samples(spool) if s[0] == "up"][-len(targets) :]
        assert {(s[1]["instance"], s[2]) for s in downs} == {(t, 0.0) for t in targets}
    finally:
        ray.kill()
        shutil.rmtree(ray.temp_dir, ignore_errors=True)


def test_the_default_interval_is_the_one_rays_prometheus_configuration_scrapes_at():
    """Issue 12, item 7: the archive answers as the Prometheus Ray documents (its generated prometheus.yml, reading
    the service-discovery file) only when it samples as often: Ray's agent serves a reported gauge for 20 s (2 x
    metrics_report_interval_ms) and task counts are reported when they change, so ray_tasks series come and go."""
    import ray
    import yaml

    from collector.settings import CollectorSettings

    config = Path(ray.__file__).parent / "dashboard/modules/metrics/export/prometheus/prometheus.yml"
    scrape = yaml.safe_load(config.read_text())["global"]["scrape_interval"]
    assert scrape.endswith("s")
    assert CollectorSettings.__dataclass_fields__["metrics_interval"].default == float(scrape[:-1])
