"""A Ray session directory (`<temp-dir>/session_<date>_<time>_<pid>/`), read without touching Ray."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collector.errors import NotARaySession

__all__ = ["LogFile", "NotARaySession", "SessionDir", "scan_tree"]

_SESSION_NAME = re.compile(r"^session_(\d{4}-\d{2}-\d{2})_(\d{2}-\d{2}-\d{2})_(\d{6})_\d+$")
_NODE_ID_FILE = re.compile(r"^(?:metrics_export_port|gcs_server_port|dashboard_agent_listen_port)_([0-9a-f]{56})$")
_NODE_ID_LOG = re.compile(rb"Setting node ID node_id=([0-9a-f]{56})")
_VERSION_LOG = re.compile(rb"ray_version=(\d+\.\d+\.\d+\S*)|Ray version: (\d+\.\d+\.\d+\S*)")
_NODE_IP_LOG = re.compile(rb"node_ip_address=(\d+\.\d+\.\d+\.\d+)|\(raylet\).*? node_ip=(\d+\.\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class LogFile:
    path: str  # relative to logs/, '/'-separated
    size: int
    inode: int
    mtime_ns: int = 0


class SessionDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        given = Path(path).expanduser()
        if not given.exists():
            raise NotARaySession(
                f"session directory {given} does not exist; pass Ray's session dir, e.g. /tmp/ray/session_latest"
            )
        self.path = given.resolve()  # session_latest is a symlink to the real session
        self.name = self.path.name
        if not _SESSION_NAME.match(self.name) or not (self.path / "logs").is_dir():
            raise NotARaySession(
                f"{given} is not a Ray session directory (expected session_<date>_<time>_<pid>/ "
                "with a logs/ folder); pass e.g. /tmp/ray/session_latest"
            )
        self.logs = self.path / "logs"

    @property
    def start_ms(self) -> int:
        """When Ray created the session, from its name (Ray names it in the node's local time)."""
        m = _SESSION_NAME.match(self.name)
        assert m
        stamp = datetime.strptime(f"{m.group(1)} {m.group(2)} {m.group(3)}", "%Y-%m-%d %H-%M-%S %f")
        return int(stamp.timestamp() * 1000)

    @property
    def is_head(self) -> bool:
        return (self.logs / "gcs_server.out").exists()

    def node_id(self) -> str | None:
        for entry in os.scandir(self.path):
            m = _NODE_ID_FILE.match(entry.name)
            if m:
                return m.group(1)
        return self._grep(_NODE_ID_LOG, "raylet.out")

    def ray_version(self) -> str | None:
        return self._grep(_VERSION_LOG, "gcs_server.out", "raylet.out")

    def node_ip(self) -> str | None:
        return self._grep(_NODE_IP_LOG, "raylet.out")

    def ray_running(self) -> bool:
        """Whether this node's raylet still accepts connections on its socket in the session directory."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(str(self.path / "sockets" / "raylet"))
            except OSError:
                return False
        return True

    @staticmethod
    def hostname() -> str:
        return socket.gethostname()

    def _grep(self, pattern: re.Pattern[bytes], *names: str) -> str | None:
        for name in names:
            try:
                with open(self.logs / name, "rb") as f:
                    head = f.read(1 << 20)
            except OSError:
                continue
            m = pattern.search(head)
            if m:
                return next(g for g in m.groups() if g).decode()
        return None

    def scan(self) -> list[LogFile]:
        """Every regular file under logs/, subfolders included."""
        return scan_tree(self.logs)


def scan_tree(base: Path) -> list[LogFile]:
    """Every regular file under base, subfolders included, with paths relative to it."""
    found = []
    for dirpath, _, filenames in os.walk(base):
        for name in filenames:
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue  # deleted between listing and stat
            if not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            found.append(LogFile(rel, st.st_size, st.st_ino, st.st_mtime_ns))
    return sorted(found, key=lambda f: f.path)
