"""Ray's log API (/api/v0/logs, /api/v0/logs/file) answered from the archive of a real Ray cluster, and the
pieces under it (ranged reads, tailing, globbing, ANSI filtering) checked against Ray's own behaviour."""

from __future__ import annotations

import io
import random
import re
import shutil
from pathlib import Path

import pytest

from archive import logs as archive_logs
from archive.layout import LogSegment, SessionRef
from archive.storage import open_store
from historyserver.errors import BadRequest
from historyserver.queries import logs as q
from tests.helpers import client_for

NODE = "ab" * 28
REF = SessionRef("default", "unit", "session_2026-01-01_00-00-00_000000_1")


def last_lines(data: bytes, n: int) -> bytes:
    """The last n lines, a final line without its newline counting as one (Ray's rule)."""
    return b"".join(re.findall(rb"[^\n]*\n|[^\n]+$", data)[-n:])


def put_file(store, path: str, data: bytes, cuts: list[int], epoch: int = 0) -> list[LogSegment]:
    node = REF.node(NODE)
    bounds = [0, *cuts, len(data)]
    segs = [LogSegment(path, epoch, a, b) for a, b in zip(bounds, bounds[1:]) if a < b]
    for s in segs:
        store.put(node.segment_key(s), archive_logs.encode(data[s.start : s.end]))
    return segs


class CountingStore:
    """A local store that counts the objects read, to prove that ranged reads fetch only what they need."""

    def __init__(self, store) -> None:
        self.inner, self.gets = store, []
        self.url = store.url

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return self.inner.get(key)

    def list(self, prefix: str):
        return self.inner.list(prefix)

    def memo(self, key, compute):
        return self.inner.memo(key, compute)


# --- units on a local store --------------------------------------------------------------------------------
def test_read_range_reads_only_overlapping_segments(tmp_path):
    store = open_store(str(tmp_path / "archive"))
    data = bytes(random.Random(1).randrange(256) for _ in range(1000))
    put_file(store, "raylet.out", data[:100], [], epoch=0)  # an older generation, never read
    segs = put_file(store, "raylet.out", data, [100, 250, 600, 900], epoch=1)
    counting = CountingStore(store)
    node = REF.node(NODE)
    for start, end in [(0, 1000), (0, 1), (99, 101), (250, 600), (300, 950), (999, 1000), (500, 5000)]:
        counting.gets.clear()
        assert archive_logs.read_range(counting, node, "raylet.out", start, end) == data[start:end]
        wanted = [s for s in segs if s.start < end and s.end > start]
        assert counting.gets == [node.segment_key(s) for s in wanted], (start, end)
    assert archive_logs.read_range(store, node, "raylet.out", 400, 400) == b""
    with pytest.raises(archive_logs.NotFound):
        archive_logs.read_range(store, node, "nosuch.out", 0, 10)


def test_read_range_stops_at_a_gap(tmp_path):
    store = open_store(str(tmp_path / "archive"))
    node = REF.node(NODE)
    data = b"0123456789" * 10
    segs = put_file(store, "gcs_server.out", data, [30, 60])
    store_root = Path(tmp_path / "archive")
    (store_root / node.segment_key(segs[1])).unlink()
    assert archive_logs.read_range(store, node, "gcs_server.out", 0, 100) == data[:30]
    log = q.ArchivedLog(store, node, "gcs_server.out")
    assert log.incomplete and log.size == 30


def test_tail_matches_rays_agent(tmp_path):
    """Tailing from the archive, segment by segment, finds the very offsets Ray's log agent finds in the file."""
    from ray.dashboard.modules.log.log_agent import find_start_offset_last_n_lines_from_offset as ray_tail

    rnd = random.Random(7)
    store = open_store(str(tmp_path / "archive"))
    for case in range(40):
        lines = [b"x" * rnd.choice([0, 1, 5, 80]) for _ in range(rnd.randrange(0, 30))]
        data = b"\n".join(lines) + rnd.choice([b"", b"\n"])
        if not data:
            continue
        path = f"f{case}.log"
        put_file(store, path, data, sorted(rnd.sample(range(1, len(data)), min(4, len(data) - 1))))
        log = q.ArchivedLog(store, REF.node(NODE), path)
        for end in {len(data), rnd.randrange(1, len(data) + 1)}:
            for n in (1, 2, 3, 7, 50):
                floor = rnd.choice([0, 0, rnd.randrange(0, end)])
                expected = max(ray_tail(io.BytesIO(data), end, n, block_size=rnd.choice([3, 16, 65536])), floor)
                assert log.tail_start(end, n, floor) == expected, (case, end, n, floor)


