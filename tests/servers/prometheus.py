"""A REAL Prometheus (Debian's /usr/bin/prometheus 2.42) serving samples backfilled with promtool or pushed through
its remote-write receiver, for tests that compare our PromQL engine with Prometheus itself (the oracle).

`Prometheus.backfill` turns an OpenMetrics file into TSDB blocks with `promtool tsdb create-blocks-from
openmetrics` (timestamps in seconds, the file ends with `# EOF`, each series' samples in time order; HELP/TYPE may
repeat, one scrape block after another, as the collector's spool files have them). `start` runs the server on
those blocks: bound to 127.0.0.1 on a free port, no scrape targets (or the caller's configuration: the fidelity
harness has it scrape a live Ray through Ray's service-discovery file), retention long enough that old test data is
never deleted, everything under one temporary directory. Readiness is polled on `/-/ready` until a deadline.

OpenMetrics backfill cannot carry staleness markers, so the oracle loads its samples through the remote-write
receiver instead (`running_prometheus_remote_write`, `--web.enable-remote-write-receiver`): POST /api/v1/write of a
snappy-compressed prompb.WriteRequest, encoded here by hand (only labels and samples), where a marker is just the
float64 with STALE_NAN's bits. Samples go in global timestamp order, in batches, so every append is in order for
its series (the head refuses out-of-order samples); the 2-hour test data stays in the head, which answers queries
as soon as a write returns.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cramjam
import httpx
import numpy as np

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


class PrometheusError(RuntimeError):
    pass


def available() -> bool:
    return Path(PROMETHEUS).exists() and Path(PROMTOOL).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.client: httpx.Client | None = None
        self.auth: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backfill(self, openmetrics: Path, timeout: float = 300.0) -> None:
        """Write TSDB blocks for the samples of `openmetrics` into the data directory (before `start`)."""
        self.data.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(openmetrics), str(self.data)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise PrometheusError(f"promtool failed ({r.returncode}): {(r.stderr or r.stdout)[-2000:]}")

    def start(
        self,
        deadline_s: float = 60.0,
        remote_write: bool = False,
        config_text: str | None = None,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        """`config_text`: a prometheus.yml of the caller's (scrape configs), else one with no targets.
        `basic_auth`: (user, password) every request must carry (Prometheus's --web.config.file)."""
        config = self.workdir / "prometheus.yml"
        config.write_text(config_text or "global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        self.auth = basic_auth
        web = []
        if basic_auth:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt  # bcrypt, which Prometheus's web config requires (glibc's libxcrypt has it)

            hashed = crypt.crypt(basic_auth[1], crypt.mksalt(crypt.METHOD_BLOWFISH))
            (self.workdir / "web.yml").write_text(f"basic_auth_users:\n  {basic_auth[0]}: '{hashed}'\n")
            web = [f"--web.config.file={self.workdir / 'web.yml'}"]
        log = open(self.workdir / "prometheus.log", "wb")
        for _ in range(3):  # another process may take the port between probing and binding it
            self.port = _free_port()
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.data}",
                    "--storage.tsdb.retention.time=36500d",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--query.lookback-delta=5m",
                    "--log.level=warn",
                    *(["--web.enable-remote-write-receiver"] if remote_write else []),
                    *web,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
            if self._wait_ready(deadline_s):
                self.client = httpx.Client(base_url=self.url, timeout=60.0, auth=self.auth)
                return
            self.stop()
        raise PrometheusError(f"Prometheus did not become ready; log: {self._log_tail()}")

    def _wait_ready(self, deadline_s: float) -> bool:
        deadline = time.monotonic() + deadline_s
        delay = 0.05
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2.0, auth=self.auth).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        return False

    def _log_tail(self) -> str:
        try:
            return (self.workdir / "prometheus.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def _get(self, path: str, params: dict) -> dict:
        assert self.client is not None, "start() first"
        r = self.client.post(path, data=params)
        body = r.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def remote_write(
        self, series: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[np.ndarray, np.ndarray]], batch: int = 50_000
    ) -> None:
        """Push (name, sorted labels) -> (ts ms, float64 values) through the remote-write receiver, all series'
        samples in one global timestamp order, `batch` samples per request (values' bits are sent as they are)."""
        assert self.client is not None, "start() first"
        keys = list(series)
        heads = [_series_labels(name, labels) for name, labels in keys]
        which = np.concatenate([np.full(len(series[k][0]), i, np.int64) for i, k in enumerate(keys)])
        ts = np.concatenate([np.asarray(series[k][0], np.int64) for k in keys])
        values = np.concatenate([np.asarray(series[k][1], np.float64) for k in keys])
        order = np.lexsort((which, ts))  # by time; within a time, by series (stable within a series)
        for lo in range(0, len(order), batch):
            part = order[lo : lo + batch]
            by_series = part[np.argsort(which[part], kind="stable")]  # each series' samples stay in time order
            w = which[by_series]
            cuts = np.flatnonzero(np.diff(w)) + 1
            body = bytearray()
            for chunk in np.split(by_series, cuts):
                ts_msg = bytearray(heads[int(which[chunk[0]])])
                for t, v in zip(ts[chunk].tolist(), values[chunk].tolist()):
                    sample = b"\x09" + struct.pack("<d", v) + b"\x10" + _varint(t)  # value (double), timestamp
                    ts_msg += b"\x12" + _varint(len(sample)) + sample  # TimeSeries.samples = 2
                body += b"\x0a" + _varint(len(ts_msg)) + ts_msg  # WriteRequest.timeseries = 1
            r = self.client.post(
                "/api/v1/write",
                content=bytes(cramjam.snappy.compress_raw(bytes(body))),
                headers={
                    "Content-Encoding": "snappy",
                    "Content-Type": "application/x-protobuf",
                    "X-Prometheus-Remote-Write-Version": "0.1.0",
                },
            )
            if r.status_code // 100 != 2:
                raise PrometheusError(f"remote write refused ({r.status_code}): {r.text[:2000]}")

    def query(self, expr: str, time_s: float) -> dict:
        """The `data` object of /api/v1/query (raises PrometheusError with Prometheus's errorType and error)."""
        return self._get("/api/v1/query", {"query": expr, "time": _fmt(time_s)})

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float) -> dict:
        return self._get(
            "/api/v1/query_range", {"query": expr, "start": _fmt(start_s), "end": _fmt(end_s), "step": _fmt(step_s)}
        )

    def series(self, match: str, start_s: float, end_s: float) -> list[dict]:
        return self._get("/api/v1/series", {"match[]": match, "start": _fmt(start_s), "end": _fmt(end_s)})  # type: ignore[return-value]

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _series_labels(name: str, labels: tuple[tuple[str, str], ...]) -> bytes:
    """A TimeSeries' labels (field 1: Label{name = 1, value = 2}), `__name__` included, sorted by name."""
    out = bytearray()
    for k, v in sorted((("__name__", name), *labels)):
        kb, vb = k.encode(), v.encode()
        label = b"\x0a" + _varint(len(kb)) + kb + b"\x12" + _varint(len(vb)) + vb
        out += b"\x0a" + _varint(len(label)) + label
    return bytes(out)


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}"


@contextmanager
def running_prometheus(openmetrics: Path, workdir: Path) -> Iterator[Prometheus]:
    """Backfill `openmetrics`, start Prometheus on it, stop it and remove its data afterwards."""
    server = Prometheus(workdir)
    try:
        server.backfill(openmetrics)
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data, ignore_errors=True)


@contextmanager
def running_prometheus_remote_write(series, workdir: Path) -> Iterator[Prometheus]:
    """Start an empty Prometheus with its remote-write receiver, push `series` (see `Prometheus.remote_write`),
    stop it and remove its data afterwards."""
    server = Prometheus(workdir)
    try:
        server.data.mkdir(parents=True, exist_ok=True)
        server.start(remote_write=True)
        server.remote_write(series)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data, ignore_errors=True)


__all__ = ["Prometheus", "PrometheusError", "available", "running_prometheus", "running_prometheus_remote_write"]
