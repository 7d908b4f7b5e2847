"""Live RayClusters, RayJobs and RayServices: the real kubernetes client against tests/servers/kube_api.py.

The objects below are what KubeRay writes; a test proves they validate against the CRDs' v1 schemas, with fields the
API server would prune counted as errors.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient

from archive.manifest import ENDED, RUNNING, SessionManifest
from archive.settings import SettingsError
from archive.storage.local import LocalStore
from historyserver.app import create_app
from historyserver.live.kube import KubernetesUnavailable, LiveClusters, LiveSettings
from historyserver.settings import ServerSettings
from tests.servers.kube_api import KubeAPI, closed_port, load_crds, silent_listener

CRD_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "k8s" / "crds"  # KubeRay's CRDs, ../shared/

_HEAD = """
  headGroupSpec:
    rayStartParams: {dashboard-host: 0.0.0.0}
    template:
      spec:
        containers:
        - name: ray-head
          image: rayproject/ray:2.60.0
          ports: [{containerPort: 8265, name: dashboard}]
  rayVersion: 2.60.0
"""


def _cluster_status(name: str, pod_ip: str, service_ip: str, dashboard: str = "8265") -> str:
    return f"""
  state: ready
  desiredCPU: "2"
  desiredMemory: 4Gi
  desiredGPU: "0"
  desiredTPU: "0"
  desiredWorkerReplicas: 1
  availableWorkerReplicas: 1
  readyWorkerReplicas: 1
  minWorkerReplicas: 1
  maxWorkerReplicas: 4
  endpoints: {{client: "10001", dashboard: "{dashboard}", gcs-server: "6379", metrics: "8080", serve: "8000"}}
  head: {{podIP: {pod_ip}, podName: {name}-head-8kq2x, serviceIP: {service_ip}, serviceName: {name}-head-svc}}
  conditions:
  - {{type: HeadPodReady, status: "True", reason: HeadPodRunningAndReady, message: "", lastTransitionTime: "2026-11-25T20:01:30Z"}}
  - {{type: RayClusterProvisioned, status: "True", reason: AllPodRunningAndReadyFirstTime, message: "", lastTransitionTime: "2026-11-25T20:01:40Z"}}
  lastUpdateTime: "2026-11-25T20:01:40Z"
  observedGeneration: 1
  stateTransitionTimes: {{ready: "2026-11-25T20:01:40Z"}}
"""


FIXTURES = f"""
apiVersion: ray.io/v1
kind: RayCluster
metadata: {{name: raycluster-kuberay, namespace: team-a, creationTimestamp: "2026-11-25T20:00:00Z"}}
spec:{_HEAD}
  workerGroupSpecs:
  - groupName: workers
    replicas: 1
    minReplicas: 1
    maxReplicas: 4
    rayStartParams: {{}}
    template: {{spec: {{containers: [{{name: ray-worker, image: "rayproject/ray:2.60.0"}}]}}}}
status:{_cluster_status("raycluster-kuberay", "10.244.0.12", "10.96.120.5", dashboard="8266")}
---
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: train-mnist-x7k2p
  namespace: team-a
  creationTimestamp: "2026-11-25T20:10:05Z"
  labels: {{ray.io/originated-from-crd: RayJob, ray.io/originated-from-cr-name: train-mnist}}
  ownerReferences:
  - {{apiVersion: ray.io/v1, kind: RayJob, name: train-mnist, uid: 0b7d2f3c-4e59-4a5b-9a59-5d2d8a3c1e01, controller: true, blockOwnerDeletion: true}}
spec:{_HEAD}
status:{_cluster_status("train-mnist-x7k2p", "10.244.1.7", "10.96.33.12")}
---
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: llm-serve-9qz4d
  namespace: team-b
  creationTimestamp: "2026-11-25T19:00:00Z"
  labels: {{ray.io/originated-from-crd: RayService, ray.io/originated-from-cr-name: llm-serve}}
