"""The live Ray dashboard through the server (/clusters/{ns}/{name}/live/): a REAL Ray head started locally, with
Ray 2.60's token auth on (the token served as the RayCluster's Secret by tests/servers/kube_api.py) and off."""

from __future__ import annotations

import json
import re
import secrets
import urllib.error
import urllib.request

import pytest

from archive.manifest import ENDED
from archive.storage.local import LocalStore
from historyserver.live.kube import LiveClusters, LiveSettings
from historyserver.live.proxy import MAX_BODY
from rayhistory.local_ray import LocalRayCluster, wait_for
from tests.servers.kube_api import KubeAPI
from tests.test_live_kubernetes import _client, _publish, crds  # noqa: F401 - fixture

NS, NAME = "team-a", "live-ray"
LIVE = f"/clusters/{NS}/{NAME}/live"


def _ray_cluster(token_auth: bool) -> dict:
    spec: dict = {"rayVersion": "2.60.0", "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {}}}}
    if token_auth:
        spec["authOptions"] = {"mode": "token"}  # KubeRay's Secret: the cluster's name, key auth_token
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": NAME, "namespace": NS, "creationTimestamp": "2026-11-25T20:00:00Z"},
        "spec": spec,
        "status": {"state": "ready", "head": {"serviceName": f"{NAME}-head-svc", "podIP": "127.0.0.1"}},
    }


def _status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


@pytest.fixture(scope="module", params=["token", "disabled"])
def ray_head(request):
    ray = LocalRayCluster(num_cpus=1)
    token = secrets.token_hex(32) if request.param == "token" else None
    ray.env["RAY_AUTH_MODE"] = request.param
    if token:
        ray.env["RAY_AUTH_TOKEN"] = token
    try:
        ray.start()
        wait_for("Ray's dashboard", lambda: _status(ray.dashboard + "/api/authentication_mode") == 200, 90, ray.proc)
        yield ray, token
    finally:
        ray.stop()
        ray.kill()


@pytest.fixture
def client(tmp_path, crds, ray_head):  # noqa: F811 - the imported fixture
    ray, token = ray_head
    with KubeAPI(crds, [_ray_cluster(token is not None)]) as kube:
        if token:
            kube.secrets[(NS, NAME)] = {"auth_token": token.encode()}
        live = LiveClusters(
            LiveSettings(
                mode="kubeconfig",
                kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                ttl=0,
                dashboard_url_template=f"http://127.0.0.1:{ray.dashboard_port}",
            )
        )
        with _client(tmp_path, live) as c:
            yield c, ray, token, kube


def test_rays_ui_and_api_through_the_server(client):
    c, ray, token, kube = client
    direct = _status(ray.dashboard + "/api/jobs/")
    assert direct == (401 if token else 200)  # Ray's own auth is what the proxy has to satisfy
    root = c.get(LIVE, follow_redirects=False)
    assert root.status_code == 308 and root.headers["location"] == f"{LIVE}/"
    index = c.get(f"{LIVE}/")
    assert index.status_code == 200 and "./static/" in index.text  # Ray's UI, which works under a prefix
    script = re.search(r'src="\./(static/js/main\.[^"]+\.js)"', index.text)
    assert script, index.text[:500]
    js = c.get(f"{LIVE}/{script.group(1)}")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and len(js.content) > 100_000
    # The user's own credentials and cookies for this server never reach Ray, and do not spoil Ray's token.
    jobs = c.get(
        f"{LIVE}/api/jobs/", headers={"Authorization": "Bearer ours", "Cookie": "ray-authentication-token=wrong"}
    )
    assert jobs.status_code == 200 and isinstance(jobs.json(), list), jobs.text
    nodes = c.get(f"{LIVE}/nodes", params={"view": "summary"}).json()
    assert nodes["result"] is True and nodes["data"]["summary"][0]["raylet"]["state"] == "ALIVE"
    mode = c.get(f"{LIVE}/api/authentication_mode")
    assert mode.json()["authentication_mode"] == ("token" if token else "disabled")
    assert "set-cookie" not in mode.headers  # Ray clears its cookie at path=/ when auth is off: not ours to clear
    assert c.head(f"{LIVE}/api/version").status_code == 200
    secret_reads = [p for m, p in kube.requests if "/secrets/" in p]
    assert secret_reads == ([f"/api/v1/namespaces/{NS}/secrets/{NAME}"] if token else [])  # read once, reused
    if token:  # a wrong token in the Secret is Ray's 403, not an open door
        kube.secrets[(NS, NAME)] = {"auth_token": b"0" * 64}
        c.app.state.ray_tokens = None  # a rotated Secret is read again after the cache's ttl; here at once
        assert c.get(f"{LIVE}/api/jobs/").status_code == 403


def test_posts_reach_ray_and_ray_still_refuses_browsers_posts(client):
    c, ray, token, kube = client
    body = c.post(f"{LIVE}/api/jobs/", json={"no_such_field_xyz": 1})
    assert body.status_code == 400 and "no_such_field_xyz" in body.text, body.text  # Ray read the body and refused
    browser = c.post(f"{LIVE}/api/jobs/", content=b"{}", headers={"User-Agent": "Mozilla/5.0 (X11; Linux)"})
    assert browser.status_code == 405 and "browser" in browser.text
    big = c.post(f"{LIVE}/api/jobs/", content=b"x" * (MAX_BODY + 1))
    assert big.status_code == 413 and str(MAX_BODY) in big.json()["error"]["message"]
    assert c.put(f"{LIVE}/api/jobs/").status_code == 405  # only what Ray's UI uses crosses


def test_a_head_that_stopped_answering_is_a_502_naming_the_dashboard(tmp_path, crds):  # noqa: F811
    store = LocalStore(tmp_path / "archive")
    _publish(store, NS, NAME, "session_2026-11-25_20-00-00_000001_1", ENDED, 1_000)
    with KubeAPI(crds, [_ray_cluster(False)]) as kube:
        live = LiveClusters(
            LiveSettings(
                mode="kubeconfig",
                kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                ttl=0,
                dashboard_url_template="http://127.0.0.1:9/",  # discard: refused
            )
        )
        with _client(tmp_path, live) as c:
            r = c.get(f"{LIVE}/api/jobs/", follow_redirects=False)
    assert r.status_code == 502 and "127.0.0.1:9" in json.dumps(r.json())


def test_rays_ui_in_chromium_through_the_server_with_no_login_asked(client):
    from tests.browser import browser, page_watch, served, wait_for_text

    c, ray, token, kube = client
    with served(c.app) as base, browser() as b, page_watch(b) as (page, problems):
        page.goto(f"{base}{LIVE}/#/cluster")
        wait_for_text(page, ["NODES", "ALIVE"], timeout=60)  # the head node, from the live cluster
        page.screenshot(path=f"/tmp/live_dashboard_{'token' if token else 'disabled'}.png", full_page=True)
        assert "token" not in page.inner_text("body").lower()  # Ray's login dialog asks for a token
        refused = [p for p in problems.requests if p.endswith(("-> 401", "-> 403"))]
        assert refused == [], problems.all()