def test_tail_reads_from_the_end_only(tmp_path):
    store = open_store(str(tmp_path / "archive"))
    data = b"".join(b"line %d\n" % i for i in range(10000))
    segs = put_file(store, "big.log", data, list(range(4096, len(data), 4096)))
    counting = CountingStore(store)
    log = q.ArchivedLog(counting, REF.node(NODE), "big.log")
    start = log.tail_start(len(data), 20)
    assert data[start:] == last_lines(data, 20)
    assert len(counting.gets) <= 2 < len(segs)


def test_glob_is_pathlib_glob(tmp_path):
    files = [
        "raylet.out",
        "worker-aa-01000000-12.out",
        "old/worker-bb-01000000-13.err",
        "events/event_GCS.log",
        "export_events/event_EXPORT_TASK_1.log",
        "deep/a/b/c.out",
        ".hidden.log",
    ]
    root = tmp_path / "logs"
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("x")
    for pattern in ["*", "*worker*", "old/*", "**/*.out", "**", "*/*", "events/*GCS*", "deep/**/*.out", "nothing*"]:
        expected = sorted(
            str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.glob(pattern) if p != root
        )
        assert q.glob_entries(files, pattern) == expected, pattern
    for bad in ["../*", "/etc/*", ""]:
        with pytest.raises(BadRequest):
            q.glob_entries(files, bad)


def test_ansi_codes_are_stripped_across_chunks():
    text = b"\x1b[31mred\x1b[0m plain \x1b[1;32mbold green\x1b[0m\n"
    for cut in range(len(text) + 1):
        assert b"".join(q.strip_ansi(iter([text[:cut], text[cut:]]))) == b"red plain bold green\n"
    assert b"".join(q.strip_ansi(iter([b"keep \x1b[Kthis"]))) == b"keep \x1b[Kthis"  # Ray strips colours only


def test_categories_follow_ray():
    got = q.categorize(
        [
            "worker-a-01-1.out",
            "worker-a-01-1.err",
            "python-core-worker-a_1.log",
            "python-core-driver-01_2.log",
            "raylet.out",
            "gcs_server.err",
            "log_monitor.log",
            "monitor.log",
            "dashboard_agent.log",
            "dashboard.log",
            "events/",
            "old/worker-b-01-3.out",
        ]
    )
    assert got == {
        "worker_out": ["worker-a-01-1.out", "old/worker-b-01-3.out"],
        "worker_err": ["worker-a-01-1.err"],
        "core_worker": ["python-core-worker-a_1.log"],
        "driver": ["python-core-driver-01_2.log"],
        "raylet": ["raylet.out"],
        "gcs_server": ["gcs_server.err"],
        "internal": ["log_monitor.log", "events/"],
        "autoscaler": ["monitor.log"],
        "agent": ["dashboard_agent.log"],
        "dashboard": ["dashboard.log"],
    }


# --- the routes, on the archive of a real Ray cluster ---------------------------------------------------------
@pytest.fixture(scope="module")
def served(finished_cluster, tmp_path_factory):
    with client_for(finished_cluster.local_archive, tmp_path_factory.mktemp("cache")) as client:
        base = f"/sessions/{finished_cluster.ref.id}/api/v0/logs"
        [node_id] = open_store(finished_cluster.local_archive).list_dirs(finished_cluster.ref.nodes_prefix)
        yield client, base, node_id, finished_cluster.session_dir / "logs"


def _file(client, base, **params):
    return client.get(f"{base}/file", params=params)