spec:{_HEAD}
status:{_cluster_status("llm-serve-9qz4d", "10.244.2.3", "10.96.7.40")}
---
apiVersion: ray.io/v1
kind: RayCluster
metadata: {{name: dev-sandbox, namespace: team-c, creationTimestamp: "2026-11-25T20:30:00Z"}}
spec:{_HEAD}
status:
  desiredWorkerReplicas: 0
  conditions:
  - {{type: HeadPodReady, status: "False", reason: HeadPodNotFound, message: "Head Pod not found", lastTransitionTime: "2026-11-25T20:30:01Z"}}
  - {{type: RayClusterProvisioned, status: "False", reason: RayClusterPodsProvisioning, message: "RayCluster Pods are being provisioned for first time", lastTransitionTime: "2026-11-25T20:30:01Z"}}
---
apiVersion: ray.io/v1
kind: RayCluster
metadata: {{name: payroll, namespace: secret-team, creationTimestamp: "2026-11-25T18:00:00Z"}}
spec:{_HEAD}
status:{_cluster_status("payroll", "10.244.3.9", "10.96.1.2")}
---
apiVersion: ray.io/v1
kind: RayJob
metadata: {{name: train-mnist, namespace: team-a, creationTimestamp: "2026-11-25T20:10:00Z", uid: 0b7d2f3c-4e59-4a5b-9a59-5d2d8a3c1e01}}
spec:
  entrypoint: python /home/ray/samples/train_mnist.py
  shutdownAfterJobFinishes: true
  ttlSecondsAfterFinished: 60
  rayClusterSpec:{_HEAD.replace(chr(10) + "  ", chr(10) + "    ")}
status:
  jobDeploymentStatus: Running
  jobStatus: RUNNING
  jobId: train-mnist-7bq4s
  rayClusterName: train-mnist-x7k2p
  dashboardURL: train-mnist-x7k2p-head-svc.team-a.svc.cluster.local:8265
  startTime: "2026-11-25T20:10:01Z"
  rayJobInfo: {{startTime: "2026-11-25T20:11:02Z"}}
  failed: 0
  succeeded: 0
  observedGeneration: 1
  rayClusterStatus:{_cluster_status("train-mnist-x7k2p", "10.244.1.7", "10.96.33.12").replace(chr(10) + "  ", chr(10) + "    ")}
---
apiVersion: ray.io/v1
kind: RayJob
metadata: {{name: nightly-eval, namespace: team-a, creationTimestamp: "2026-11-25T02:00:00Z"}}
spec:
  entrypoint: python eval.py
  shutdownAfterJobFinishes: true
  rayClusterSpec:{_HEAD.replace(chr(10) + "  ", chr(10) + "    ")}
status:
  jobDeploymentStatus: Failed
  jobStatus: FAILED
  jobId: nightly-eval-m4n8v
  rayClusterName: nightly-eval-r2d2x
  reason: AppFailed
  message: "Job failed due to an application error, last available logs: ValueError: bad shard"
  startTime: "2026-11-25T02:00:01Z"
  endTime: "2026-11-25T02:41:09Z"
  failed: 1
  succeeded: 0
  observedGeneration: 1
---
apiVersion: ray.io/v1
kind: RayService
metadata: {{name: llm-serve, namespace: team-b, creationTimestamp: "2026-11-25T18:59:58Z"}}
spec:
  serveConfigV2: |
    applications:
    - name: llm
      import_path: serve_llm:app
  rayClusterConfig:{_HEAD.replace(chr(10) + "  ", chr(10) + "    ")}
status:
  conditions:
  - {{type: Ready, status: "True", reason: NonZeroServeEndpoints, message: "Number of serve endpoints is greater than 0", lastTransitionTime: "2026-11-25T19:03:00Z"}}
  - {{type: UpgradeInProgress, status: "False", reason: NoPendingCluster, message: "Active Ray cluster exists and no pending Ray cluster", lastTransitionTime: "2026-11-25T19:03:00Z"}}
  numServeEndpoints: 2
  observedGeneration: 1
  lastUpdateTime: "2026-11-25T19:03:00Z"
  activeServiceStatus:
    rayClusterName: llm-serve-9qz4d
    applicationStatuses:
      llm:
        status: RUNNING
        serveDeploymentStatuses: {{LLMServer: {{status: HEALTHY}}}}
  pendingServiceStatus: {{}}
---
apiVersion: ray.io/v1
kind: RayService
metadata: {{name: ranker, namespace: team-b, creationTimestamp: "2026-11-25T20:40:00Z"}}
spec:
  rayClusterConfig:{_HEAD.replace(chr(10) + "  ", chr(10) + "    ")}
