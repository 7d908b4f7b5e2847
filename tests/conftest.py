"""Shared fixtures. Real components only: a real Ray cluster, a real S3 server (SeaweedFS)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import needs
from tests.servers.fixtures import s3_archive, seaweedfs  # noqa: F401

# ci_skips: in CI a skipped or xfailed test fails the run; pytester: for the test of that guard.
pytest_plugins = ["tests.ci_skips", "pytester"]

REFERENCE = needs.REFERENCE


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"the reference samples are missing at {REFERENCE}: the repository expects ../shared/ beside it")
    return REFERENCE


@pytest.fixture(scope="session")
def finished_cluster(tmp_path_factory, seaweedfs):  # noqa: F811
    """A real Ray 2.60 cluster that ran the demo workload with two collectors attached (a local archive and
    SeaweedFS), then stopped. Started once per test session."""
    from tests.ray_cluster import run_finished_cluster

    work = tmp_path_factory.mktemp("ray")
    result = run_finished_cluster(work, seaweedfs)
    yield result
    shutil.rmtree(result.ray_temp_dir, ignore_errors=True)
