"""Small helpers for tests that talk to the history server in-process."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from archive.storage import open_store
from historyserver.app import create_app
from historyserver.settings import ServerSettings


def client_for(archive: str, cache_dir: Path) -> TestClient:
    settings = ServerSettings(archive=archive, cache_dir=str(cache_dir), catalog_ttl=0)
    return TestClient(create_app(settings, open_store(archive)))