status:
  conditions:
  - {{type: Ready, status: "False", reason: Initializing, message: "RayService is initializing", lastTransitionTime: "2026-11-25T20:40:01Z"}}
  - {{type: UpgradeInProgress, status: "False", reason: NoActiveCluster, message: "", lastTransitionTime: "2026-11-25T20:40:01Z"}}
  pendingServiceStatus: {{rayClusterName: ranker-5fkwm}}
---
apiVersion: ray.io/v1
kind: RayService
metadata: {{name: legacy-echo, namespace: team-c, creationTimestamp: "2026-11-20T08:00:00Z"}}
spec:
  rayClusterConfig:{_HEAD.replace(chr(10) + "  ", chr(10) + "    ")}
status:
  serviceStatus: Running
  activeServiceStatus: {{rayClusterName: legacy-echo-raycluster-q8wz2}}
"""


def _objects() -> list[dict]:
    return [copy.deepcopy(o) for o in yaml.safe_load_all(FIXTURES)]


def _strict(schema: object) -> object:
    """The schema with unknown fields refused where the API server would prune them (structural schemas)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: _strict(v) if k in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not") else v
        for k, v in schema.items()
    }
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crds() -> list[dict]:
    if not list(CRD_DIR.glob("*.yaml")):
        pytest.fail(f"KubeRay's CRDs are missing at {CRD_DIR}: the repository expects ../shared/ beside it")
    return load_crds(CRD_DIR)


@pytest.fixture
def kube(crds):
    with KubeAPI(crds, _objects(), forbidden_namespaces={"secret-team"}) as api:
        yield api


def _publish(store: LocalStore, namespace: str, cluster: str, session: str, status: str, start_ms: int) -> str:
    m = SessionManifest(
        namespace=namespace,
        cluster=cluster,
        session_name=session,
        status=status,
        start_ms=start_ms,
        last_seen_ms=int(time.time() * 1000),
        end_ms=start_ms + 1000 if status == ENDED else None,
    )
    store.put(m.ref.index_key, m.to_json())
    store.put(m.ref.manifest_key, m.to_json())
    return m.ref.id


def _client(tmp_path: Path, live: LiveClusters | None) -> TestClient:
    """The app exactly as `rayhistory server` builds it (historyserver.cli.serve calls create_app)."""
    archive = tmp_path / "archive"
    archive.mkdir(exist_ok=True)
    app = create_app(
        ServerSettings(archive=str(archive), cache_dir=str(tmp_path / "cache"), catalog_ttl=0), LocalStore(archive)
    )
    if live is not None:
        app.state.services.live = live
    return TestClient(app)


def _live(tmp_path: Path, kube: KubeAPI, **settings) -> LiveClusters:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", token=settings.pop("token", None))
    return LiveClusters(
        LiveSettings(
            mode="kubeconfig",
            kubeconfig=str(kubeconfig),
            ttl=settings.pop("ttl", 0),
            connect_timeout=2,
            read_timeout=5,
            **settings,
        )
    )


def test_fixtures_are_valid_kuberay_objects(crds):
    schemas = {
        c["spec"]["names"]["kind"]: next(v for v in c["spec"]["versions"] if v["name"] == "v1")["schema"][
            "openAPIV3Schema"
        ]
        for c in crds
    }
    validators = {
        k: jsonschema.Draft7Validator(_strict(s), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
        for k, s in schemas.items()
    }
    objects = _objects()
    assert {o["kind"] for o in objects} == {"RayCluster", "RayJob", "RayService"}
    for obj in objects:
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validators[obj["kind"]].iter_errors(obj)
        ]
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: {errors}"
    # The check has teeth: a misspelt status field is refused, as the API server would prune it.
    bad = objects[0]
    bad["status"]["headd"] = bad["status"].pop("head")
    assert any("headd" in e.message for e in validators["RayCluster"].iter_errors(bad))