def test_listing_groups_files_as_ray_does(served):
    client, base, node_id, logs = served
    body = client.get(base, params={"node_id": node_id}).json()
    assert body["result"] is True and body["msg"] == ""
    groups = body["data"]["result"]
    assert "raylet.out" in groups["raylet"] and "gcs_server.out" in groups["gcs_server"]
    assert groups["worker_out"] and all(
        re.match(r"worker-[0-9a-f]+-[0-9a-f]+-\d+\.out$", f) for f in groups["worker_out"]
    )
    assert "events/" in groups["internal"] and "export_events/" in groups["internal"]

    # The same entries Ray's agent lists (Path.glob over logs/), empty files included, less folders without a
    # file anywhere below them (the archive holds files; a folder is known only as the parent of one).
    def shipped(p: Path) -> bool:
        return any(f.is_file() for f in [p, *p.rglob("*")])

    for glob in ["*", "*worker*", "events/*"]:
        listed = sorted(
            f
            for files in client.get(base, params={"node_id": node_id, "glob": glob}).json()["data"]["result"].values()
            for f in files
        )
        on_disk = sorted(str(p.relative_to(logs)) + ("/" if p.is_dir() else "") for p in logs.glob(glob) if shipped(p))
        assert listed == on_disk, glob
    only_workers = client.get(base, params={"node_id": node_id, "glob": "*worker*"}).json()["data"]["result"]
    assert set(only_workers) <= {"worker_out", "worker_err", "core_worker"}
    # Ray leaves some files empty (raylet.err, monitor.out, quiet workers' .out/.err): listed, and served empty.
    empty = sorted(str(p.relative_to(logs)) for p in logs.rglob("*") if p.is_file() and not p.stat().st_size)
    assert "raylet.err" in empty and any(re.match(r"worker-.*\.(out|err)$", p) for p in empty), empty
    listed = {
        f
        for files in client.get(base, params={"node_id": node_id, "glob": "**/*"}).json()["data"]["result"].values()
        for f in files
    }
    for path in empty:
        assert path in listed, path
        served_file = _file(client, base, node_id=node_id, filename=path, lines=-1)
        assert served_file.status_code == 200 and served_file.content == b"", path


def test_listing_needs_a_known_node(served):
    client, base, node_id, _ = served
    r = client.get(base)
    assert r.status_code == 400 and r.json() == {
        "result": False,
        "data": {"result": None},
        "msg": "Both node id and node ip are not provided. Please provide at least one of them.",
    }
    [node] = client.get(base.replace("/logs", "/nodes")).json()["data"]["result"]["result"]
    by_ip = client.get(base, params={"node_ip": node["node_ip"]}).json()
    assert by_ip == client.get(base, params={"node_id": node_id}).json()
    assert client.get(base, params={"node_ip": "192.0.2.250"}).status_code == 404
    r = client.get(base, params={"node_id": "cd" * 28})
    assert r.status_code == 404 and r.json()["result"] is False and r.json()["data"] is None
    r = client.get(base, params={"node_id": node_id, "glob": "../*"})
    assert r.status_code == 400 and "'..'" in r.json()["msg"]


def test_file_by_node_and_filename(served):
    client, base, node_id, logs = served
    source = (logs / "raylet.out").read_bytes()
    whole = _file(client, base, node_id=node_id, filename="raylet.out", lines=-1)
    assert whole.status_code == 200 and whole.content == source
    assert whole.headers["content-type"] == "text/plain"
    assert whole.headers["content-disposition"] == 'attachment; filename="file.txt"'
    assert "x-rayhistory-incomplete" not in whole.headers
    assert _file(client, base, node_id=node_id, filename="raylet.out", lines=20).content == last_lines(source, 20)
    assert _file(client, base, node_id=node_id, filename="raylet.out").content == last_lines(source, 1000)
    # A file in a subfolder, with the UI's parameters (interval and timeout are accepted and ignored).
    events = sorted(p for p in (logs / "events").iterdir() if p.stat().st_size)
    assert events
    r = _file(
        client,
        base,
        node_id=node_id,
        filename=f"events/{events[0].name}",
        lines=50000,
        filter_ansi_code="true",
        interval=1,
        timeout=5,
    )
    assert r.status_code == 200 and r.content == last_lines(events[0].read_bytes(), 50000)


def test_file_by_task_is_its_printed_slice(served):
    client, base, node_id, logs = served
    tasks = client.get(
        base.replace("/logs", "/tasks"),
        params={"detail": 1, "limit": 100, "filter_keys": "name", "filter_predicates": "=", "filter_values": "square"},
    ).json()["data"]["result"]["result"]
    assert len(tasks) == 8
    printed = set()
    for t in tasks:
        r = _file(client, base, task_id=t["task_id"], suffix="out", lines=50000, filter_ansi_code="true")
        assert r.status_code == 200 and re.fullmatch(rb"square\(\d\)\n", r.content), r.content
        info = t["task_log_info"]
        rel = info["stdout_file"].split("/logs/", 1)[1]
        source = (logs / rel).read_bytes() if (logs / rel).exists() else (logs / "old" / Path(rel).name).read_bytes()
        # The export events hold no start offset: the slice ends where Ray recorded it and holds the task's output
        # only, not the worker's marker lines before it (as Ray serves it live).
        assert source[: info["stdout_end"]].endswith(b":task_name:square\n" + r.content)
        printed.add(r.content)
        assert _file(client, base, task_id=t["task_id"], suffix="err", lines=-1).content == b""
    assert printed == {b"square(%d)\n" % i for i in range(8)}
    r = _file(client, base, task_id=tasks[0]["task_id"], suffix="out", attempt_number=3)
    assert r.status_code == 404 and "(3)" in r.json()["msg"]


