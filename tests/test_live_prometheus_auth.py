"""Live charts against a real Prometheus that asks for credentials (its --web.config.file with basic auth, as ACK
managed Prometheus V2 does): `--prometheus-authorization-file` holds the Authorization header the server sends,
read again at every query; a refusal says which setting to fix."""

from __future__ import annotations

import base64
import time

import pytest

from archive.settings import SettingsError
from archive.storage.local import LocalStore
from historyserver.settings import ServerSettings
from tests import needs
from tests.metrics_archive import FakeSession, write_session
from tests.prometheus_api_helpers import make_client
from tests.servers.prometheus import Prometheus

USER, PASSWORD = "rayhistory", "s3cret-for-the-test"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A real Prometheus asking for basic auth, and an archive with one running session."""
    needs.prometheus()
    prometheus = Prometheus(tmp_path_factory.mktemp("prometheus-auth"))
    prometheus.start(basic_auth=(USER, PASSWORD))
    now = int(time.time() * 1000)
    session = FakeSession("team", "auth", "session_2026-12-06_00-00-00_000001_1", now - 600_000, None, last_seen_ms=now)
    root = tmp_path_factory.mktemp("auth-archive")
    write_session(LocalStore(root), session)
    try:
        yield prometheus, root, session
    finally:
        prometheus.stop()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_authorization_file_is_sent_and_read_again_at_every_query(guarded, tmp_path):
    prometheus, root, session = guarded
    url = f"/sessions/{session.id}/live/prometheus/api/v1/query"
    query = {"query": f'vector(7) and on() absent(up{{SessionName="{session.name}"}})'}
    secret = tmp_path / "authorization"
    secret.write_text(_basic(USER, PASSWORD) + "\n")
    settings = {"prometheus_url": prometheus.url, "prometheus_authorization_file": str(secret)}
    with make_client(root, tmp_path / "cache", **settings) as c:
        r = c.post(url, data=query)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["result"][0]["value"][1] == "7"  # Prometheus itself evaluated it
        secret.write_text(_basic(USER, "rotated-away"))  # a rotated Secret: the next query sends the new value
        r = c.post(url, data=query)
        assert r.status_code == 502 and r.json()["errorType"] == "unavailable", r.text
        assert "HTTP 401" in r.json()["error"] and f"--prometheus-authorization-file '{secret}'" in r.json()["error"]
        secret.write_text(_basic(USER, PASSWORD))
        assert c.post(url, data=query).status_code == 200
        secret.unlink()  # gone: the error names the file
        r = c.post(url, data=query)
        assert r.status_code == 503 and f"--prometheus-authorization-file '{secret}' cannot be read" in r.text


def test_without_credentials_the_refusal_names_the_setting(guarded, tmp_path):
    prometheus, root, session = guarded
    with make_client(root, tmp_path / "cache", prometheus_url=prometheus.url) as c:
        r = c.post(
            f"/sessions/{session.id}/live/prometheus/api/v1/query",
            data={"query": f'up{{SessionName="{session.name}"}}'},
        )
        assert r.status_code == 502 and r.json()["status"] == "error", r.text
        assert "HTTP 401" in r.json()["error"] and "give --prometheus-authorization-file" in r.json()["error"]


def test_the_authorization_file_is_checked_at_start(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    for settings, message in (
        ({"prometheus_authorization_file": str(empty)}, "give --prometheus-url too"),
        ({"prometheus_url": "http://p:9090", "prometheus_authorization_file": str(tmp_path / "no")}, "cannot be read"),
        ({"prometheus_url": "http://p:9090", "prometheus_authorization_file": str(empty)}, "must hold one line"),
        ({"prometheus_url": "http://p:9090", "prometheus_authorization_file": "/dev/zero"}, "more than 16 KiB"),
    ):
        with pytest.raises(SettingsError, match=message):
            ServerSettings(archive=str(tmp_path), **settings).check()