def test_lists_every_kind_with_its_state_dashboard_and_archived_sessions(tmp_path, kube):
    store = LocalStore(tmp_path / "archive")
    older = _publish(store, "team-a", "raycluster-kuberay", "session_2026-11-24_10-00-00_000001_1", ENDED, 1_000)
    newer = _publish(store, "team-a", "raycluster-kuberay", "session_2026-11-25_20-01-00_000002_1", RUNNING, 2_000)
    failed_job = _publish(store, "team-a", "nightly-eval-r2d2x", "session_2026-11-25_02-00-30_000003_1", ENDED, 900)
    serve = _publish(store, "team-b", "llm-serve-9qz4d", "session_2026-11-25_19-00-30_000004_1", RUNNING, 1_500)
    _publish(store, "team-b", "raycluster-kuberay", "session_2026-11-25_20-01-00_000005_1", ENDED, 3_000)
    live = _live(tmp_path, kube, namespaces=("team-a", "team-b", "team-c"))
    with _client(tmp_path, live) as client:
        body = client.get("/api/v1/live").json()
    assert body["enabled"] is True and body["namespaces"] == ["team-a", "team-b", "team-c"]
    rows = {(r["kind"], r["namespace"], r["name"]): r for r in body["clusters"]}
    assert list(rows) == [
        ("RayCluster", "team-a", "raycluster-kuberay"),
        ("RayCluster", "team-a", "train-mnist-x7k2p"),
        ("RayCluster", "team-b", "llm-serve-9qz4d"),
        ("RayCluster", "team-c", "dev-sandbox"),
        ("RayJob", "team-a", "nightly-eval"),
        ("RayJob", "team-a", "train-mnist"),
        ("RayService", "team-b", "llm-serve"),
        ("RayService", "team-b", "ranker"),
        ("RayService", "team-c", "legacy-echo"),
    ]
    kuberay = rows["RayCluster", "team-a", "raycluster-kuberay"]
    assert kuberay["state"] == "ready" and kuberay["ray_cluster"] == "raycluster-kuberay"
    with _client(tmp_path, live) as client:
        page = client.get("/").text  # one table: live clusters first, then the archived sessions
    # The live dashboard is linked through this server, never by the in-cluster name a browser cannot resolve.
    assert page.index('href="/clusters/team-a/raycluster-kuberay/live/"') < page.index(f'href="/sessions/{older}/"')
    assert "llm-serve-9qz4d" in page and kuberay["dashboard_url"] not in page
    assert kuberay["created"] == 1_795_636_800_000  # 2026-11-25T20:00:00Z
    # The dashboard port is the one the head service publishes, not Ray's default.
    assert kuberay["dashboard_url"] == "http://raycluster-kuberay-head-svc.team-a.svc:8266"
    assert [s["id"] for s in kuberay["sessions"]] == [newer, older]  # not team-b's cluster of the same name
    assert kuberay["sessions"][0]["url"] == f"http://testserver/sessions/{newer}/"
    sandbox = rows["RayCluster", "team-c", "dev-sandbox"]  # a newer KubeRay: conditions, no state
    assert (sandbox["state"], sandbox["dashboard_url"], sandbox["sessions"]) == ("pending", None, [])
    assert "Head Pod not found" in sandbox["message"]

    train = rows["RayJob", "team-a", "train-mnist"]
    assert (train["state"], train["ray_cluster"]) == ("Running/RUNNING", "train-mnist-x7k2p")
    assert train["dashboard_url"] == "http://train-mnist-x7k2p-head-svc.team-a.svc:8265"
    nightly = rows["RayJob", "team-a", "nightly-eval"]
    assert (nightly["state"], nightly["ray_cluster"]) == ("Failed/FAILED", "nightly-eval-r2d2x")
    assert nightly["dashboard_url"] is None  # its RayCluster was deleted when the job ended: only the archive has it
    assert [s["id"] for s in nightly["sessions"]] == [failed_job] and "bad shard" in nightly["message"]

    llm = rows["RayService", "team-b", "llm-serve"]
    assert (llm["state"], llm["ray_cluster"], llm["pending_ray_cluster"]) == ("Ready", "llm-serve-9qz4d", None)
    assert llm["dashboard_url"] == "http://llm-serve-9qz4d-head-svc.team-b.svc:8265"
    assert [s["id"] for s in llm["sessions"]] == [serve]
    ranker = rows["RayService", "team-b", "ranker"]
    assert (ranker["state"], ranker["ray_cluster"], ranker["dashboard_url"]) == ("NotReady", "ranker-5fkwm", None)
    assert ranker["message"] == "RayService is initializing"
    legacy = rows["RayService", "team-c", "legacy-echo"]  # an older KubeRay: serviceStatus, no conditions
    assert (legacy["state"], legacy["ray_cluster"]) == ("Running", "legacy-echo-raycluster-q8wz2")
    assert all(path.startswith("/apis/ray.io/v1/namespaces/team-") for _, path in kube.requests)


