"""Polls the head's dashboard for what no event stream carries (placement groups, submission jobs, cluster status,
Serve applications) into append-only JSON-lines spool files.

File format (the archive sink ships these files as the source "api", byte-range segments like logs; its constants,
line writer and reader are archive/api_snapshots.py, shared with the history server):

- Files `api-<seq>.jsonl` in the spool directory, `<seq>` 6 decimal digits from 000001, in write order; a file only
  grows, only the newest is ever appended to, and at `max_file_bytes` the writer moves on to the next `<seq>`. Every append is whole lines and is
  fsynced; only a failed write can leave an unterminated last line (then the writer starts the next file), so
  readers drop a file's last line when it lacks `\\n`.
- One line per snapshot, a JSON object (UTF-8):
  `{"time_ms": <epoch ms when the request was sent>, "route": "<path and query, as in ROUTES>",
    "status": <HTTP status>, "body": <the response body: its JSON value when it parses as JSON, else its text>}`
- A snapshot is written only when its status or body differs from the last one written for that route by this
  process, so the latest line of a route is its state from that time until the next line of that route (or the
  end of the session). After a collector restart the first snapshot of every route is written again.
- Non-2xx answers are snapshots too (Ray 2.60 answers `/api/serve/applications/` with 501 when Serve is not
  installed), except 401 and 403: those mean the collector lacks Ray's token, and are counted, not written.
  A request that got no answer (connection refused, timeout) writes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from archive import api_snapshots
from archive.api_snapshots import ROUTES
from collector.sources.metrics import delta
from collector.sources.session_dir import SessionDir
from collector.spool import AppendOnlySpool

log = logging.getLogger("rayhistory.collector")

MAX_BODY_BYTES = 256 << 20
_DASHBOARD_ADDRESS_LOG = re.compile(rb"Dashboard head http address: ([^\s:]+|\[[^\]]+\]):(\d+)")

TOKEN_HINT = (
    "set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token) in the collector's environment to "
    "the cluster's token, the same one Ray's own processes use (`ray get-auth-token` prints it)"
)


class AuthenticationRequired(RuntimeError):
    """The dashboard answered 401 or 403: Ray's token authentication is on and the collector's token is wrong."""


# KubeRay's injection, with Kubernetes token authentication on, sets RAY_ENABLE_K8S_TOKEN_AUTH=true and mounts
# the pod's projected ServiceAccount token here (KubeRay's utils.RayTokenMountPath; its own collector reads it).
K8S_TOKEN_FILE = "/var/run/secrets/ray.io/serviceaccount/token"


def find_token(
    environ: Mapping[str, str] | None = None,
    home: str | os.PathLike[str] | None = None,
    k8s_token_file: str | os.PathLike[str] = K8S_TOKEN_FILE,
) -> str | None:
    """KubeRay's projected token when RAY_ENABLE_K8S_TOKEN_AUTH is true, else Ray's own lookup order
    (ray._raylet AuthenticationTokenLoader): RAY_AUTH_TOKEN, then the file named by RAY_AUTH_TOKEN_PATH, then
    ~/.ray/auth_token."""
    env = os.environ if environ is None else environ
    k8s = env.get("RAY_ENABLE_K8S_TOKEN_AUTH", "").strip().lower() in ("1", "true", "yes")
    if not k8s and env.get("RAY_AUTH_TOKEN", "").strip():
        return env["RAY_AUTH_TOKEN"].strip()
    candidates = [Path(k8s_token_file)] if k8s else []
    candidates += [Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser()] if env.get("RAY_AUTH_TOKEN_PATH") else []
    candidates.append(Path(home if home is not None else Path.home()) / ".ray" / "auth_token")
    for path in candidates:
        try:
            token = path.read_text().strip()
        except OSError:
            continue
        if token:
            return token
    return None


def dashboard_url_from_session(session: SessionDir, default_port: int = 8265) -> str:
    """The head's dashboard as its log names it ("Dashboard head http address: HOST:PORT"), else Ray's default."""
    return _logged_dashboard_url(session) or f"http://127.0.0.1:{default_port}"


def _logged_dashboard_url(session: SessionDir) -> str | None:
    try:
        with open(session.logs / "dashboard.log", "rb") as f:
            found = _DASHBOARD_ADDRESS_LOG.findall(f.read(8 << 20))
    except OSError:
        found = []
    if not found:
        return None
    logged_host, port = (g.decode() for g in found[-1])  # the last one: a restarted dashboard logs it again
    host = "127.0.0.1" if logged_host in ("0.0.0.0", "::", "[::]") else logged_host
    return f"http://{host}:{port}"


class DashboardAddress:
    """The head's dashboard URL, asked at every poll: a sidecar starts before Ray's dashboard has logged its
    address, so until it has, Ray's default port is tried and the log is read again next time."""

    def __init__(self, session: SessionDir, default_port: int = 8265) -> None:
        self.session, self.default_port = session, default_port
        self._logged: str | None = None

    def __call__(self) -> str:
        if self._logged is None:
            self._logged = _logged_dashboard_url(self.session)
        return self._logged or f"http://127.0.0.1:{self.default_port}"


