"""In CI (the CI environment variable set, as `.ci/run` runs), a skipped, xfailed or xpassed test fails the run.

CI installs everything the suite needs (`make test`), so a skip there means a component is missing or a test gave
up; reported green, it would claim what was never checked. An xfail is a known failure: in CI it is a failure.
Outside CI a skip stays a skip. conftest.py loads this plugin.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class SkipGuard:
    def __init__(self) -> None:
        self.found: list[str] = []

    def _record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if getattr(report, "wasxfail", None) is not None:  # xfailed (reported skipped) or xpassed (passed)
            kind = "xfailed" if report.skipped else "xpassed"
            self.found.append(f"{report.nodeid}: {kind} ({report.wasxfail or 'no reason given'})")
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.found.append(f"{report.nodeid or '(collection)'}: skipped ({reason})")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # NO_TESTS_COLLECTED too: a run whose only module was skipped at collection collected nothing.
        if in_ci() and self.found and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not (in_ci() and self.found):
            return
        terminalreporter.section("skipped in CI: the run fails", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"{len(self.found)} test(s) did not run to a verdict. CI installs every component "
            "(make test: the venv and .ci/install-system-packages), so a skip here is a bug "
            "or a missing install step:"
        )
        for line in self.found:
            terminalreporter.line(f"  {line}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(), "rayhistory-ci-skip-guard")
