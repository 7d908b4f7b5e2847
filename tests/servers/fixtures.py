"""pytest fixtures over the real SeaweedFS server; conftest.py imports them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.servers.seaweedfs import SeaweedFS, running_seaweedfs

# AWS settings from the developer's environment that would override or break the test server's.
_FOREIGN_AWS_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_DEFAULT_REGION",
    "RAYHISTORY_S3_ADDRESSING_STYLE",
)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_archive(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3://rayhistory/<fresh prefix>`, with the AWS_* variables pointing at the test server."""
    for name in _FOREIGN_AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://{seaweedfs.bucket}/test-{uuid.uuid4().hex[:12]}"
