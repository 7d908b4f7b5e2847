"""A real single-node Ray cluster on this machine, started and stopped the way a pod would be."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


class RayFailed(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll check() until it returns something true; fail fast if proc dies (quoting the end of its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RayFailed(f"{what}: the process exited with code {proc.returncode}{_tail(log)}")
        time.sleep(0.3)
    raise RayFailed(f"timed out after {timeout:.0f}s waiting for {what}{_tail(log)}")


def _tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"; the end of {log}:\n" + "\n".join(text)


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # Export events to files: they record final states even at shutdown. Every Ray process reads this,
            # drivers included, so the whole cluster's environment must have it.
            "RAY_enable_export_api_write": "1",
            "RAY_AUTH_MODE": "disabled",  # a throw-away local cluster bound to 127.0.0.1
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    return env


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class LocalRayCluster:
    """`ray start --head --block` in its own temp dir; SIGTERM stops it gracefully, and only it."""

    def __init__(self, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.env = ray_env()
        # Short: Ray's socket paths have a length limit.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))
        self._pick_ports()
        self.proc: subprocess.Popen | None = None
        self.log = self.temp_dir / "ray-start.log"  # `ray start`'s own output, quoted when it fails
        self.session_dir: Path | None = None

    def _pick_ports(self) -> None:
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        # Ray's other fixed defaults (agent 52365, client server 10001, ...) collide when two clusters share a
        # machine (a developer's and a test's): give every listening port a free one.
        self.extra_ports = {
            flag: free_port()
            for flag in (
                "--dashboard-agent-listen-port",
                "--dashboard-agent-grpc-port",
                "--runtime-env-agent-port",
                "--ray-client-server-port",
                "--metrics-export-port",
            )
        }

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self) -> Path:
        ray_bin = Path(sys.executable).with_name("ray")
        for attempt in (1, 2):
            with self.log.open("ab") as log:
                self.proc = self._popen(ray_bin, log)
            try:
                self.session_dir = wait_for("Ray's session directory", self._session_dir, 90, self.proc, self.log)
                return self.session_dir
            except RayFailed:
                # A port free_port() found free can be taken by another process before Ray binds it: once, `ray
                # start` is tried again on fresh ports (its log keeps both tries, quoted if the second fails too).
                if attempt == 2 or self.proc.poll() is None:
                    raise
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # what the failed try had started
                self._pick_ports()
        raise AssertionError("unreachable")

    def _popen(self, ray_bin: Path, log) -> subprocess.Popen:
        return subprocess.Popen(
            [
                str(ray_bin),
                "start",
                "--head",
                "--block",
                f"--temp-dir={self.temp_dir}",
                f"--port={self.gcs_port}",
                "--node-ip-address=127.0.0.1",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                "--include-dashboard=true",
                f"--num-cpus={self.num_cpus}",
                "--disable-usage-stats",
                *(f"{flag}={port}" for flag, port in self.extra_ports.items()),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        wait_for("Ray's dashboard", lambda: http_ok(self.dashboard + "/api/version"), 90, self.proc, self.log)

    def _session_dir(self) -> Path | None:
        latest = self.temp_dir / "session_latest"
        if latest.exists() and any(latest.resolve().glob("metrics_export_port_*")):
            return latest.resolve()
        return None

    def stop(self, timeout: float = 90) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
