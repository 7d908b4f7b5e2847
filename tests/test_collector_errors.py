"""The collector's error tree: each error the CLI meets ends the command with one line, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import collector.errors as errors
from tests.fake_session import make_session


def test_every_collector_error_has_the_one_base():
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(classes) >= 8 and all(issubclass(c, errors.CollectorError) for c in classes)


def _collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "collect", "--cluster", "c", "--namespace", "ns", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " INFO " not in line and " WARNING " not in line]


def test_a_busy_port_is_one_line_naming_the_setting(tmp_path):
    session = make_session(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = _collect(
            "--session-dir", str(session), "--archive", str(tmp_path / "a"), "--http-port", str(busy.getsockname()[1])
        )
    assert out.returncode == 1
    assert len(_errors(out.stderr)) == 1 and "--http-port" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unwritable_state_dir_is_one_line_naming_the_setting(tmp_path):
    session = make_session(tmp_path)
    (tmp_path / "file").write_text("not a directory")
    out = _collect(
        "--session-dir",
        str(session),
        "--archive",
        str(tmp_path / "a"),
        "--once",
        "--state-dir",
        str(tmp_path / "file" / "state"),
    )
    assert out.returncode == 1
    assert len(_errors(out.stderr)) == 1 and "--state-dir" in out.stderr and "Traceback" not in out.stderr