@dataclass
class PollStats:
    polls: int = 0
    snapshots: int = 0
    unchanged: int = 0
    request_errors: int = 0
    auth_errors: int = 0
    write_errors: int = 0
    bytes: int = 0
    last_error: str | None = None


class DashboardApiPoller:
    """Every `interval` seconds (and once more at shutdown: `poll_once()`) snapshots ROUTES into the spool."""

    def __init__(
        self,
        spool_dir: str | os.PathLike[str],
        dashboard_url: str | Callable[[], str],  # a callable is asked at every poll (DashboardAddress)
        interval: float = 30.0,
        timeout: float = 20.0,
        routes: tuple[str, ...] = ROUTES,
        token: str | None = None,
        environ: Mapping[str, str] | None = None,
        home: str | os.PathLike[str] | None = None,
        max_file_bytes: int = 32 << 20,
    ) -> None:
        self._address = dashboard_url if callable(dashboard_url) else (lambda: str(dashboard_url))
        self.url = self._address().rstrip("/")
        self.interval = interval
        self.timeout = timeout
        self.routes = routes
        self._token = token
        self._environ, self._home = environ, home
        self.spool = AppendOnlySpool(spool_dir, api_snapshots.FILE_PREFIX, api_snapshots.FILE_EXT, max_file_bytes)
        self.stats = PollStats()
        self._last: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()  # the loop thread and the shutdown poll may overlap

    def token(self) -> str | None:
        # Looked up on every poll: a token mounted or exported after the collector started is picked up.
        return self._token or find_token(self._environ, self._home)

    def poll_once(self) -> PollStats:
        """Snapshot every route once; failures are counted and logged, never raised."""
        with self._lock:
            self.url = self._address().rstrip("/")
            before = dataclasses.replace(self.stats)
            lines = []
            token = self.token()
            for route in self.routes:
                line = self._snapshot(route, token)
                if line is not None:
                    lines.append(line)
            self.stats.polls += 1
            if lines:
                data = b"".join(lines)
                try:
                    self.spool.append(data)
                    self.stats.bytes += len(data)
                    self.stats.snapshots += len(lines)
                except OSError as e:
                    self.stats.write_errors += 1
                    self.stats.last_error = f"writing {self.spool.dir}: {e}"
                    log.error("dashboard snapshots dropped: %s", self.stats.last_error)
                    for route in self.routes:  # not on disk: write them again next time
                        self._last.pop(route, None)
            return delta(before, self.stats)

    def _snapshot(self, route: str, token: str | None) -> bytes | None:
        time_ms = int(time.time() * 1000)
        try:
            status, body = self._get(route, token)
        except AuthenticationRequired as e:
            self.stats.auth_errors += 1
            self.stats.last_error = str(e)
            log.error("%s", e)
            return None
        except OSError as e:
            self.stats.request_errors += 1
            self.stats.last_error = f"GET {self.url}{route} failed: {e}"
            log.warning("%s (retrying in %.0fs)", self.stats.last_error, self.interval)
            return None
        if self._last.get(route) == (status, body):
            self.stats.unchanged += 1
            return None
        self._last[route] = (status, body)
        return api_snapshots.Snapshot.from_response(time_ms, route, status, body).encode()

    def _get(self, route: str, token: str | None) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"  # what Ray's own HTTP clients send
        req = urllib.request.Request(self.url + route, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                status, body = r.status, r.read(MAX_BODY_BYTES)
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read(MAX_BODY_BYTES)
            e.close()
        if status == 401:
            raise AuthenticationRequired(
                f"the Ray dashboard at {self.url} requires a token ({route} answered 401) and the collector "
                f"{'sent none' if not token else 'sent one it rejected'}: {TOKEN_HINT}"
            )
        if status == 403:
            raise AuthenticationRequired(
                f"the Ray dashboard at {self.url} rejected the collector's token ({route} answered 403): {TOKEN_HINT}"
            )
        return status, body

    def run(self, stop: threading.Event) -> None:
        """Poll on a fixed schedule until `stop` is set; the caller makes the final poll (`poll_once()`)."""
        next_at = time.monotonic()
        while not stop.is_set():
            self.poll_once()
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:
                next_at = now + self.interval - (now - next_at) % self.interval
            if stop.wait(next_at - now):
                break

    def close(self) -> None:
        self.spool.close()
