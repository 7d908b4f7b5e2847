"""The dashboard API poller: against a tiny local HTTP server for the format and auth, and against real Ray."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from collector.sources.dashboard_api import ROUTES, DashboardApiPoller, dashboard_url_from_session, find_token
from collector.sources.metrics import MetricsScraper
from collector.sources.session_dir import SessionDir
from rayhistory import workload
from rayhistory.local_ray import LocalRayCluster, free_port, wait_for
from tests.fake_session import make_session
from tests.servers.loopback import LoopbackHTTP

SERVE_501 = 'Serve dependencies are not installed. Please run `pip install "ray[serve]"`.'


class Dashboard:
    """Answers ROUTES on 127.0.0.1 the way Ray 2.60's dashboard does (bodies set by the test); with `token`, it
    checks `Authorization: Bearer` as Ray's token middleware does (401 without, 403 when wrong)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.bodies: dict[str, tuple[int, str]] = {
            "/api/v0/placement_groups?detail=1&limit=10000": (
                200,
                json.dumps(
                    {
                        "result": True,
                        "msg": "",
                        "data": {"result": {"total": 1, "result": [{"placement_group_id": "ab"}]}},
                    }
                ),
            ),
            "/api/jobs/": (200, "[]"),
            "/api/cluster_status?format=0": (200, '{"result": true, "data": {"autoscalingStatus": "x"}}'),
            "/api/cluster_status?format=1": (200, '{"result": true, "data": {"clusterStatus": "y"}}'),
            "/api/serve/applications/": (501, SERVE_501),
        }
        self.auth_headers: list[str | None] = []
        self.http = LoopbackHTTP(self._respond)
        self.url = self.http.url

    def _respond(self, path: str, headers) -> tuple[int, str, bytes]:
        auth = headers.get("Authorization")
        self.auth_headers.append(auth)
        if self.token and not auth:
            status, body = 401, "Unauthorized: Missing authentication token"
        elif self.token and auth != f"Bearer {self.token}":
            status, body = 403, "Forbidden: Invalid authentication token"
        else:
            status, body = self.bodies.get(path, (404, "not found"))
        return status, "application/json" if body[:1] in "[{" else "text/plain", body.encode()

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def dashboard():
    d = Dashboard()
    yield d
    d.close()


def snapshots(spool: Path) -> list[dict]:
    out = []
    for path in sorted(spool.glob("api-*.jsonl")):
        data = path.read_bytes()
        assert data.endswith(b"\n")
        out += [json.loads(line) for line in data.splitlines()]
    return out


def test_each_route_is_snapshotted_and_unchanged_bodies_are_skipped(tmp_path, dashboard):
    poller = DashboardApiPoller(tmp_path, dashboard.url, environ={}, home=tmp_path / "nohome")
    first = poller.poll_once()
    assert (first.snapshots, first.unchanged, first.request_errors, first.auth_errors) == (5, 0, 0, 0)
    lines = snapshots(tmp_path)
    assert [p.name for p in tmp_path.glob("api-*.jsonl")] == ["api-000001.jsonl"]
    assert [line["route"] for line in lines] == list(ROUTES)
    assert all(set(line) == {"time_ms", "route", "status", "body"} for line in lines)
    by_route = {line["route"]: line for line in lines}
    assert by_route["/api/jobs/"]["body"] == [] and by_route["/api/jobs/"]["status"] == 200
    assert by_route["/api/v0/placement_groups?detail=1&limit=10000"]["body"]["data"]["result"]["total"] == 1
    assert by_route["/api/serve/applications/"] == {
        **by_route["/api/serve/applications/"],
        "status": 501,
        "body": SERVE_501,
    }
    assert first.bytes == sum(p.stat().st_size for p in tmp_path.glob("api-*.jsonl"))

    again = poller.poll_once()
    assert (again.snapshots, again.unchanged) == (0, 5)
    dashboard.bodies["/api/jobs/"] = (200, '[{"submission_id": "raysubmit_1", "status": "RUNNING"}]')
    third = poller.poll_once()
    assert (third.snapshots, third.unchanged) == (1, 4)
    last = snapshots(tmp_path)[-1]
    assert last["route"] == "/api/jobs/" and last["body"][0]["status"] == "RUNNING"
    assert last["time_ms"] >= lines[-1]["time_ms"]


