"""Authorization by namespace, across every route family: two users, two namespaces; each sees its own sessions,
series and live clusters and nothing of the other's (another namespace's session is a 404 indistinguishable from
an unknown one). Run under --authz file and under --authz kubernetes (SubjectAccessReviews answered by
tests/servers/kube_api.py, through the real kubernetes client)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from archive.storage.local import LocalStore
from historyserver.app import create_app
from historyserver.live.kube import LiveClusters, LiveSettings
from historyserver.routes.ray_ui import build_dir
from historyserver.settings import ServerSettings
from tests.metrics_archive import FakeSession, write_session
from tests.servers.kube_api import AccessRule, KubeAPI, load_crds
from tests.test_live_kubernetes import CRD_DIR, _objects

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HALF_HOUR = 1_800_000
AT = str((T0 + 600_000) / 1000)  # a time inside both sessions
# Named after live RayClusters of the kube test server's fixtures, so the live list links them.
A = FakeSession("team-a", "raycluster-kuberay", "session_2026-01-01_00-00-00_000001_1", T0, T0 + HALF_HOUR)
B = FakeSession(
    "team-b",
    "llm-serve-9qz4d",
    "session_2026-01-01_00-00-00_000002_1",
    T0,
    T0 + HALF_HOUR,
    instance="10.0.0.9:8080",
    node_id="b" * 56,
    cpu=50,
)
UNKNOWN = FakeSession("team-a", "raycluster-kuberay", "session_2026-01-01_00-00-00_000009_1", T0, T0 + 1)


@dataclass(frozen=True)
class User:
    name: str
    token: str
    groups: tuple[str, ...]
    own: FakeSession
    other: FakeSession

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


ALICE = User("alice", "alice-5d0e8c1f9b2a7e34", ("team-a-devs",), A, B)  # allowed by user name
BOB = User("bob", "bob-2b9f6a0c4e8d1f73", ("team-b-devs", "viewers"), B, A)  # allowed through a group
USERS = {u.name: u for u in (ALICE, BOB)}
TOKENS = "".join(f'{u.token},{u.name},{1000 + i},"{",".join(u.groups)}"\n' for i, u in enumerate(USERS.values()))
AUTHZ_FILE = "users:\n  alice: [team-a]\ngroups:\n  team-b-devs: [team-b]\n  team-c-devs: [team-c]\n"
RULES = [
    AccessRule("User", "alice", "team-a"),
    AccessRule("Group", "team-b-devs", "team-b"),
    AccessRule("Group", "team-c-devs", "team-c"),
]


@pytest.fixture(scope="module")
def kube():
    with KubeAPI(load_crds(CRD_DIR), _objects(), access_rules=list(RULES)) as api:
        yield api


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("matrix-archive")
    for s in (A, B):
        write_session(LocalStore(root), s)
    return root


@pytest.fixture(scope="module", params=["file", "kubernetes"])
def app(request, archive, kube, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"matrix-{request.param}")
    (work / "tokens.csv").write_text(TOKENS)
    (work / "authz.yaml").write_text(AUTHZ_FILE)
    kubeconfig = kube.write_kubeconfig(work / "kubeconfig")
    settings = ServerSettings(
        archive=str(archive),
        cache_dir=str(tmp_path_factory.getbasetemp() / "matrix-cache"),
        catalog_ttl=0,
        compact_on_end=False,
        auth="token",
        auth_token_file=str(work / "tokens.csv"),
        authz=request.param,
        authz_file=str(work / "authz.yaml") if request.param == "file" else "",
        kubernetes=f"kubeconfig:{kubeconfig}",
    )
    application = create_app(settings, LocalStore(archive))
    application.state.live = LiveClusters(LiveSettings(mode="kubeconfig", kubeconfig=str(kubeconfig), ttl=0))
    return application


@pytest.fixture(params=sorted(USERS))
def user(request) -> User:
    return USERS[request.param]


@pytest.fixture
def client(app, user):
    with TestClient(app, headers=user.auth) as c:
        yield c


class Spy:
    """The sessions whose tables the warehouse opens."""

    def __init__(self, app) -> None:
        self.opened: list[str] = []
        warehouse = app.state.services.warehouse
        self._real = real = warehouse.db
        self._warehouse = warehouse

        def db(entry, *args, **kwargs):
            self.opened.append(entry.ref.id)
            return real(entry, *args, **kwargs)

        warehouse.db = db

    def stop(self) -> None:
        self._warehouse.db = self._real


def ok(response) -> object:
    assert response.status_code == 200, (response.request.url, response.text[:300])
    return response.json()


def prom(response) -> object:
    body = ok(response)
    assert body["status"] == "success"
    return body["data"]


# -- the session list and our API --------------------------------------------------------------------------------


def test_the_session_list_holds_only_the_users_namespace(client, user):
    body = ok(client.get("/api/v1/sessions"))
    assert [s["id"] for s in body["sessions"]] == [user.own.id] and body["total"] == 1
    assert ok(client.get(f"/api/v1/sessions?namespace={user.other.namespace}"))["total"] == 0
    assert ok(client.get(f"/api/v1/sessions/{user.own.id}"))["namespace"] == user.own.namespace
    for suffix in ("", "/overview", "/timeline", "/dashboards"):
        ok(client.get(f"/api/v1/sessions/{user.own.id}{suffix}"))


def _routes(routes):
    for route in routes:  # FastAPI keeps an included router's routes on it
        if hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes)
        else:
            yield route


def _concrete(app, session_id: str) -> list[tuple[str, str]]:
    """(route template, a URL of it for the session) for every GET route under a session."""
    found = []
    for route in _routes(app.routes):
        path = getattr(route, "path", "")
        if "{session_id}" not in path or "GET" not in (getattr(route, "methods", None) or {"GET"}):
            continue
        url = path.replace("{session_id}", session_id)
        url = re.sub(r"\{[^}]+:path\}", "static/x.js", url)
        found.append((path, re.sub(r"\{[^}]+\}", "x", url)))
    return found


def test_every_route_under_another_namespaces_session_is_the_404_of_an_unknown_session(app, client, user):
    routes = _concrete(app, user.other.id)
    assert len(routes) >= 40, "every Ray API, Ray UI, PromQL, Grafana, page and /api/v1 route under a session"
    families = {"ray": 0, "prometheus": 0, "ours": 0}
    for template, url in routes:
        other = client.get(url)
        unknown = client.get(url.replace(user.other.id, UNKNOWN.id))
        assert other.status_code == 404, (template, other.status_code, other.text[:200])
        # Same status, same body but for the id: nothing tells an invisible session from a missing one.
        assert (other.status_code, other.text.replace(user.other.id, "ID")) == (
            unknown.status_code,
            unknown.text.replace(UNKNOWN.id, "ID"),
        ), template
        assert user.other.id not in other.text.replace(url, "") or "no session" in other.text
        body = other.json()
        if "/prometheus/api/v1" in template:
            families["prometheus"] += 1
            assert body["status"] == "error" and body["errorType"] == "not_found", template
        elif template.startswith("/sessions/"):
            families["ray"] += 1
            assert body["result"] is False and body["data"] is None, template
        else:
            families["ours"] += 1
            assert body["error"]["code"] == "SessionNotFound", template
    assert all(families.values()), families


def test_the_users_own_session_answers_on_every_family(client, user):
    sid = user.own.id
    assert client.get(f"/sessions/{sid}/", headers={"Accept": "text/html"}).text.startswith("<!doctype html>")
    js = next(p for p in (build_dir() / "static" / "js").iterdir() if p.suffix == ".js")
    assert client.get(f"/sessions/{sid}/static/js/{js.name}").status_code == 200
    assert client.get(f"/sessions/{user.other.id}/static/js/{js.name}").status_code == 404
    assert ok(client.get(f"/sessions/{sid}/api/jobs/")) == []
    assert ok(client.get(f"/sessions/{sid}/api/v0/tasks"))["result"] is True
    assert ok(client.get(f"/sessions/{sid}/nodes?view=summary"))["result"] is True
    assert ok(client.get(f"/sessions/{sid}/api/version"))["session_name"] == user.own.name
    for page in ("overview", "timeline"):
        r = client.get(f"/sessions/{sid}/{page}")
        assert r.status_code == 200 and user.own.name in r.text, page
    assert "dashboards" in ok(client.get(f"/api/v1/sessions/{sid}/dashboards"))
    data = prom(
        client.get(f"/sessions/{sid}/prometheus/api/v1/query", params={"query": "ray_node_cpu_utilization", "time": AT})
    )
    assert [s["metric"]["SessionName"] for s in data["result"]] == [user.own.name]


# -- PromQL --------------------------------------------------------------------------------------------------------


def test_the_whole_archive_scope_never_loads_another_namespaces_series(app, client, user):
    spy = Spy(app)
    try:
        api = "/prometheus/api/v1"
        data = prom(client.get(f"{api}/query", params={"query": "ray_node_cpu_utilization", "time": AT}))
        assert {s["metric"]["SessionName"] for s in data["result"]} == {user.own.name}
        data = prom(
            client.get(f"{api}/query", params={"query": f'up{{ray_io_cluster="{user.other.cluster}"}}', "time": AT})
        )
        assert data["result"] == []  # asked for by name: still nothing
        data = prom(
            client.get(
                f"{api}/query_range",
                params={
                    "query": "count by (namespace) (rayhistory_session_up)",
                    "start": str(T0 / 1000),
                    "end": AT,
                    "step": "60",
                },
            )
        )
        assert {s["metric"]["namespace"] for s in data["result"]} == {user.own.namespace}
        assert "SessionName" in prom(client.get(f"{api}/labels"))
        assert prom(client.get(f"{api}/label/SessionName/values")) == [user.own.name]
        assert prom(client.get(f"{api}/label/ray_io_cluster/values")) == [user.own.cluster]
        assert prom(client.get(f"{api}/label/namespace/values")) == [user.own.namespace]
        assert prom(client.get(f"{api}/label/instance/values")) == [user.own.instance]
        series = prom(client.get(f"{api}/series", params={"match[]": '{__name__=~".+"}'}))
        assert series and {s.get("ray_io_cluster") for s in series} == {user.own.cluster}
        assert {s.get("SessionName") for s in series} <= {user.own.name, None}
        assert prom(client.post(f"{api}/labels", data={"match[]": f'{{SessionName="{user.other.name}"}}'})) == []
        assert user.own.id in spy.opened and user.other.id not in spy.opened
    finally:
        spy.stop()


def test_the_cluster_scope_is_404_for_another_namespaces_cluster(client, user):
    own = f"/clusters/{user.own.namespace}/{user.own.cluster}/prometheus/api/v1"
    data = prom(client.get(f"{own}/query", params={"query": "ray_node_cpu_utilization", "time": AT}))
    assert {s["metric"]["SessionName"] for s in data["result"]} == {user.own.name}
    for path in ("query?query=up", "labels", "label/SessionName/values", "series?match[]=up"):
        other = client.get(f"/clusters/{user.other.namespace}/{user.other.cluster}/prometheus/api/v1/{path}")
        unknown = client.get(f"/clusters/{user.other.namespace}/no-such-cluster/prometheus/api/v1/{path}")
        assert other.status_code == unknown.status_code == 404 and other.json()["errorType"] == "not_found", path
        assert other.json()["error"].replace(user.other.cluster, "C") == unknown.json()["error"].replace(
            "no-such-cluster", "C"
        )


# -- the live list and our pages -----------------------------------------------------------------------------------


def test_the_live_list_shows_only_the_users_namespace(client, user):
    body = ok(client.get("/api/v1/live"))
    assert body["enabled"] is True and body["clusters"]
    assert {r["namespace"] for r in body["clusters"]} == {user.own.namespace}  # not the other's, nor team-c's
    linked = {s["id"] for r in body["clusters"] for s in r["sessions"]}
    assert linked == {user.own.id}
    page = client.get("/")
    assert page.status_code == 200 and user.own.name in page.text and user.own.cluster in page.text
    assert user.other.name not in page.text and user.other.cluster not in page.text
    assert "dev-sandbox" not in page.text  # team-c's live cluster


def test_cluster_pages_the_merged_list_and_the_live_dashboard_follow_the_users_namespaces(client, user):
    own = ok(client.get(f"/api/v1/clusters/{user.own.namespace}/{user.own.cluster}"))
    assert own["live"]["state"] == "ready" and [s["id"] for s in own["sessions"]] == [user.own.id]
    assert client.get(f"/clusters/{user.own.namespace}/{user.own.cluster}").status_code == 200
    for path in ("/api/v1/clusters/{ns}/{c}", "/clusters/{ns}/{c}", "/clusters/{ns}/{c}/live/api/jobs/"):
        other = client.get(path.format(ns=user.other.namespace, c=user.other.cluster), follow_redirects=False)
        unknown = client.get(path.format(ns=user.other.namespace, c="no-such-cluster"), follow_redirects=False)
        assert other.status_code == unknown.status_code == 404, path  # not a redirect to the other's session
        assert other.json()["error"]["message"].replace(user.other.cluster, "C") == unknown.json()["error"][
            "message"
        ].replace("no-such-cluster", "C")
    rows = ok(client.get("/api/v1/clusters", params={"limit": 1000}))["rows"]
    assert rows and {r["namespace"] for r in rows} == {user.own.namespace}


def test_a_user_without_namespaces_sees_an_empty_archive(app):
    with TestClient(app) as c:
        token = "carol-7e1d3b5a9c0f2e46"
        tokens = c.app.state.services.access.tokens
        from historyserver.access.tokens import TokenTable

        c.app.state.services.access.tokens = TokenTable.parse(f"{token},carol,1003\n")
        try:
            headers = {"Authorization": f"Bearer {token}"}
            assert ok(c.get("/api/v1/sessions", headers=headers))["total"] == 0
            assert prom(c.get("/prometheus/api/v1/label/SessionName/values", headers=headers)) == []
            assert ok(c.get("/api/v1/live", headers=headers))["clusters"] == []
            assert c.get(f"/sessions/{A.id}/api/jobs/", headers=headers).status_code == 404
        finally:
            c.app.state.services.access.tokens = tokens


# -- the kubernetes authorizer -------------------------------------------------------------------------------------


def test_reviews_are_what_kube_apiserver_expects_and_are_reused_for_the_ttl(kube, tmp_path):
    from historyserver.access.policies import KubernetesAuthz
    from historyserver.access.principal import Principal

    now = [0.0]
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    authz = KubernetesAuthz(LiveSettings(mode="kubeconfig", kubeconfig=str(kubeconfig)), ttl=30, clock=lambda: now[0])
    kube.reviews.clear()
    bob = Principal("bob", ("team-b-devs", "viewers"))
    assert authz(bob, "team-b") is True and authz(bob, "team-a") is False
    assert authz(Principal("carol"), "team-a") is False

    def review(user, namespace, groups=None):
        spec = {
            "user": user,
            "resourceAttributes": {"group": "ray.io", "namespace": namespace, "resource": "rayclusters", "verb": "get"},
        }
        if groups:
            spec["groups"] = groups
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}

    assert kube.reviews == [
        review("bob", "team-b", ["team-b-devs", "viewers"]),
        review("bob", "team-a", ["team-b-devs", "viewers"]),
        review("carol", "team-a"),
    ]
    # Reused within the ttl, whatever the order of the groups; asked again after it.
    assert authz(Principal("bob", ("viewers", "team-b-devs")), "team-b") is True and len(kube.reviews) == 3
    now[0] = 31
    assert authz(bob, "team-b") is True and len(kube.reviews) == 4


def test_an_explicit_denial_wins_over_a_grant(kube, tmp_path):
    from historyserver.access.policies import KubernetesAuthz
    from historyserver.access.principal import Principal

    kube.access_rules.append(AccessRule("User", "mallory", "team-b", allow=False))
    try:
        authz = KubernetesAuthz(
            LiveSettings(mode="kubeconfig", kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig"))), ttl=0
        )
        assert authz(Principal("mallory", ("team-b-devs",)), "team-b") is False
        assert authz(Principal("mallory", ("team-c-devs",)), "team-c") is True
    finally:
        kube.access_rules.remove(AccessRule("User", "mallory", "team-b", allow=False))


def test_without_rbac_to_review_every_request_is_a_503_naming_the_role_not_an_open_door(
    archive, kube, tmp_path, monkeypatch
):
    (tmp_path / "tokens.csv").write_text(TOKENS)
    settings = ServerSettings(
        archive=str(archive),
        cache_dir=str(tmp_path / "cache"),
        catalog_ttl=0,
        compact_on_end=False,
        auth="token",
        auth_token_file=str(tmp_path / "tokens.csv"),
        authz="kubernetes",
        kubernetes=f"kubeconfig:{kube.write_kubeconfig(tmp_path / 'kubeconfig')}",
    )
    kube.may_review = False
    try:
        with TestClient(create_app(settings, LocalStore(archive)), headers=ALICE.auth) as c:
            r = c.get("/api/v1/sessions")
            assert r.status_code == 503 and r.json()["error"]["code"] == "KubernetesUnavailable"
            message = r.json()["error"]["message"]
            assert "refused to create subjectaccessreviews.authorization.k8s.io (403 Forbidden" in message
            assert "ClusterRole allowing create on subjectaccessreviews" in message
            r = c.get(f"/sessions/{A.id}/api/jobs/")
            assert r.status_code == 503 and r.json()["result"] is False
            r = c.get("/prometheus/api/v1/label/SessionName/values")
            assert r.status_code == 503 and r.json()["errorType"] == "unavailable"
    finally:
        kube.may_review = True


def test_routes_read_sessions_only_through_the_requests_view():
    """By construction: the one place that turns the app's catalog into what a request may see is routes/deps.py."""
    routes = Path(__file__).resolve().parents[1] / "historyserver" / "routes"
    readers = sorted(
        p.name for p in routes.glob("*.py") if ").catalog" in p.read_text() or "state.catalog" in p.read_text()
    )
    assert readers == ["access.py", "deps.py"]  # access.py: /readyz lists the archive, and shows no session
