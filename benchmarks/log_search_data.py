"""Ray-shaped logs for the log-search benchmark: one session's logs/ folder on many nodes, in Ray 2.60's real line
formats (ray-2.60/logs/log_line_samples.txt): C++ headers (raylet, gcs_server, python-core-worker-*), Python
logging headers (dashboard, monitor, ...), raw worker output with `:job_id:`/`:task_name:`/`:actor_name:` marker
lines, multi-line tracebacks (continuation lines). The same arguments always give the same bytes.

Planted for the queries (counted while written, returned by `write_session`): NEEDLE_TOKEN in a few worker-stderr
tracebacks (two lines each: Ray's RayTaskError line and the exception's), FATAL lines, the common word "worker".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from archive.layout import SessionRef
from archive.manifest import ENDED, NodeRecord, SessionManifest, end_marker
from archive.storage import Store
from benchmarks.synthetic_render import SegmentWriter

NEEDLE_TOKEN = "ShardChecksumMismatchError"
RAY_VERSION = "2.60.0"
DAY_START = 1_795_636_690  # 2026-11-25 ~17:58 UTC, as the reference run
FUNCS = ("preprocess", "train_shard", "evaluate", "load_parquet", "tokenize_batch", "write_results")
CPP_SOURCES = (
    "(raylet) node_manager.cc:{n}: Lease granted for worker {w} task {t}",
    "(raylet) worker_pool.cc:{n}: Started worker process with pid {p}, the token is {k}",
    "(raylet) local_object_manager.cc:{n}: Spilled {k} MiB, {n} objects, write throughput {n} MiB/s",
    "(raylet) node_manager.cc:{n}: Disconnecting client due to connection error with code 2: End of file",
    "(raylet) cluster_task_manager.cc:{n}: Queued task {t} for scheduling on node {node}",
)
CORE_SOURCES = (
    "core_worker.cc:{n}: Submitting task {t} to worker {w}",
    "task_receiver.cc:{n}: Actor creation task finished, task_id: {t}, actor_id: {a}",
    "normal_task_submitter.cc:{n}: Lease request for {t} granted by raylet at 10.0.{k}.{n}",
    "core_worker.cc:{n}: Object {o} spilled to local disk, size {k} bytes",
    "reference_counter.cc:{n}: Deleting reference to object {o} owned by worker {w}",
)
PY_SOURCES = (
    "INFO head.py:{n} -- Dashboard head grpc address: 10.0.0.{k}:{p}",
    "INFO utils.py:{n} -- Get all modules by type: DashboardHeadModule",
    "WARNING monitor.py:{n} -- Pending resource demand {{'CPU': {k}.0}} on node {node}",
    "INFO job_manager.py:{n} -- Job raysubmit_{k} is running on worker {w}",
    "INFO event_agent.py:{n} -- Report {k} events to the dashboard in {n} ms",
)
OUT_LINES = (
    "processing batch {n} of {k} for shard {k}",
    "loss={n}.{k} step={n} lr=0.000{k}",
    "worker {w8} finished chunk {n} in {k} ms",
    "wrote {k} rows to s3://bucket/run-{k}/part-{n}.parquet",
)


@dataclass
class Planted:
    needles: int = 0  # lines holding NEEDLE_TOKEN
    fatal: int = 0  # lines of level FATAL
    bytes: int = 0
    lines: int = 0
    files: int = 0
    needle_sites: list[tuple[str, str, int]] = field(default_factory=list)  # (node, file, 1-based line)


def _hex(rng: random.Random, n: int) -> str:
    return "%0*x" % (n, rng.getrandbits(4 * n))


class _Node:
    def __init__(self, seed: int, index: int, workers: int) -> None:
        self.rng = random.Random(seed * 1000 + index)
        self.id = _hex(self.rng, 56)
        self.index = index
        self.workers = [(_hex(self.rng, 56), 7000 + 37 * i + index) for i in range(workers)]
        self.tasks = [_hex(self.rng, 48) for _ in range(400)]
        self.objects = [_hex(self.rng, 56) for _ in range(400)]
        self.actors = [_hex(self.rng, 32) for _ in range(40)]

    def fill(self, template: str) -> str:
        r = self.rng
        w = r.choice(self.workers)[0]
        return template.format(
            n=r.randrange(1, 2000),
            k=r.randrange(1, 300),
            p=r.randrange(7000, 9000),
            t=r.choice(self.tasks),
            w=w,
            w8=w[:8],
            o=r.choice(self.objects),
            a=r.choice(self.actors),
            node=self.id,
        )


def _stamp(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + ",%03d" % int((t % 1) * 1000)


def _cpp_lines(node: _Node, sources: tuple[str, ...], pid: int, planted: Planted) -> Callable[[float], str]:
    def line(t: float) -> str:
        r = node.rng
        level = "I" if r.random() < 0.9 else ("W" if r.random() < 0.8 else "E")
        if r.random() < 0.0002:
            planted.fatal += 1
            return f"[{_stamp(t)} F {pid} {pid + 9}] {node.fill(r.choice(sources))} check failed\n*** StackTrace Information ***\n    ray::core::CoreWorker::Exit()\n"
        return f"[{_stamp(t)} {level} {pid} {pid + 9}] {node.fill(r.choice(sources))}\n"

    return line


def _py_lines(node: _Node) -> Callable[[float], str]:
    return lambda t: f"{_stamp(t)}\t{node.fill(node.rng.choice(PY_SOURCES))}\n"


def _files(
    node: _Node, jobs: int, planted: Planted, needle_rate: float
) -> dict[str, tuple[float, Callable[[float], str]]]:
    """path -> (share of the node's bytes, line maker)."""
    files: dict[str, tuple[float, Callable[[float], str]]] = {
        "raylet.out": (6.0, _cpp_lines(node, CPP_SOURCES, 7013, planted)),
        "dashboard_agent.log": (1.0, _py_lines(node)),
    }
    if node.index == 0:
        files["gcs_server.out"] = (4.0, _cpp_lines(node, CPP_SOURCES, 6563, planted))
        files["dashboard.log"] = (1.0, _py_lines(node))
        files["monitor.log"] = (1.0, _py_lines(node))
    for n, (wid, pid) in enumerate(node.workers):
        job = "%02x000000" % (1 + n % jobs)
        files[f"python-core-worker-{wid}_{pid}.log"] = (1.0, _cpp_lines(node, CORE_SOURCES, pid, planted))
        files[f"worker-{wid}-{job}-{pid}.out"] = (0.8, _worker_out(node))
        files[f"worker-{wid}-{job}-{pid}.err"] = (0.2, _worker_err(node, planted, needle_rate))
    return files


def _worker_out(node: _Node) -> Callable[[float], str]:
    def line(t: float) -> str:
        r = node.rng
        if r.random() < 0.02:
            return f":task_name:{r.choice(FUNCS)}\n"
        return node.fill(r.choice(OUT_LINES)) + "\n"

    return line


def _worker_err(node: _Node, planted: Planted, needle_rate: float) -> Callable[[float], str]:
    def line(t: float) -> str:
        r = node.rng
        x = r.random()
        if x < 0.02:
            return f":task_name:{r.choice(FUNCS)}\n"
        if r.random() < needle_rate:
            planted.needles += 1
            fn = r.choice(FUNCS)
            return (
                f"ray.exceptions.RayTaskError({NEEDLE_TOKEN}): ray::{fn}() (pid={r.randrange(7000, 9000)}, "
                f"ip=10.0.0.{node.index + 2})\n"
                "Traceback (most recent call last):\n"
                f'  File "/home/ray/app/train.py", line {r.randrange(10, 400)}, in {fn}\n'
                "    verify(shard)\n"
                f"{NEEDLE_TOKEN}: shard {r.randrange(1000)} checksum {_hex(r, 8)} != {_hex(r, 8)}\n"
            )
        if x < 0.2:
            return (
                "Traceback (most recent call last):\n"
                f'  File "/home/ray/app/train.py", line {r.randrange(10, 400)}, in {r.choice(FUNCS)}\n'
                f"ValueError: batch {r.randrange(10000)} has {r.randrange(100)} rows with NaN in worker {node.workers[0][0][:8]}\n"
            )
        return f"(pid={r.randrange(7000, 9000)}) warning: retrying fetch of object {r.choice(node.objects)}\n"

    return line


def node_streams(
    seed: int, index: int, workers: int, jobs: int, node_bytes: int, planted: Planted, needle_rate: float
) -> Iterator[tuple[str, str, Iterator[str]]]:
    """(node id, path, chunks of text) of one node's files, each file given its share of node_bytes."""
    node = _Node(seed, index, workers)
    files = _files(node, jobs, planted, needle_rate)
    weight = sum(share for share, _ in files.values())
    for path, (share, make) in files.items():
        yield node.id, path, _text(make, int(node_bytes * share / weight), DAY_START + index)


def _text(make: Callable[[float], str], size: int, start: float) -> Iterator[str]:
    written, t, buf = 0, start, []
    while written < size:
        s = make(t)
        t += 0.0037
        buf.append(s)
        written += len(s)
        if len(buf) >= 4096:
            yield "".join(buf)
            buf = []
    if buf:
        yield "".join(buf)


def write_session(
    store: Store,
    ref: SessionRef,
    total_bytes: int,
    seed: int = 1,
    nodes: int = 8,
    workers: int = 16,
    jobs: int = 4,
    copy_to: Path | None = None,
    segment_bytes: int = 4 << 20,
    needle_rate: float = 0.00003,
) -> Planted:
    """Write the session's logs (and node records, manifest, end marker) into store; the same bytes under copy_to
    (node/file) when given, for grep."""
    planted = Planted()
    end_ms = (DAY_START + 3600) * 1000
    records = []
    for index in range(nodes):
        node_id = None
        for node_id, path, chunks in node_streams(
            seed, index, workers, jobs, total_bytes // nodes, planted, needle_rate
        ):
            writer = SegmentWriter(store, ref.node(node_id), path, segment_bytes)
            plain = None
            if copy_to is not None:
                (copy_to / node_id).mkdir(parents=True, exist_ok=True)
                plain = open(copy_to / node_id / path, "wb")
            line_no = 0
            for chunk in chunks:
                data = chunk.encode()
                if NEEDLE_TOKEN.encode() in data:
                    for i, text in enumerate(chunk.split("\n")):
                        if NEEDLE_TOKEN in text:
                            planted.needle_sites.append((node_id, path, line_no + i + 1))
                line_no += data.count(b"\n")
                writer.write(data)
                if plain:
                    plain.write(data)
            planted.bytes += writer.close()
            planted.lines += line_no
            planted.files += 1
            if plain:
                plain.close()
        assert node_id is not None
        rec = NodeRecord(
            node_id=node_id,
            is_head=index == 0,
            ip=f"10.0.0.{index + 2}",
            hostname=f"{ref.cluster}-{index}",
            session_dir=f"/tmp/ray/{ref.session}",
            ray_version=RAY_VERSION,
            start_ms=DAY_START * 1000,
            end_ms=end_ms,
        )
        records.append(rec)
        store.put(ref.node(node_id).node_key, rec.to_json())
        store.put(ref.node(node_id).ended_key, end_marker(end_ms, "signal:SIGTERM"))
    manifest = SessionManifest(
        namespace=ref.namespace,
        cluster=ref.cluster,
        session_name=ref.session,
        ray_version=RAY_VERSION,
        start_ms=DAY_START * 1000,
        end_ms=end_ms,
        status=ENDED,
        ended_by="signal:SIGTERM",
        nodes=records[:1],
    )
    store.put(ref.manifest_key, manifest.to_json())
    store.put(ref.index_key, manifest.to_json())
    store.put(ref.ended_key, end_marker(end_ms, "signal:SIGTERM"))
    return planted