def test_an_unreachable_dashboard_is_counted_and_retried(tmp_path):
    port = free_port()
    poller = DashboardApiPoller(
        tmp_path, f"http://127.0.0.1:{port}", interval=0.2, timeout=2, environ={}, home=tmp_path
    )
    stats = poller.poll_once()
    assert (stats.request_errors, stats.snapshots) == (5, 0)
    assert f"127.0.0.1:{port}" in poller.stats.last_error
    assert not list(tmp_path.glob("api-*.jsonl"))


def test_the_token_is_found_where_ray_looks_and_sent_as_a_bearer_token(tmp_path):
    token = uuid.uuid4().hex
    dashboard = Dashboard(token=token)
    try:
        nobody = DashboardApiPoller(tmp_path / "a", dashboard.url, environ={}, home=tmp_path / "empty")
        stats = nobody.poll_once()
        assert (stats.auth_errors, stats.snapshots) == (5, 0)
        assert "401" in nobody.stats.last_error and "RAY_AUTH_TOKEN" in nobody.stats.last_error
        assert "~/.ray/auth_token" in nobody.stats.last_error
        assert not list((tmp_path / "a").glob("api-*"))

        wrong = DashboardApiPoller(tmp_path / "b", dashboard.url, environ={"RAY_AUTH_TOKEN": "nope"}, home=tmp_path)
        wrong.poll_once()
        assert wrong.stats.auth_errors == 5 and "403" in wrong.stats.last_error

        home = tmp_path / "home"
        (home / ".ray").mkdir(parents=True)
        (home / ".ray" / "auth_token").write_text(token + "\n")
        token_file = tmp_path / "token"
        token_file.write_text(f"  {token}\n")
        for i, (environ, where) in enumerate(
            [
                ({"RAY_AUTH_TOKEN": token}, tmp_path / "empty"),
                ({"RAY_AUTH_TOKEN_PATH": str(token_file)}, tmp_path / "empty"),
                ({}, home),
            ]
        ):
            assert find_token(environ, where) == token
            ok = DashboardApiPoller(tmp_path / f"ok{i}", dashboard.url, environ=environ, home=where).poll_once()
            assert (ok.snapshots, ok.auth_errors) == (5, 0)
        assert dashboard.auth_headers[-1] == f"Bearer {token}"
        # Ray's order: the environment variable wins over the files.
        assert find_token({"RAY_AUTH_TOKEN": "env"}, home) == "env"
        assert find_token({}, tmp_path / "empty") is None
        # KubeRay's injection with Kubernetes token auth: its projected token file, before the others.
        k8s = {"RAY_ENABLE_K8S_TOKEN_AUTH": "true", "RAY_AUTH_TOKEN": "env"}
        assert find_token(k8s, tmp_path / "empty", k8s_token_file=token_file) == token
    finally:
        dashboard.close()


def test_the_dashboard_address_is_read_from_the_session(tmp_path):
    session = make_session(tmp_path)
    assert dashboard_url_from_session(SessionDir(session)) == "http://127.0.0.1:8265"  # Ray's default
    (session / "logs" / "dashboard.log").write_text(
        "2026-11-25 21:59:11,546\tINFO http_server_head.py:492 -- Dashboard head http address: 0.0.0.0:8265\n"
        "2026-11-25 22:10:11,546\tINFO http_server_head.py:492 -- Dashboard head http address: 10.1.2.3:36301\n"
    )
    assert dashboard_url_from_session(SessionDir(session)) == "http://10.1.2.3:36301"  # the restarted one
    (session / "logs" / "dashboard.log").write_text(
        "2026-11-25 21:59:11,546\tINFO http_server_head.py:492 -- Dashboard head http address: 0.0.0.0:8265\n"
    )
    assert dashboard_url_from_session(SessionDir(session)) == "http://127.0.0.1:8265"


def test_a_sidecar_that_started_first_finds_the_dashboard_once_it_logs_its_address(tmp_path):
    from collector.sources.dashboard_api import DashboardAddress

    session = make_session(tmp_path)
    address = DashboardAddress(SessionDir(session))
    assert address() == "http://127.0.0.1:8265"  # not logged yet: Ray's default, and the log is read again
    (session / "logs" / "dashboard.log").write_text(
        "2026-11-25 21:59:11,546\tINFO http_server_head.py:492 -- Dashboard head http address: 127.0.0.1:41234\n"
    )
    assert address() == "http://127.0.0.1:41234"
    poller = DashboardApiPoller(tmp_path / "spool", address, interval=60, timeout=0.2, routes=("/api/version",))
    poller.poll_once()
    assert poller.url == "http://127.0.0.1:41234"