def test_a_namespace_restriction_lists_only_that_namespace(tmp_path, kube):
    live = LiveClusters.from_env(
        {
            "RAYHISTORY_KUBERNETES": f"kubeconfig:{kube.write_kubeconfig(tmp_path / 'kc')}",
            "RAYHISTORY_KUBERNETES_NAMESPACE": "team-b",
        },
        ttl=0,
    )
    rows = live.list()
    assert {(r.kind, r.namespace, r.name) for r in rows} == {
        ("RayCluster", "team-b", "llm-serve-9qz4d"),
        ("RayService", "team-b", "llm-serve"),
        ("RayService", "team-b", "ranker"),
    }
    assert sorted(p for _, p in kube.requests) == [
        f"/apis/ray.io/v1/namespaces/team-b/{plural}" for plural in ("rayclusters", "rayjobs", "rayservices")
    ]


def test_a_forbidden_namespace_is_a_503_that_names_rbac_and_the_sessions_api_keeps_working(tmp_path, kube):
    for namespaces, where in ((("team-a", "secret-team"), "in namespace secret-team"), ((), "in all namespaces")):
        with _client(tmp_path, _live(tmp_path, kube, namespaces=namespaces)) as client:
            response = client.get("/api/v1/live")
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "KubernetesUnavailable"
            message = error["message"]
            assert "403 Forbidden" in message and where in message and "RBAC" in message
            for needed in ("list and watch", "rayclusters", "rayjobs", "rayservices", "ray.io"):
                assert needed in message
            assert client.get("/api/v1/sessions").status_code == 200
            page = client.get("/")
            assert page.status_code == 200 and "RBAC" in page.text and '<table id="sessions">' in page.text


def test_a_wrong_token_is_a_503_naming_the_credentials(tmp_path, kube):
    with _client(tmp_path, _live(tmp_path, kube, token="not-the-token")) as client:
        response = client.get("/api/v1/live")
    assert response.status_code == 503
    assert "401 Unauthorized" in response.json()["error"]["message"]
    assert "credentials" in response.json()["error"]["message"]


@pytest.mark.parametrize("hung", [False, True], ids=["refused", "hung"])
def test_an_unreachable_api_server_is_a_503_within_the_timeouts(tmp_path, kube, hung):
    with silent_listener() as silent_port:
        port = silent_port if hung else closed_port()
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", server=f"https://127.0.0.1:{port}")
        live = LiveClusters(
            LiveSettings(mode="kubeconfig", kubeconfig=str(kubeconfig), ttl=60, connect_timeout=0.5, read_timeout=0.5)
        )
        with _client(tmp_path, live) as client:
            started = time.monotonic()
            response = client.get("/api/v1/live")
            elapsed = time.monotonic() - started
            assert response.status_code == 503 and elapsed < 3, (response.text, elapsed)
            assert f"cannot reach the Kubernetes API server at https://127.0.0.1:{port}" in response.text
            # The failure is reused for the ttl: the next page load does not wait again.
            started = time.monotonic()
            assert client.get("/api/v1/live").status_code == 503 and time.monotonic() - started < 0.2


def test_listings_are_reused_for_the_ttl(tmp_path, kube):
    live = _live(tmp_path, kube, namespaces=("team-a",), ttl=60)
    first = [r.name for r in live.list()]
    assert "nightly-eval" in first and len(kube.requests) == 3
    kube.objects = [o for o in kube.objects if o["metadata"]["name"] != "nightly-eval"]
    assert [r.name for r in live.list()] == first and len(kube.requests) == 3
    fresh = _live(tmp_path, kube, namespaces=("team-a",), ttl=0)
    assert [r.name for r in fresh.list()] == [n for n in first if n != "nightly-eval"]