def test_file_by_actor_and_by_pid(served):
    client, base, node_id, logs = served
    actors = client.get(base.replace("/api/v0/logs", "/logical/actors")).json()["data"]["actors"]
    [counter] = [a for a in actors.values() if a["name"] == "demo_counter"]
    r = _file(client, base, actor_id=counter["actorId"], lines=-1)
    assert r.status_code == 200
    assert [line for line in r.text.splitlines() if line.startswith("counter at")] == [
        "counter at 1",
        "counter at 2",
        "counter at 3",
    ]
    assert "counter at 1" not in _file(client, base, actor_id=counter["actorId"], suffix="err", lines=-1).text
    by_pid = _file(client, base, node_id=node_id, pid=counter["pid"], lines=-1)
    # A dead cluster has nothing to follow: /stream answers like /file.
    stream = client.get(
        f"{base}/stream", params={"node_id": node_id, "pid": counter["pid"], "lines": -1, "interval": 0.5}
    )
    assert stream.content == by_pid.content
    assert by_pid.status_code == 200 and by_pid.content == r.content


def test_bad_and_unknown_requests(served):
    client, base, node_id, _ = served
    for name in ["../raylet.out", "events/../../x", "/etc/passwd", "old\\raylet.out", "raylet.out\x00"]:
        r = _file(client, base, node_id=node_id, filename=name)
        assert r.status_code == 400 and r.json()["result"] is False and r.json()["msg"], name
    for params in [
        {"node_id": node_id, "filename": "nosuch.log"},
        {"node_id": "cd" * 28, "filename": "raylet.out"},
        {"task_id": "ff" * 24, "suffix": "out"},
        {"actor_id": "ff" * 16},
        {"node_id": node_id, "pid": 999999999},
    ]:
        r = _file(client, base, **params)
        assert r.status_code == 404 and r.json()["result"] is False and r.json()["data"] is None, params
    assert _file(client, base, node_id=node_id).status_code == 400  # nothing names a file
    assert _file(client, base, node_id=node_id, filename="raylet.out", suffix="log").status_code == 400


def test_a_gap_serves_what_is_contiguous(finished_cluster, tmp_path):
    """A file whose middle segment is lost: the bytes before the gap, flagged as incomplete."""
    archive = tmp_path / "archive"
    shutil.copytree(finished_cluster.local_archive, archive)
    store = open_store(str(archive))
    [node_id] = store.list_dirs(finished_cluster.ref.nodes_prefix)
    node = finished_cluster.ref.node(node_id)
    path, segs = max(archive_logs.list_segments(store, node).items(), key=lambda kv: len(kv[1]))
    # The demo workload's collector cuts its longest file into several segments; fewer would test no gap.
    assert len(segs) >= 3, f"no archived file has 3 segments (largest: {path}, {len(segs)})"
    (archive / node.segment_key(segs[1])).unlink()
    source = (finished_cluster.session_dir / "logs" / path).read_bytes()
    with client_for(str(archive), tmp_path / "cache") as client:
        r = client.get(
            f"/sessions/{finished_cluster.ref.id}/api/v0/logs/file",
            params={"node_id": node_id, "filename": path, "lines": -1},
        )
    assert r.status_code == 200 and r.headers["x-rayhistory-incomplete"] == "true"
    assert r.content == source[: segs[0].end]


def test_s3_archive_serves_the_same_file(finished_cluster, tmp_path, monkeypatch):
    for k, v in finished_cluster.s3_env.items():
        monkeypatch.setenv(k, v)
    [node_id] = open_store(finished_cluster.local_archive).list_dirs(finished_cluster.ref.nodes_prefix)
    source = (finished_cluster.session_dir / "logs" / "gcs_server.out").read_bytes()
    with client_for(finished_cluster.s3_archive, tmp_path / "cache") as client:
        r = client.get(
            f"/sessions/{finished_cluster.ref.id}/api/v0/logs/file",
            params={"node_id": node_id, "filename": "gcs_server.out", "lines": 20},
        )
    assert r.status_code == 200 and r.content == last_lines(source, 20)
