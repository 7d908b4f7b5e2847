"""What the Prometheus API tests share: three small archived sessions (two clusters), a client over them, and
Prometheus's envelopes checked exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from archive.storage import open_store
from archive.storage.local import LocalStore
from historyserver.app import create_app
from historyserver.settings import ServerSettings
from tests.metrics_archive import FakeSession, write_session

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HALF_HOUR = 1_800_000
A = FakeSession("team", "alpha", "session_2026-01-01_00-00-00_000001_1", T0, T0 + HALF_HOUR)
B = FakeSession("team", "alpha", "session_2026-01-01_01-00-00_000002_1", T0 + 2 * HALF_HOUR, T0 + 3 * HALF_HOUR, cpu=50)
C = FakeSession(
    "team",
    "beta",
    "session_2026-01-01_00-00-00_000003_1",
    T0,
    T0 + HALF_HOUR,
    instance="10.0.0.9:8080",
    node_id="c" * 56,
)
API = "/prometheus/api/v1"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prom-archive")
    store = LocalStore(root)
    for s in (A, B, C):
        write_session(store, s)
    return root


def make_client(archive: Path, cache: Path, **settings) -> TestClient:
    s = ServerSettings(archive=str(archive), cache_dir=str(cache), catalog_ttl=0, compact_on_end=False, **settings)
    return TestClient(create_app(s, open_store(str(archive))))


class Spy:
    """Records which sessions' tables the warehouse opens."""

    def __init__(self, client: TestClient) -> None:
        self.opened: list[str] = []
        warehouse = client.app.state.services.warehouse
        real = warehouse.db

        def db(entry):
            self.opened.append(entry.ref.id)
            return real(entry)

        warehouse.db = db


@pytest.fixture(scope="module")
def client(archive, tmp_path_factory):
    with make_client(archive, tmp_path_factory.mktemp("prom-cache")) as c:
        yield c


def ok(resp) -> object:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success" and set(body) == {"status", "data"}, body
    return body["data"]


def err(resp, status: int, error_type: str, contains: str = "") -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body == {"status": "error", "errorType": error_type, "error": body["error"]}, body
    assert contains in body["error"], body["error"]
    return body["error"]


def secs(ms: int) -> str:
    return str(ms / 1000)
