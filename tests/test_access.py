"""Authentication: the startup rule, token mode (bearer and the login cookie), proxy mode (headers believed only
from trusted peers), 401s in each API family's shape, and the open /healthz, /readyz and /metrics."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from archive.storage.local import LocalStore
from historyserver.access import config as access_config
from historyserver.access.principal import AccessConfigError
from historyserver.access.tokens import CookieSigner, TokenTable
from historyserver.app import create_app
from historyserver.settings import ServerSettings
from rayhistory.cli import main
from tests.metrics_archive import FakeSession, write_session

T0 = 1_767_225_600_000
SESSION = FakeSession("team-a", "alpha", "session_2026-01-01_00-00-00_000001_1", T0, T0 + 600_000)
ALICE, BOB = "alice-0f3c9e7d1b5a4e2c", "bob-8a6d4f2e0c1b3a5d"
TOKENS = f'{ALICE},alice,1001,"team-a-devs"\n\n{BOB},bob,1002,"team-b-devs, viewers"\n'


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("access-archive")
    write_session(LocalStore(root), SESSION)
    return root


def _client(
    archive: Path, tmp_path: Path, client=("testclient", 50000), base_url="http://testserver", **settings
) -> TestClient:
    s = ServerSettings(
        archive=str(archive), cache_dir=str(tmp_path / "cache"), catalog_ttl=0, compact_on_end=False, **settings
    )
    return TestClient(create_app(s, LocalStore(archive)), client=client, base_url=base_url, follow_redirects=False)


@pytest.fixture
def token_file(tmp_path) -> Path:
    path = tmp_path / "tokens.csv"
    path.write_text(TOKENS)
    return path


def _serve(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main(["serve", *args])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


# -- the startup rule and bad settings ---------------------------------------------------------------------------


def test_a_reachable_address_without_auth_refuses_to_start_and_says_why(archive, capsys):
    code, err = _serve(capsys, "--archive", str(archive), "--host", "0.0.0.0")
    assert code == 2
    assert "--host 0.0.0.0 is reachable from other machines and --auth is none" in err
    for hint in ("--auth token", "--auth proxy", "127.0.0.1", "--insecure-no-auth"):
        assert hint in err
    code, err = _serve(capsys, "--archive", str(archive), "--host", "10.1.2.3", "--auth", "none")
    assert code == 2 and "--insecure-no-auth" in err


def test_the_demo_refuses_a_reachable_address_before_starting_ray(tmp_path, capsys):
    started = time.monotonic()
    assert main(["demo", "--host", "0.0.0.0", "--archive", str(tmp_path / "archive")]) == 2
    err = capsys.readouterr().err
    assert "the demo serves without authentication" in err and "--no-serve" in err
    assert time.monotonic() - started < 5 and not (tmp_path / "archive").exists()  # no Ray, no archive


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "localhost"])
def test_loopback_addresses_default_to_no_auth(archive, host):
    assert access_config.load(ServerSettings(archive=str(archive), host=host)).auth == "none"


def test_insecure_no_auth_is_the_explicit_way_out(archive):
    settings = ServerSettings(archive=str(archive), host="0.0.0.0", insecure_no_auth=True)
    assert access_config.load(settings).auth == "none"
    with pytest.raises(AccessConfigError):
        access_config.load(ServerSettings(archive=str(archive), host="0.0.0.0"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--auth", "token"], "--auth token needs --auth-token-file PATH"),
        (
            ["--auth", "token", "--auth-token-file", "/no/such/tokens.csv"],
            "--auth-token-file /no/such/tokens.csv: cannot read it",
        ),
        (["--auth", "token", "--auth-token-file", "{tokens}", "--auth-cookie-max-age", "5"], "at least 60 seconds"),
        (["--auth-token-file", "{tokens}"], "--auth-token-file is read only with --auth token"),
        (["--auth", "proxy", "--auth-trusted-proxies", "10.0.0.0/8,pod-ip"], "'pod-ip' is not an address or CIDR"),
        (["--auth", "proxy", "--auth-user-header", "X User"], "'X User' is not an HTTP header name"),
        (
            ["--authz", "file", "--authz-file", "{authz}"],
            "--auth none identifies nobody: add --auth token or --auth proxy",
        ),
        (["--auth", "proxy", "--authz", "file"], "--authz file needs --authz-file PATH"),
        (
            ["--auth", "proxy", "--authz", "file", "--authz-file", "/no/such.yaml"],
            "--authz-file /no/such.yaml: cannot read it",
        ),
        (["--auth", "proxy", "--authz", "file", "--authz-file", "{bad_yaml}"], "not valid YAML"),
        (
            ["--auth", "proxy", "--authz", "file", "--authz-file", "{bad_shape}"],
            "users.alice must be a list of namespace names",
        ),
        (["--auth", "proxy", "--authz", "file", "--authz-file", "{unknown_key}"], "unknown key(s) namespaces"),
        (["--auth", "proxy", "--authz", "kubernetes"], "RAYHISTORY_KUBERNETES"),
        (["--auth", "password"], "invalid choice: 'password'"),
    ],
)
def test_bad_access_settings_exit_2_with_a_message(archive, tmp_path, token_file, capsys, monkeypatch, args, expected):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("RAYHISTORY_KUBERNETES", "off")
    files = {
        "tokens": token_file,
        "authz": tmp_path / "authz.yaml",
        "bad_yaml": tmp_path / "bad.yaml",
        "bad_shape": tmp_path / "shape.yaml",
        "unknown_key": tmp_path / "unknown.yaml",
    }
    files["authz"].write_text("users: {alice: [team-a]}\n")
    files["bad_yaml"].write_text("users: {alice: [team-a\n")
    files["bad_shape"].write_text("users: {alice: team-a}\n")
    files["unknown_key"].write_text("namespaces: [team-a]\n")
    code, err = _serve(capsys, "--archive", str(archive), *[a.format(**files) for a in args])
    assert code == 2
    assert expected in err, err


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tok,alice\n", "line 1: 2 columns, at least 3 needed"),
        ("tok,alice,1\n,bob,2\n", "line 2: empty token"),
        ("tok,alice,1\ntok,bob,2\n", "line 2: this token is already given to user 'alice'"),
        ('tok,alice,1,"a,b\n', "line 1: not a CSV record"),
        ("\n\n", "no tokens in it"),
    ],
)
def test_token_file_lines_are_checked_with_their_line_number(tmp_path, text, expected, capsys, archive):
    path = tmp_path / "tokens.csv"
    path.write_text(text)
    code, err = _serve(capsys, "--archive", str(archive), "--auth", "token", "--auth-token-file", str(path))
    assert code == 2 and f"--auth-token-file {path}" in err and expected in err, err
    assert "already given" in expected or "kube-apiserver's --token-auth-file" in err  # the format, when wrong


def test_the_token_file_is_kubernetes_static_token_format():
    table = TokenTable.parse(TOKENS)
    assert len(table) == 2
    bob = table.authenticate(BOB)
    assert (bob.user, bob.groups) == ("bob", ("team-b-devs", "viewers"))
    assert table.authenticate("alice-0f3c9e7d1b5a4e2") is None and table.authenticate(ALICE + "x") is None
    assert TokenTable.parse("t,carol,3\n").authenticate("t").groups == ()


# -- token mode --------------------------------------------------------------------------------------------------


def test_token_mode_401s_in_each_api_familys_shape(archive, tmp_path, token_file):
    with _client(archive, tmp_path, auth="token", auth_token_file=str(token_file)) as c:
        r = c.get("/api/v1/sessions")
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="rayhistory"'
        assert r.json() == {"error": {"code": "Unauthenticated", "message": r.json()["error"]["message"]}}
        assert "Authorization: Bearer <token>" in r.json()["error"]["message"]
        r = c.get(f"/sessions/{SESSION.id}/api/jobs/")
        assert r.status_code == 401 and r.json()["result"] is False and r.json()["data"] is None
        assert set(r.json()) == {"result", "msg", "data"}
        for path in (
            "/prometheus/api/v1/labels",
            f"/sessions/{SESSION.id}/prometheus/api/v1/query?query=up",
            "/clusters/team-a/alpha/prometheus/api/v1/series",
        ):
            r = c.get(path)
            assert r.status_code == 401 and r.json() == {
                "status": "error",
                "errorType": "unauthorized",
                "error": r.json()["error"],
            }, path
        # A browser asking for Ray's UI or our pages goes to the login form; an API call from it stays JSON.
        r = c.get(f"/sessions/{SESSION.id}/?x=1", headers={"Accept": "text/html,application/xhtml+xml"})
        assert r.status_code == 303 and r.headers["location"] == f"/login?next=/sessions/{SESSION.id}/%3Fx%3D1"
        r = c.get(f"/sessions/{SESSION.id}/api/jobs/", headers={"Accept": "application/json, text/plain, */*"})
        assert r.status_code == 401
        # Wrong credentials say what is wrong.
        r = c.get("/api/v1/sessions", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and "not one this server knows" in r.text
        r = c.get("/api/v1/sessions", headers={"Authorization": f"Basic {ALICE}"})
        assert r.status_code == 401 and "'Bearer <token>'" in r.text
        r = c.get("/api/v1/sessions", headers={"Authorization": f"bearer {ALICE}"})  # the scheme is case-blind
        assert r.status_code == 200 and [s["id"] for s in r.json()["sessions"]] == [SESSION.id]


def test_the_login_form_sets_a_strict_httponly_cookie_and_logout_clears_it(archive, tmp_path, token_file):
    with _client(archive, tmp_path, auth="token", auth_token_file=str(token_file)) as c:
        form = c.get(f"/login?next=/sessions/{SESSION.id}/&checked=1")
        assert form.status_code == 200 and 'type="password" name="token"' in form.text
        assert 'http-equiv="refresh"' not in form.text
        assert f'name="next" value="/sessions/{SESSION.id}/"' in form.text
        wrong = c.post("/login", data={"token": "guess", "next": "/"})
        assert wrong.status_code == 401 and "That token is not valid." in wrong.text
        assert "set-cookie" not in wrong.headers
        ok = c.post("/login", data={"token": ALICE, "next": f"/sessions/{SESSION.id}/"})
        assert ok.status_code == 303 and ok.headers["location"] == f"/sessions/{SESSION.id}/"
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith("rayhistory_auth=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Max-Age=43200" in cookie and "Secure" not in cookie  # plain http here
        assert ALICE not in cookie  # the token itself never leaves in a cookie
        assert c.get(f"/sessions/{SESSION.id}/api/jobs/").status_code == 200  # Ray's UI, with the cookie alone
        # Logged in, the login page goes straight on to where the user was going.
        again = c.get("/login?next=/sessions/x/overview&checked=1")
        assert again.status_code == 303 and again.headers["location"] == "/sessions/x/overview"
        assert c.get(f"/sessions/{SESSION.id}/overview").status_code == 200
        assert c.get("/api/v1/sessions").json()["total"] == 1
        out = c.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert 'rayhistory_auth=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
        assert c.get("/api/v1/sessions").status_code == 401
        # Only paths of this server are followed after a login.
        for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            r = c.post("/login", data={"token": BOB, "next": target})
            assert r.status_code == 303 and r.headers["location"] == "/", target
    with _client(archive, tmp_path, base_url="https://testserver", auth="token", auth_token_file=str(token_file)) as c:
        assert "Secure" in c.post("/login", data={"token": ALICE}).headers["set-cookie"]
    with _client(archive, tmp_path, auth="token", auth_token_file=str(token_file)) as c:  # TLS ends at a proxy
        login = c.post("/login", data={"token": ALICE}, headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in login.headers["set-cookie"]


def test_the_login_page_reloads_itself_once_so_a_strict_cookie_can_come_along(archive, tmp_path, token_file):
    # A link followed from another site carries no SameSite=Strict cookie: the login page's own reload (same-site)
    # does, and is then sent on; without a login the reload shows the form, and reloads no more.
    with _client(archive, tmp_path, auth="token", auth_token_file=str(token_file)) as c:
        first = c.get("/login?next=/sessions/x/")
        assert first.status_code == 200 and 'type="password"' in first.text
        assert '<meta http-equiv="refresh" content="0;url=/login?next=/sessions/x/&amp;checked=1">' in first.text
        second = c.get("/login?next=/sessions/x/&checked=1")
        assert second.status_code == 200 and "refresh" not in second.text
        c.post("/login", data={"token": ALICE})
        third = c.get("/login?next=/sessions/x/&checked=1")
        assert third.status_code == 303 and third.headers["location"] == "/sessions/x/"


def test_a_forged_or_expired_cookie_is_refused(archive, tmp_path, token_file):
    with _client(archive, tmp_path, auth="token", auth_token_file=str(token_file)) as c:

        def with_cookie(value: str) -> int:
            c.cookies.clear()
            c.cookies.set("rayhistory_auth", value)
            return c.get("/api/v1/sessions").status_code

        c.post("/login", data={"token": ALICE})
        digest, expires, signature = c.cookies["rayhistory_auth"].split(".")
        assert with_cookie(f"{digest}.{int(expires) + 10**6}.{signature}") == 401  # a longer life: unsigned
        assert "log in again" in c.get("/api/v1/sessions").json()["error"]["message"]
        signer = c.app.state.services.access.cookies
        assert with_cookie(signer.issue(ALICE, now=time.time() - signer.max_age - 1)) == 401  # expired
        assert with_cookie(signer.issue(ALICE)) == 200
        # Another server's key (or one from before a restart) does not sign for this one.
        assert with_cookie(CookieSigner(3600).issue(ALICE)) == 401
        # A cookie for a token no longer in the file (valid signature) is refused.
        assert with_cookie(signer.issue("withdrawn")) == 401


def test_health_metrics_and_assets_stay_open(archive, tmp_path, token_file):
    with _client(archive, tmp_path, auth="token", auth_token_file=str(token_file)) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        c.get("/api/v1/sessions")
        c.get("/api/v1/sessions", headers={"Authorization": "Bearer nope"})
        metrics = c.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert 'rayhistory_server_unauthenticated_requests_total{reason="no_credentials"} 1.0' in metrics.text
        assert 'rayhistory_server_unauthenticated_requests_total{reason="unknown_token"} 1.0' in metrics.text
        assert "team-a" not in metrics.text and "alice" not in metrics.text
        assert c.get("/assets/" + next(p.name for p in _static_files())).status_code == 200


def _static_files():
    from historyserver.routes.pages import STATIC_DIR

    return [p for p in STATIC_DIR.iterdir() if p.is_file()]


def test_readyz_is_503_while_the_archive_cannot_be_listed(tmp_path):
    missing = tmp_path / "gone"
    missing.mkdir()
    with _client(missing, tmp_path) as c:
        c.app.state.services.store.list = _failing_list
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "NotReady"
        assert c.get("/healthz").status_code == 200


def _failing_list(prefix):
    from archive.errors import StoreError

    raise StoreError("the bucket answered 503 SlowDown")


# -- proxy mode --------------------------------------------------------------------------------------------------


def test_proxy_mode_believes_the_headers_only_from_trusted_peers(archive, tmp_path):
    headers = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "team-a-devs"}
    with _client(archive, tmp_path, client=("127.0.0.1", 41234), auth="proxy") as c:
        r = c.get("/api/v1/sessions", headers=headers)
        assert r.status_code == 200 and r.json()["total"] == 1
        r = c.get("/api/v1/sessions")  # the proxy sent no user
        assert r.status_code == 401 and "sent no X-Forwarded-User" in r.json()["error"]["message"]
    with _client(archive, tmp_path, client=("10.2.3.4", 41234), auth="proxy") as c:
        # The socket peer decides, not what the request says about itself.
        r = c.get("/api/v1/sessions", headers={**headers, "X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"})
        assert r.status_code == 401
        message = r.json()["error"]["message"]
        assert "accepted only from the authenticating proxy, and 10.2.3.4 is not it" in message
        r = c.get(f"/sessions/{SESSION.id}/api/jobs/", headers={"X-Forwarded-Groups": "platform"})
        assert r.status_code == 401 and r.json()["result"] is False
        r = c.get("/prometheus/api/v1/labels")
        assert r.status_code == 401 and r.json()["errorType"] == "unauthorized"
        page = c.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and "authenticating proxy" in page.text
        assert c.get("/healthz").status_code == 200
        assert re.search(r'reason="untrusted_proxy"} 2\.0', c.get("/metrics").text)


def test_proxy_mode_with_other_headers_and_networks(archive, tmp_path):
    with _client(
        archive,
        tmp_path,
        client=("10.2.3.4", 41234),
        auth="proxy",
        auth_user_header="X-Auth-Request-User",
        auth_groups_header="X-Auth-Request-Groups",
        auth_trusted_proxies="192.168.0.0/16, 10.2.0.0/16",
    ) as c:
        assert c.get("/api/v1/sessions", headers={"X-Auth-Request-User": "alice"}).status_code == 200
        assert c.get("/api/v1/sessions", headers={"X-Forwarded-User": "alice"}).status_code == 401
    with _client(
        archive, tmp_path, client=("::ffff:10.2.9.9", 1), auth="proxy", auth_trusted_proxies="10.2.0.0/16"
    ) as c:  # an IPv4 peer on a dual-stack socket
        assert c.get("/api/v1/sessions", headers={"X-Forwarded-User": "alice"}).status_code == 200


def test_no_auth_on_loopback_is_unchanged(archive, tmp_path):
    with _client(archive, tmp_path) as c:
        assert c.get("/api/v1/sessions").json()["total"] == 1
        assert c.get(f"/sessions/{SESSION.id}/api/jobs/").status_code == 200
        assert c.get("/login?next=/api/v1/sessions").headers["location"] == "/api/v1/sessions"


# -- over a real socket ----------------------------------------------------------------------------------------


@pytest.fixture
def served(archive, tmp_path):
    """The server as `rayhistory serve` runs it (uvicorn, its config), on a real socket of 127.0.0.1."""
    import socket
    import threading

    import uvicorn

    from historyserver.cli import server_config

    def start(**settings):
        s = ServerSettings(
            archive=str(archive), cache_dir=str(tmp_path / "cache"), catalog_ttl=0, compact_on_end=False, **settings
        )
        server = uvicorn.Server(server_config(create_app(s, LocalStore(archive)), s))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        started.append((server, thread, sock))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    started: list = []
    yield start
    for server, thread, sock in started:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_the_trusted_proxy_check_reads_the_socket_peer_not_x_forwarded_for(served):
    import httpx

    # A proxy in the pod connects from 127.0.0.1 and names the user's own address in X-Forwarded-For: still trusted.
    url = served(auth="proxy")
    headers = {"X-Forwarded-User": "alice", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    r = httpx.get(f"{url}/api/v1/sessions", headers=headers)
    assert r.status_code == 200, r.text
    # Trusting only an outside network, a request from 127.0.0.1 that claims to come from it is refused.
    url = served(auth="proxy", auth_trusted_proxies="203.0.113.0/24")
    r = httpx.get(f"{url}/api/v1/sessions", headers=headers)
    assert r.status_code == 401 and "127.0.0.1 is not it" in r.json()["error"]["message"]


# -- one request's decisions -------------------------------------------------------------------------------------


def test_a_request_decides_each_namespace_once_and_a_listing_decides_them_in_parallel():
    import threading

    from historyserver.access.principal import Access, Principal

    asked: list[str] = []
    together = threading.Barrier(3, timeout=10)  # three decisions must be under way at once, or this one breaks

    def decide(principal: Principal, namespace: str) -> bool:
        asked.append(namespace)
        together.wait()
        return namespace == "team-a"

    access = Access(Principal("alice"), decide)
    access.decide_all(["team-a", "team-b", "team-c", "team-a"])
    assert sorted(asked) == ["team-a", "team-b", "team-c"]
    assert [access.allows(n) for n in ("team-a", "team-b", "team-c")] == [True, False, False]
    assert len(asked) == 3  # answered from the request's memory
