"""A real two-node Ray 2.60 cluster watched three ways at once, for the fidelity harness (tests/test_fidelity.py).

A head and a second `ray start` worker node on this machine (each with its own temp dir and ports), a collector
beside each node writing one local archive, and a real Prometheus scraping Ray as Ray documents it: the
service-discovery file the head writes (`prom_metrics_service_discovery.json`) through `file_sd_configs`, with
`ray_io_cluster` added by relabelling as KubeRay's PodMonitor adds it. The workload (tests/fidelity_workload.py)
runs; once the cluster is settled (the finished driver's leftovers failed by the GCS, the submitted job still
running), Ray's live dashboard answers to every route its UI calls and Prometheus's answers to every
Default-dashboard panel are recorded. Then Ray stops (worker node first, as a scaled-down pod), the collectors
finish, and the archive is left for the test to serve in-process.

`events` picks Ray's event path: `files` (export-event files, RAY_enable_export_api_write=1) or `http` (RayEvents
POSTed by each node's dashboard agent to its own collector's receiver).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archive.layout import SessionRef
from archive.storage import open_store
from rayhistory.local_ray import LocalRayCluster, RayFailed, free_port, wait_for
from tests.promql_panels import Case, GrafanaRequest, cases
from tests.servers.prometheus import Prometheus

CLUSTER = "fidelity"
NAMESPACE = "default"
WORKLOAD = Path(__file__).with_name("fidelity_workload.py")
# The metrics agent drops a count series two report intervals (20 s) after it was last reported, one interval (10 s)
# late at most; and a scrape (2 s) to see it gone.
COUNTS_STILL_S = 32
SCRAPE_S = 2  # Prometheus's scrape interval and the collector's --metrics-interval: the same, as in production
STEP_S = 5  # range queries' step
DEFAULT_DASHBOARD = "rayDefaultDashboard"
# The GCS fails a finished job's leftover tasks gcs_mark_task_failed_on_job_done_delay_ms (15 s) after its end.
JOB_DONE_WAIT_S = 60
AFTER_THE_FACT_S = 5  # `collect --once` runs at least this long after Ray stopped


@dataclass
class Recorded:
    events: str
    archive: str
    ref: SessionRef
    live: dict[str, Any]  # route (as Ray's UI requests it, no leading /) -> Ray's answer (JSON, or text)
    panels: list[Case]  # the Default dashboard's targets as Grafana sends them
    prometheus: dict[str, dict]  # case id -> Prometheus's query_range data over `window`
    window: tuple[float, float, float]  # start, end, step (seconds)
    recorded_s: float  # when the live answers were taken (epoch seconds)
    settled_s: float  # from when nothing changed any more in the cluster until it stopped
    stopped_s: float  # when Ray had stopped on both nodes
    collected_s: float  # when the collectors had finished (they are stopped after Ray)
    series: list[dict]  # Prometheus's /api/v1/series for every series of job "ray" over `window`
    whole_panels: list[Case]  # the panels again, for the whole session's window
    after: dict[str, dict]  # case id -> Prometheus's answer over `whole`, asked after Ray stopped
    whole: tuple[float, float, float]  # the session's start to after its end
    once: str | None  # an archive of the same session made by `collect --once` after Ray stopped (files path)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> "finished" | "running" (at the recording)
    timings: dict[str, float] = field(default_factory=dict)


def _event_env(events: str, port: int) -> dict[str, str]:
    if events == "files":
        return {"RAY_enable_export_api_write": "1"}
    return {
        "RAY_enable_export_api_write": "0",
        "RAY_enable_core_worker_ray_event_to_aggregator": "1",
        "RAY_enable_ray_event": "1",
        "RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR": f"http://127.0.0.1:{port}/v1/events",
        "RAY_DASHBOARD_AGGREGATOR_AGENT_EXPOSABLE_EVENT_TYPES": "ALL",
    }


class WorkerNode:
    """`ray start --address=<head> --block` with its own temp dir and ports; SIGTERM stops it, and only it."""

    def __init__(self, head: LocalRayCluster, env: dict[str, str]) -> None:
        self.head = head
        self.env = env
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rw-", dir="/tmp"))
        self.log = self.temp_dir / "ray-start.log"
        self.proc: subprocess.Popen | None = None
        self.session_dir: Path | None = None
        self._pick_ports()

    def start(self) -> Path:
        """The head's start (rayhistory/local_ray.py) over this node's `_popen`, `_session_dir` and `_pick_ports`:
        `ray start`'s output in ray-start.log, quoted if it fails, and tried once more on fresh ports if it exits at
        once (CI saw this node's `ray start` exit with code 1, its output then sent nowhere)."""
        return LocalRayCluster.start(self)  # type: ignore[arg-type]

    def _pick_ports(self) -> None:
        self.ports = {
            flag: free_port()
            for flag in (
                "--dashboard-agent-listen-port",
                "--dashboard-agent-grpc-port",
                "--runtime-env-agent-port",
                "--metrics-export-port",
            )
        }

    def _popen(self, ray_bin: Path, log) -> subprocess.Popen:
        return subprocess.Popen(
            [
                str(ray_bin),
                "start",
                f"--address={self.head.address}",
                "--block",
                f"--temp-dir={self.temp_dir}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=1",
                '--resources={"fidelity_worker": 1}',
                "--disable-usage-stats",
                *(f"{flag}={port}" for flag, port in self.ports.items()),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _session_dir(self) -> Path | None:
        latest = self.temp_dir / "session_latest"
        if latest.exists() and any(latest.resolve().glob("metrics_export_port_*")):
            return latest.resolve()
        return None

    def stop(self) -> None:
        LocalRayCluster.stop(self)  # type: ignore[arg-type]  # the same SIGTERM-then-kill of the process group

    def kill(self) -> None:
        LocalRayCluster.kill(self)  # type: ignore[arg-type]


def _collector(session_dir: Path, archive: str, env: dict[str, str], http_port: int | None) -> subprocess.Popen:
    args = [
        *("--session-dir", str(session_dir), "--archive", archive, "--cluster", CLUSTER, "--namespace", NAMESPACE),
        *("--interval", "1", "--metrics-interval", str(SCRAPE_S), "--api-interval", "2"),
        *(("--http-port", str(http_port)) if http_port else ()),
    ]
    return subprocess.Popen([sys.executable, "-m", "rayhistory.cli", "collect", *args], env=env)


def _prometheus_config(head_session: Path) -> str:
    sd = head_session / "prom_metrics_service_discovery.json"
    return (
        f"global:\n  scrape_interval: {SCRAPE_S}s\n  scrape_timeout: {SCRAPE_S}s\n"
        "scrape_configs:\n"
        "  - job_name: ray\n"
        f"    file_sd_configs:\n      - files: [{json.dumps(str(sd))}]\n        refresh_interval: 1s\n"
        f"    relabel_configs:\n      - target_label: ray_io_cluster\n        replacement: {CLUSTER}\n"
    )


def get_json(base: str, route: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(f"{base}/{route}", timeout=timeout) as r:
        body = r.read().decode()
    try:
        return json.loads(body)
    except ValueError:
        return body


def _filter(key: str, value: str) -> str:
    return urllib.parse.urlencode({"filter_keys": key, "filter_predicates": "=", "filter_values": value})


def routes_to_record(dashboard: str) -> list[str]:
    """Every route Ray's UI calls (reference README, 3 and 3b), for every job, actor and node of the cluster."""
    routes = [
        "api/version",
        "api/v0/cluster_metadata",
        "api/cluster_status?format=1",
        "nodes?view=summary",
        "api/v0/nodes",
        "api/jobs/",
        "logical/actors",
        "api/v0/tasks?detail=1&limit=10000",
        "api/v0/tasks/summarize",
        "api/v0/tasks/summarize?summary_by=lineage",
        "api/v0/placement_groups?detail=1&limit=10000",
        "events",
    ]
    for job in get_json(dashboard, "api/jobs/"):
        routes.append(f"api/jobs/{job['submission_id'] or job['job_id']}")
        if job.get("job_id"):
            f = _filter("job_id", job["job_id"])
            routes += [
                f"api/v0/tasks/summarize?{f}",
                f"api/v0/tasks/summarize?{f}&summary_by=lineage",
                f"api/v0/tasks?detail=1&limit=10000&{f}",
            ]
    for actor_id in get_json(dashboard, "logical/actors")["data"]["actors"]:
        routes.append(f"logical/actors/{actor_id}")
    for node in get_json(dashboard, "api/v0/nodes")["data"]["result"]["result"]:
        routes += [f"nodes/{node['node_id']}", f"api/v0/logs?node_id={node['node_id']}"]
    return routes


def default_panels(head_session: Path, session_name: str, window_s: float) -> list[Case]:
    """The Default dashboard Ray generated for this session, each target as Grafana sends it for this session."""
    request = GrafanaRequest(
        {"SessionName": session_name, "Cluster": CLUSTER}, interval_ms=STEP_S * 1000, range_ms=int(window_s * 1000)
    )
    folder = head_session / "metrics" / "grafana" / "dashboards"
    return [c for c in cases({"session": request}, folder) if c.target.uid == DEFAULT_DASHBOARD]


def _settled(dashboard: str, driver_job: str) -> bool:
    """The finished driver's leftovers are FAILED: the GCS has applied its job-end rule."""
    tasks = get_json(dashboard, f"api/v0/tasks?detail=1&limit=10000&{_filter('job_id', driver_job)}")
    states = {t["state"] for t in tasks["data"]["result"]["result"]}
    return bool(states) and states <= {"FINISHED", "FAILED"}


def run(events: str, work: Path) -> Recorded:
    """Run the workload on a fresh cluster with `events` as Ray's event path, record, stop, archive."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    archive = str(work / "archive")
    head_port, worker_port = (free_port(), free_port()) if events == "http" else (None, None)
    head = LocalRayCluster(num_cpus=3)
    head.env.update(_event_env(events, head_port or 0))
    worker = WorkerNode(head, {**head.env, **_event_env(events, worker_port or 0)})
    collectors: list[subprocess.Popen] = []
    prometheus = Prometheus(work / "prometheus")
    prometheus.data.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, head.temp_dir, True)
        cleanup.callback(shutil.rmtree, worker.temp_dir, True)
        cleanup.callback(head.kill)
        cleanup.callback(worker.kill)
        cleanup.callback(prometheus.stop)
        cleanup.callback(lambda: [c.kill() for c in collectors if c.poll() is None])

        # Each collector starts before its node, as a sidecar does, on Ray's session_latest link: its event
        # receiver holds its port before Ray's processes pick their random ones (a port free_port() found free
        # was once taken by Ray before the collector bound it).
        collectors.append(_collector(head.temp_dir / "session_latest", archive, head.env, head_port))
        head_session = head.start()
        start_s = time.time()
        ref = SessionRef(NAMESPACE, CLUSTER, head_session.name)
        prometheus.start(config_text=_prometheus_config(head_session))
        head.wait_ready()
        collectors.append(_collector(worker.temp_dir / "session_latest", archive, worker.env, worker_port))
        worker_session = worker.start()
        wait_for("the collectors to register", lambda: open_store(archive).exists(ref.index_key), 120, collectors[0])
        wait_for(
            "both nodes alive",
            lambda: (
                sum(n["state"] == "ALIVE" for n in get_json(head.dashboard, "api/v0/nodes")["data"]["result"]["result"])
                == 2
            ),
            90,
            head.proc,
        )
        timings["start"] = time.monotonic() - t0

        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(head.dashboard)
        submission = _submit(client, f"{sys.executable} {WORKLOAD} job {work}")
        driver = subprocess.run(
            [sys.executable, str(WORKLOAD), "driver", str(work)],
            env={**head.env, "RAY_ADDRESS": head.address},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if driver.returncode != 0:
            raise RayFailed(f"the fidelity driver failed ({driver.returncode}):\n{driver.stderr[-3000:]}")
        wait_for("the submitted job to be ready", lambda: (work / "job-ready").exists(), 120)
        timings["workload"] = time.monotonic() - t0 - timings["start"]

        jobs = {j["job_id"]: j for j in get_json(head.dashboard, "api/jobs/") if j.get("job_id")}
        [driver_job] = [j for j, v in jobs.items() if v["type"] == "DRIVER" and v["status"] == "SUCCEEDED"]
        wait_for("the GCS to fail the driver's leftover tasks", lambda: _settled(head.dashboard, driver_job), 60)
        # The metrics agent keeps a gauge series for two report intervals (20 s) after its last report
        # (open_telemetry_metric_recorder.py): the finished driver's task and actor series linger that long.
        wait_for("the finished driver's series to leave Prometheus", lambda: _gone(prometheus, driver_job), 90)
        # The same linger holds for the running job's counts that fell to 0 (its actor's creation and its one call):
        # while one may still leave, a step can fall between the two scrapers' views of it leaving. Settled is when
        # no task or actor count series came or went for longer than that linger.
        wait_for(
            f"no task or actor count series to come or go for {COUNTS_STILL_S} s",
            _Unchanged(lambda: _counts(prometheus), COUNTS_STILL_S),
            COUNTS_STILL_S + 90,
        )
        settled_s = time.time()
        # Both scrapers scrape the settled cluster twice before the recording, so the window's last steps agree.
        wait_for("two scrapes of the settled cluster", lambda: _scraped_since(prometheus, settled_s) >= 3, 60)
        timings["settle"] = time.monotonic() - t0 - timings["start"] - timings["workload"]

        recorded_s = time.time()
        live = {route: get_json(head.dashboard, route) for route in routes_to_record(head.dashboard)}
        window = (
            float(-(-int(start_s) // STEP_S) * STEP_S),
            float(int(recorded_s) // STEP_S * STEP_S),
            float(STEP_S),
        )
        panels = default_panels(head_session, head_session.name, window[1] - window[0])
        answers = {c.id: prometheus.query_range(c.expr, *window) for c in panels}
        series = prometheus.series('{__name__=~".+", job="ray"}', window[0], window[1])
        timings["record"] = time.monotonic() - t0 - sum(timings.values())
        status = {j: "running" if v["status"] == "RUNNING" else "finished" for j, v in jobs.items()}
        assert client.get_job_status(submission).value == "RUNNING"

        # Both nodes at once, as when a RayCluster is deleted.
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
        head.stop()
        worker.stop()
        stopped_s = time.time()
        timings["ray_stop"] = time.monotonic() - t0 - sum(timings.values())
        for c in collectors:
            c.send_signal(signal.SIGTERM)
        codes = [c.wait(timeout=120) for c in collectors]
        if codes != [0, 0]:
            raise RayFailed(f"collectors exited with {codes}")
        collected_s = time.time()
        timings["collectors_finish"] = time.monotonic() - t0 - sum(timings.values())
        # The whole session as Prometheus saw it, its end included: once every target failed a scrape, Prometheus has
        # written its staleness markers (the archive's compaction derives the same from the collectors' last blocks).
        wait_for("Prometheus to see every target down", lambda: _all_down(prometheus), 60)
        whole = (window[0], float(-(-int(time.time()) // STEP_S) * STEP_S), float(STEP_S))
        whole_panels = default_panels(head_session, head_session.name, whole[1] - whole[0])
        after = {c.id: prometheus.query_range(c.expr, *whole) for c in whole_panels}
        timings["prometheus_end"] = time.monotonic() - t0 - sum(timings.values())
        once = None
        if events == "files":  # the HTTP path's events never reach the session directory: nothing to archive later
            once = str(work / "once")
            # After the fact: late enough that an end taken from the collection clock (item 4) cannot pass for
            # Ray's own, which the comparison allows END_SLACK_MS of. The delay is the point, not a synchronization.
            wait_for("time to pass after Ray stopped", lambda: time.time() >= stopped_s + AFTER_THE_FACT_S, 30)
            for session_dir in (head_session, worker_session):
                _collect_once(session_dir, once, head.env)
            timings["collect_once"] = time.monotonic() - t0 - sum(timings.values())
    return Recorded(
        events, archive, ref, live, panels, answers, window, recorded_s, settled_s, stopped_s, collected_s, series,
        whole_panels, after, whole, once, status, timings,
    )  # fmt: skip


def _gone(prometheus: Prometheus, job_id: str) -> bool:
    return not prometheus.query(f'count({{JobId="{job_id}", job="ray"}})', time.time())["result"]


def _counts(prometheus: Prometheus) -> frozenset:
    """Every task and actor count series Prometheus has now (their label sets: the values of the job supervisor's
    periodic pings keep changing, what matters is a series coming or going)."""
    found = prometheus.query('ray_tasks{job="ray"} or ray_actors{job="ray"}', time.time())["result"]
    return frozenset(frozenset(s["metric"].items()) for s in found)


class _Unchanged:
    """A check that holds once `read()` has answered the same for `for_s` seconds (polled by wait_for)."""

    def __init__(self, read, for_s: float) -> None:
        self.read, self.for_s = read, for_s
        self.last, self.since = None, time.monotonic()

    def __call__(self) -> bool:
        now, value = time.monotonic(), self.read()
        if value != self.last:
            self.last, self.since = value, now
        return now - self.since >= self.for_s


def _all_down(prometheus: Prometheus) -> bool:
    data = prometheus.query('max(up{job="ray"})', time.time())
    return bool(data["result"]) and float(data["result"][0]["value"][1]) == 0


def _scraped_since(prometheus: Prometheus, since_s: float) -> int:
    """How many scrapes of its least recently scraped target Prometheus made since `since_s` (0 before any)."""
    try:
        data = prometheus.query(
            f'min(count_over_time(up{{job="ray"}}[{int(time.time() - since_s) + 1}s]))', time.time()
        )
    except Exception:
        return 0
    return int(float(data["result"][0]["value"][1])) if data["result"] else 0


def _collect_once(session_dir: Path, archive: str, env: dict[str, str]) -> None:
    """`rayhistory collect --once`: archive a session after its cluster stopped (issue 12, item 4)."""
    args = ["--session-dir", str(session_dir), "--archive", archive, "--cluster", CLUSTER, "--namespace", NAMESPACE]
    done = subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "collect", *args, "--once"], env=env, capture_output=True, timeout=120
    )
    if done.returncode != 0:
        raise RayFailed(f"collect --once of {session_dir} failed: {done.stderr.decode(errors='replace')[-2000:]}")


def _submit(client, entrypoint: str, timeout: float = 120) -> str:
    """Submit, waiting for the head's job agent: the dashboard answers before the agent has registered."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
