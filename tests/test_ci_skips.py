"""The CI guard (tests/ci_skips.py), run on tiny inner test files: with CI set, any skip, xfail or xpass fails the
run with a message naming the test and its reason; without CI, skips stay skips."""

from __future__ import annotations

import pytest

PASSING = "def test_ok():\n    assert 1 + 1 == 2\n"
SKIPPING = PASSING + "\nimport pytest\n\ndef test_gone():\n    pytest.skip('promtool is missing')\n"


def _run(pytester: pytest.Pytester, monkeypatch, ci: str | None, source: str) -> pytest.RunResult:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_inprocess("-p", "tests.ci_skips", "-p", "no:cacheprovider")


def test_a_skip_fails_the_run_in_ci_and_names_the_test(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, "true", SKIPPING)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*skipped in CI: the run fails*", "*test_inner.py::test_gone: skipped (*promtool is missing)"]
    )


def test_outside_ci_a_skip_is_a_skip(pytester, monkeypatch):
    for ci in (None, "", "false", "0"):
        result = _run(pytester, monkeypatch, ci, SKIPPING)
        assert result.ret == pytest.ExitCode.OK, ci
        assert "skipped in CI" not in result.stdout.str()


def test_a_green_run_stays_green_in_ci(pytester, monkeypatch):
    assert _run(pytester, monkeypatch, "true", PASSING).ret == pytest.ExitCode.OK


@pytest.mark.parametrize(
    "source, kind",
    [
        ("import pytest\n\n@pytest.mark.skipif(True, reason='no reference')\ndef test_s():\n    pass\n", "skipped"),
        (
            "import pytest\n\n@pytest.fixture\ndef tool():\n    pytest.skip('no tool')\n\ndef test_f(tool):\n    pass\n",
            "skipped",
        ),
        ("import pytest\n\n@pytest.mark.xfail(reason='known bug')\ndef test_x():\n    assert False\n", "xfailed"),
        ("import pytest\n\n@pytest.mark.xfail(reason='known bug')\ndef test_x():\n    pass\n", "xpassed"),
    ],
    ids=["skipif", "skip-in-fixture", "xfail", "xpass"],
)
def test_every_kind_of_not_running_fails_in_ci(pytester, monkeypatch, source, kind):
    result = _run(pytester, monkeypatch, "true", source)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*test_inner.py::test_*: {kind} (*)"])


def test_a_module_skipped_at_collection_fails_in_ci_not_no_tests_collected(pytester, monkeypatch):
    source = "import pytest\n\npytest.skip('no data', allow_module_level=True)\n\ndef test_never():\n    pass\n"
    assert _run(pytester, monkeypatch, None, source).ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result = _run(pytester, monkeypatch, "true", source)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test_inner.py: skipped (*no data)"])