def test_polls_a_real_head_through_a_workload_and_its_shutdown(tmp_path):
    ray = LocalRayCluster()
    ray.env["AUTOSCALER_METRIC_PORT"] = str(free_port())
    ray.env["DASHBOARD_METRIC_PORT"] = str(free_port())
    spool = tmp_path / "spool"
    try:
        session = SessionDir(ray.start())
        ray.wait_ready()
        url = dashboard_url_from_session(session)
        assert url == ray.dashboard
        poller = DashboardApiPoller(spool, url, interval=0.5)
        stop = threading.Event()
        loop = threading.Thread(target=poller.run, args=(stop,))
        loop.start()
        try:
            wait_for("a first poll", lambda: poller.stats.polls >= 1, 60)
            jobs = workload.run(ray.env, ray.address, ray.dashboard)
        finally:
            stop.set()
            loop.join(60)
        final = poller.poll_once()  # what the collector does at shutdown
        assert final.request_errors == 0 and final.auth_errors == 0

        lines = snapshots(spool)
        assert {line["route"] for line in lines} == set(ROUTES)
        last = {line["route"]: line for line in lines}
        listed = {j["submission_id"]: j["status"] for j in last["/api/jobs/"]["body"] if j.get("submission_id")}
        assert listed == jobs and set(jobs.values()) == {"SUCCEEDED", "FAILED"}
        assert any(j["type"] == "DRIVER" for j in last["/api/jobs/"]["body"])
        assert last["/api/cluster_status?format=1"]["body"]["data"]["clusterStatus"].startswith("======== Autoscaler")
        assert "autoscalingStatus" in last["/api/cluster_status?format=0"]["body"]["data"]
        assert last["/api/v0/placement_groups?detail=1&limit=10000"]["body"]["result"] is True
        assert last["/api/serve/applications/"]["status"] in (200, 501)
        # The jobs list changed while the workload ran and was written only when it did.
        job_lines = [line for line in lines if line["route"] == "/api/jobs/"]
        assert 2 <= len(job_lines) < poller.stats.polls
        assert poller.stats.unchanged > 0

        ray.stop()
        gone = poller.poll_once()  # no exception
        assert gone.request_errors == len(ROUTES) and gone.snapshots == 0
    finally:
        ray.kill()
        shutil.rmtree(ray.temp_dir, ignore_errors=True)


def _get(url: str, token: str | None = None) -> int | None:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def test_authenticates_to_a_real_head_with_token_auth(tmp_path):
    """Ray 2.60 turns token auth on for `ray start` when RAY_AUTH_MODE is unset and ~/.ray/auth_token exists."""
    token = uuid.uuid4().hex
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token + "\n")
    ray = LocalRayCluster()
    ray.env.pop("RAY_AUTH_MODE")
    ray.env.pop("RAY_AUTH_TOKEN", None)
    ray.env.pop("RAY_AUTH_TOKEN_PATH", None)
    ray.env["HOME"] = str(home)
    ray.env["AUTOSCALER_METRIC_PORT"] = str(free_port())
    ray.env["DASHBOARD_METRIC_PORT"] = str(free_port())
    try:
        ray.start()
        wait_for(
            "the dashboard (with the token)", lambda: _get(ray.dashboard + "/api/version", token) == 200, 90, ray.proc
        )
        assert _get(ray.dashboard + "/api/version") == 401  # token auth is really on

        anonymous = DashboardApiPoller(tmp_path / "a", ray.dashboard, environ={}, home=tmp_path / "empty")
        denied = anonymous.poll_once()
        assert denied.auth_errors == len(ROUTES) and denied.snapshots == 0
        assert "RAY_AUTH_TOKEN" in anonymous.stats.last_error

        for i, (environ, where) in enumerate([({}, home), ({"RAY_AUTH_TOKEN": token}, tmp_path / "empty")]):
            poller = DashboardApiPoller(tmp_path / f"ok{i}", ray.dashboard, environ=environ, home=where)
            ok = poller.poll_once()
            assert ok.auth_errors == 0 and ok.request_errors == 0 and ok.snapshots == len(ROUTES)
            jobs = next(line for line in snapshots(tmp_path / f"ok{i}") if line["route"] == "/api/jobs/")
            assert jobs["status"] == 200 and jobs["body"] == []

        # Ray's metrics endpoints are not behind the token: the scraper needs none.
        scraper = MetricsScraper(tmp_path / "metrics", cluster="auth", session=SessionDir(ray.session_dir))
        wait_for("a metrics scrape", lambda: scraper.scrape_once().scrapes_ok, 60)
    finally:
        ray.stop()
        ray.kill()
        shutil.rmtree(ray.temp_dir, ignore_errors=True)