def test_in_cluster_mode_uses_the_pods_service_account(tmp_path, kube, monkeypatch):
    for key, value in kube.write_service_account(tmp_path / "serviceaccount").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RAYHISTORY_KUBERNETES", raising=False)
    settings = LiveSettings.from_env(service_account_dir=str(tmp_path / "serviceaccount"), ttl=0)
    assert settings.mode == "in-cluster"  # the default inside a pod
    in_team_c = replace(settings, namespaces=("team-c",))
    rows = LiveClusters(in_team_c).list()
    assert {(r.kind, r.name, r.state) for r in rows} == {
        ("RayCluster", "dev-sandbox", "pending"),
        ("RayService", "legacy-echo", "Running"),
    }
    # A CA that did not sign the server's certificate is refused, with what to check.
    with KubeAPI([]) as other:
        (tmp_path / "serviceaccount" / "ca.crt").write_bytes(other.ca_pem)
    with pytest.raises(KubernetesUnavailable, match="certificate authority"):
        LiveClusters(in_team_c).list()


def test_mode_off_is_disabled_and_the_app_builds_it_from_its_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with _client(tmp_path, None) as client:
        assert client.get("/api/v1/live").json() == {"enabled": False, "namespaces": None, "clusters": []}
        assert client.app.state.services.live.settings.mode == "off"
    # A value it cannot use is refused when the settings are read (rayhistory serve exits 2 with this).
    with pytest.raises(SettingsError, match="--kubernetes: 'kubernetes-please' is not one of off, in-cluster"):
        ServerSettings(archive=str(tmp_path), kubernetes="kubernetes-please")
    with pytest.raises(SettingsError, match=r"\$RAYHISTORY_KUBERNETES|--kubernetes"):
        ServerSettings.load({"archive": str(tmp_path)}, {"RAYHISTORY_KUBERNETES": "kubernetes-please"})


def test_settings_from_the_environment(tmp_path, kube):
    settings = LiveSettings.from_env(
        {
            "RAYHISTORY_KUBERNETES": "kubeconfig:/etc/kube/config",
            "RAYHISTORY_KUBERNETES_NAMESPACE": " a, b ,",
            "RAYHISTORY_DASHBOARD_URL_TEMPLATE": "https://ray.example.com/{namespace}/{cluster}/",
        }
    )
    assert (settings.mode, settings.kubeconfig, settings.namespaces) == ("kubeconfig", "/etc/kube/config", ("a", "b"))
    assert LiveSettings.from_env({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}).mode == "in-cluster"
    assert LiveSettings.from_env({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "RAYHISTORY_KUBERNETES": "off"}).mode == "off"
    with pytest.raises(SettingsError, match="in-cluster:x"):  # refused when read, as every setting
        LiveSettings.from_env({"RAYHISTORY_KUBERNETES": "in-cluster:x"})
    live = _live(tmp_path, kube, namespaces=("team-a",), dashboard_url_template=settings.dashboard_url_template)
    urls = {r.name: r.dashboard_url for r in live.list()}
    assert urls["raycluster-kuberay"] == "https://ray.example.com/team-a/raycluster-kuberay/"
    assert urls["train-mnist"] == "https://ray.example.com/team-a/train-mnist-x7k2p/"
    missing = LiveClusters(LiveSettings(mode="kubeconfig", kubeconfig=str(tmp_path / "no-such-kubeconfig")))
    with pytest.raises(KubernetesUnavailable, match="no-such-kubeconfig"):
        missing.list()


def test_discovery_answers_the_clients_dynamic_discovery(tmp_path, kube):
    from kubernetes import config, dynamic

    api_client = config.new_client_from_config(str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    client = dynamic.DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    clusters = client.resources.get(api_version="ray.io/v1", kind="RayCluster")
    listing = clusters.get(namespace="team-a")
    assert listing.kind == "RayClusterList" and listing.metadata.resourceVersion == str(kube.resource_version)
    assert [i.metadata.name for i in listing.items] == ["raycluster-kuberay", "train-mnist-x7k2p"]
    assert clusters.get(namespace="team-a", name="train-mnist-x7k2p").status.head.serviceName == (
        "train-mnist-x7k2p-head-svc"
    )
    assert client.version["kubernetes"]["gitVersion"].startswith("v1.")
