"""What the suite needs beyond its Python packages, each found or failed with what to do. A missing component fails
the test that needs it, never skips it: `make test` installs everything (the venv, then
.ci/install-system-packages), so a skip would only hide a missing install step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"  # ../shared/ beside the repository
REFERENCE = SHARED / "reference" / "ray-2.60"
INSTALL_SYSTEM = "run `bash .ci/install-system-packages` as root (`make test` runs it)"


def reference(*parts: str) -> Path:
    """A file or folder of the shared Ray 2.60 reference (../shared/reference/ray-2.60/...)."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"the shared reference {path} is missing: the repository expects ../shared/ beside it "
            "(see ../shared/reference/README.md)",
            pytrace=False,
        )
    return path


def system_command(name: str, package: str) -> str:
    """A command that .ci/install-system-packages installs (Debian package `package`)."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: {INSTALL_SYSTEM}; it installs the Debian package {package}", pytrace=False
        )
    return found


def prometheus() -> None:
    """The real Prometheus and promtool (Debian's prometheus package), for the oracle and the backfill tests."""
    from tests.servers import prometheus as server

    if not server.available():
        pytest.fail(
            f"{server.PROMETHEUS} or {server.PROMTOOL} is missing: {INSTALL_SYSTEM}; it installs the "
            "Debian package prometheus",
            pytrace=False,
        )
