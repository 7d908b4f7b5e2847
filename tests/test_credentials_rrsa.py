"""ACK's RRSA: the pod's OIDC token traded with STS (tests/servers/sts.py) for credentials that expire, used by the
S3 store (OSS; SeaweedFS here) and the SLS sink, and renewed ahead of expiry without a failed upload."""

from __future__ import annotations

import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from archive import credentials
from archive.credentials import CredentialsError, OidcRoleCredentials
from archive.errors import AccessDenied, BackendUnavailable, InvalidArchiveURL
from archive.layout import SessionRef
from archive.storage import open_store
from collector.sinks.sls import SlsSink
from rayhistory.local_ray import free_port
from tests.fake_session import SESSION_NAME, make_session
from tests.servers.sls import running_sls
from tests.servers.sts import StsServer, running_sts
from tests.test_collector_faults import Writer, archive_errors, assert_identical_without_gaps_or_duplicates, collector
from tests.test_collector_faults import _stderr as collector_log
from tests.test_sls_sink import config as sls_config
from tests.test_sls_sink import scan, wait_for

AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@pytest.fixture
def sts():
    with running_sts() as server:
        yield server


def rrsa_env(sts: StsServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    token_file = tmp_path / "oidc-token"
    token_file.write_text(sts.new_oidc_token())
    return {
        "ALIBABA_CLOUD_ROLE_ARN": sts.role_arn,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": sts.provider_arn,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
        "RAYHISTORY_STS_ENDPOINT": sts.url,
        **extra,
    }


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


# --- choosing credentials ------------------------------------------------------------------------------------


def test_the_environment_picks_rrsa_then_access_keys_then_nothing(sts, tmp_path):
    env = rrsa_env(sts, tmp_path, ALIBABA_CLOUD_ACCESS_KEY_ID="AK", ALIBABA_CLOUD_ACCESS_KEY_SECRET="S")
    source = credentials.from_environment(env)
    assert isinstance(source, OidcRoleCredentials) and source.url == sts.url
    static = credentials.from_environment({"ALIBABA_CLOUD_ACCESS_KEY_ID": "AK", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "S"})
    assert static is not None and static.get() == credentials.Credentials("AK", "S")
    assert credentials.from_environment({}) is None


def test_rrsa_set_up_halfway_names_what_is_missing(tmp_path):
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_OIDC_TOKEN_FILE missing"):
        credentials.from_environment({"ALIBABA_CLOUD_ROLE_ARN": "r", "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "p"})


def test_sts_endpoint_follows_the_sdks_region_and_vpc_variables():
    s = credentials.StsSettings()
    assert s.url({}) == "https://sts.aliyuncs.com"
    region = {"ALIBABA_CLOUD_STS_REGION": "cn-hangzhou", "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true"}
    assert s.url(region) == "https://sts-vpc.cn-hangzhou.aliyuncs.com"
    with pytest.raises(CredentialsError, match="RAYHISTORY_STS_DURATION"):
        credentials.from_environment(
            {**dict.fromkeys(credentials.RRSA_VARIABLES, "x"), "RAYHISTORY_STS_DURATION": "5m"}
        )


# --- the exchange and its schedule ---------------------------------------------------------------------------


def test_the_exchange_sends_what_sts_documents(sts, tmp_path):
    source = credentials.from_environment(rrsa_env(sts, tmp_path, ALIBABA_CLOUD_ROLE_SESSION_NAME="pod-a"))
    got = source.get()
    (issued,) = sts.issued
    assert (got.access_key_id, got.access_key_secret, got.security_token) == (
        issued.access_key_id,
        issued.access_key_secret,
        issued.security_token,
    )
    assert got.expiration == issued.expiration and issued.expiration - time.time() > 3500  # 1h asked
    sent = sts.requests[0]
    assert sent["Action"] == "AssumeRoleWithOIDC" and sent["Version"] == "2015-04-01" and sent["Format"] == "JSON"
    assert sent["RoleSessionName"] == "pod-a" and sent["DurationSeconds"] == "3600"


def test_credentials_are_renewed_a_quarter_hour_before_expiry_and_the_token_file_is_reread(sts, tmp_path):
    env = rrsa_env(sts, tmp_path)
    clock = Clock()
    source = credentials.from_environment(env)
    source._clock = clock
    first = source.get()
    clock.offset = 44 * 60  # a 1h credential is kept for 45 minutes
    assert source.get() is first and len(sts.issued) == 1
    Path(env["ALIBABA_CLOUD_OIDC_TOKEN_FILE"]).write_text(sts.new_oidc_token())  # the kubelet rotated it
    sts.oidc_tokens.discard(sts.requests[0]["OIDCToken"])
    clock.offset = 46 * 60
    second = source.get()
    assert second.access_key_id != first.access_key_id and len(sts.issued) == 2
    assert sts.requests[-1]["OIDCToken"] != sts.requests[0]["OIDCToken"]


def test_an_sts_outage_before_expiry_keeps_the_held_credentials_then_fails_clearly(sts, tmp_path):
    source = credentials.from_environment(rrsa_env(sts, tmp_path))
    clock = Clock()
    source._clock = clock
    held = source.get()
    sts.fail_next(100)
    clock.offset = 50 * 60  # refresh due, STS down: no gap, the held credentials still hold for 10 minutes
    assert source.get() is held and source.failures == 1
    assert source.get() is held and source.failures == 1  # asks again only after a pause, not per request
    clock.offset = 60 * 60
    with pytest.raises(CredentialsError, match="ServiceUnavailable"):
        source.get()


def test_while_one_caller_renews_the_others_use_the_held_credentials(sts, tmp_path):
    source = credentials.from_environment(rrsa_env(sts, tmp_path))
    clock = Clock()
    source._clock = clock
    held = source.get()
    clock.offset = 50 * 60  # renewal due; the held credentials are good for ten more minutes
    sts.delay_s = 1.0
    renewed: list[credentials.Credentials] = []
    renewer = threading.Thread(target=lambda: renewed.append(source.get()))
    renewer.start()
    wait_for(lambda: source._renewing.locked(), what="the renewal to start")
    started = time.monotonic()
    assert source.get() is held and time.monotonic() - started < 0.5  # not held up by the slow STS
    renewer.join(timeout=10)
    assert renewed and renewed[0].access_key_id != held.access_key_id and source.get() is renewed[0]


def test_sts_answers_the_sdks_get_form_and_credentials_already_expired_are_refused(sts, tmp_path):
    import json
    import urllib.parse
    import urllib.request

    token = sts.new_oidc_token()
    query = {
        "Action": "AssumeRoleWithOIDC",
        "Format": "JSON",
        "Version": "2015-04-01",
        "RoleArn": sts.role_arn,
        "OIDCProviderArn": sts.provider_arn,
        "OIDCToken": token,
        "RoleSessionName": "credentials-python-1",
        "DurationSeconds": "3600",
    }
    with urllib.request.urlopen(f"{sts.url}/?{urllib.parse.urlencode(query)}", timeout=10) as r:
        assert set(json.load(r)["Credentials"]) == {"AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}
    sts.lifetime_s = 0.5  # a clock far ahead of STS's sees them expire at once
    with pytest.raises(CredentialsError, match="clock"):
        credentials.from_environment(rrsa_env(sts, tmp_path)).get()


def test_refusals_name_sts_code_and_unreachable_sts_is_not_a_refusal(sts, tmp_path):
    env = rrsa_env(sts, tmp_path, ALIBABA_CLOUD_ROLE_ARN="acs:ram::1:role/other")
    with pytest.raises(CredentialsError, match="EntityNotExist.Role.*trust policy") as e:
        credentials.from_environment(env).get()
    assert e.value.refused
    env = rrsa_env(sts, tmp_path, RAYHISTORY_STS_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(CredentialsError, match="cannot reach STS") as e:
        credentials.from_environment(env).get()
    assert not e.value.refused


def test_the_s3_store_reports_sts_failures_as_store_errors(sts, tmp_path, monkeypatch):
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for k, v in rrsa_env(sts, tmp_path, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}").items():
        monkeypatch.setenv(k, v)
    sts.oidc_tokens.clear()  # the token is not (or no longer) trusted
    with pytest.raises(AccessDenied, match="AuthenticationFail.OIDCToken.Invalid"):
        open_store("s3://bucket/x").check()
    monkeypatch.setenv("RAYHISTORY_STS_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BackendUnavailable, match="cannot reach STS"):
        open_store("s3://bucket/x").check()
    monkeypatch.delenv("ALIBABA_CLOUD_OIDC_TOKEN_FILE")
    with pytest.raises(InvalidArchiveURL, match="s3://bucket/x: RRSA is set up halfway: ALIBABA_CLOUD_OIDC_TOKEN_FILE"):
        open_store("s3://bucket/x")  # a configuration error, found before any request
    monkeypatch.setenv("RAYHISTORY_S3_CREDENTIALS", "alibaba")
    for name in credentials.RRSA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InvalidArchiveURL, match="neither RRSA"):
        open_store("s3://bucket/x")


# --- S3: the token on the wire, then a collector through expiry on SeaweedFS --------------------------------


def test_s3_requests_carry_the_current_session_token(sts, tmp_path, monkeypatch):
    """SeaweedFS refuses foreign session tokens, so the header is checked at a loopback S3 endpoint."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.headers.get("Authorization", ""), self.headers.get("X-Amz-Security-Token", "")))
            body = b'<?xml version="1.0"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount></ListBucketResult>'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        for name in AWS_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        endpoint = f"http://127.0.0.1:{httpd.server_address[1]}"
        for k, v in rrsa_env(sts, tmp_path, AWS_ENDPOINT_URL=endpoint, AWS_REGION="cn-hangzhou").items():
            monkeypatch.setenv(k, v)
        sts.lifetime_s = 3  # renewed after 2 s
        store = open_store("s3://bucket/x")
        wait_for(lambda: store.check() or len(sts.issued) >= 2, timeout=20, what="a renewal")
        store.check()
    finally:
        httpd.shutdown()
        httpd.server_close()
    keys = {i.access_key_id: i.security_token for i in sts.issued}
    for authorization, token in seen:
        key = authorization.split("Credential=")[1].split("/")[0]
        assert keys[key] == token  # every request signed by an issued key carries that key's token
    assert {a.split("Credential=")[1].split("/")[0] for a, _ in seen} == set(keys)  # and the new key was used


def test_collector_archives_through_credential_expiry_without_a_failed_upload(
    tmp_path, seaweedfs, s3_archive, monkeypatch
):
    """Credentials live 4 s; each pair STS issues is made known to SeaweedFS as it is issued. SeaweedFS cannot be
    told to forget a pair (add_identity), so that expired pairs are no longer used is proven by the SLS test below
    (whose server refuses them) and by the schedule tests above, not by SeaweedFS. Then the history server reads
    the session with credentials of its own."""
    with running_sts(lifetime_s=4, session_tokens=False) as sts:
        sts.on_issue = lambda issued: seaweedfs.add_identity(issued.access_key_id, issued.access_key_secret)
        env = rrsa_env(sts, tmp_path, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")  # no keys: RRSA (auto)
        session = make_session(tmp_path)
        store = open_store(s3_archive)  # the test's own reader, with the fixture's static keys
        writer = Writer(session / "logs")
        writer.start()
        port = free_port()
        proc = collector(session, s3_archive, env, "--http-port", str(port))
        try:
            nodes = SessionRef("ns", "c", SESSION_NAME).nodes_prefix
            wait_until_true(lambda: any(True for _ in store.list(nodes)), "first uploads", proc)
            wait_until_true(lambda: len(sts.issued) >= 4, "three renewals", proc, timeout=60)
            assert archive_errors(port) == 0, collector_log(proc)  # renewed ahead of expiry: no failed cycle
            writer.stop.set()
            writer.join()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 0, collector_log(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
            writer.stop.set()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        issued = len(sts.issued)
        assert [s["session_name"] for s in served_sessions(s3_archive, tmp_path / "cache")] == [SESSION_NAME]
        assert len(sts.issued) == issued + 1  # the server's own exchange
    assert writer.lines > 500
    assert_identical_without_gaps_or_duplicates(store, writer, session / "logs")


def served_sessions(archive: str, cache: Path) -> list[dict]:
    from fastapi.testclient import TestClient

    from historyserver.app import create_app
    from historyserver.settings import ServerSettings

    settings = ServerSettings(archive=archive, cache_dir=str(cache), catalog_ttl=0, compact_on_end=False)
    with TestClient(create_app(settings, open_store(archive))) as client:
        answer = client.get("/api/v1/sessions")
    assert answer.status_code == 200, answer.text
    return answer.json()["sessions"]


def wait_until_true(check, what: str, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"the collector exited:\n{collector_log(proc)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{collector_log(proc)}"
        time.sleep(0.05)


# --- SLS: tokens checked, and expired ones refused ----------------------------------------------------------


def test_sls_sink_streams_through_expiry_with_each_keys_token(sts, tmp_path):
    sts.lifetime_s = 3  # renewed after 2 s; the SLS test server refuses a pair from its expiry on
    with running_sls(temporary_keys=sts.lookup) as sls:
        source = credentials.from_environment(rrsa_env(sts, tmp_path))
        logs = tmp_path / "logs"
        logs.mkdir()
        path = logs / "raylet.out"
        sink = SlsSink(
            sls_config(sls, tmp_path, access_key_id="", access_key_secret="", credentials=source), "n1", logs
        )
        lines = 0
        deadline = time.monotonic() + 9  # three lifetimes
        with open(path, "ab") as f:
            while time.monotonic() < deadline:  # a batch of lines every 0.1 s: a request each, some 90 in all
                for _ in range(20):
                    f.write(b"[2026-11-25 19:58:42,362 W 7013 7023] (raylet) store.cc:366: line %06d\n" % lines)
                    lines += 1
                f.flush()
                sink.offer(scan(logs))
                time.sleep(0.1)
        assert sink.close(timeout=30), (sink.stats(), sls.refused[:3], len(sts.issued), source.failures)
        got = sorted(x.contents["message"] for x in sls.items())
        # The server side's search signs through the same provider (archive.credentials.sls_provider).
        from aliyun.log import GetLogsRequest

        from collector.sinks.sls.client import make_client

        reader = make_client(sls.endpoint, source, "search", 10.0, sls.proxy)
        now = int(time.time())
        request = GetLogsRequest("rayhistory", "ray-logs", 1_700_000_000, now + 60, query="line", line=10)
        found = reader.get_logs(request)  # the lines carry their own time (2026-11-25)
        assert found.get_count() == 10
    assert [m.rsplit(" ", 1)[1] for m in got] == [f"{i:06d}" for i in range(lines)]
    used = {r["access_key_id"] for r in sls.requests if r.get("status") == 200}
    assert len(used) >= 3 and used <= {i.access_key_id for i in sts.issued}
    assert sls.refused == []  # never an expired or missing token: renewed before expiry


def test_sls_without_any_credentials_names_both_ways(tmp_path, monkeypatch):
    from collector.errors import InvalidSettings
    from collector.settings import CollectorSettings
    from collector.sinks.sls import config_from_settings

    for name in (*credentials.RRSA_VARIABLES, *credentials.STATIC_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    given = {"session_dir": "s", "archive": "a", "sls_endpoint": "sls.test", "sls_project": "p", "sls_logstore": "l"}
    settings = CollectorSettings.load(given, {})
    with pytest.raises(InvalidSettings, match="ALIBABA_CLOUD_ACCESS_KEY_ID.*ALIBABA_CLOUD_OIDC_TOKEN_FILE"):
        config_from_settings(settings, tmp_path / "cp.json")
