"""What SLS search needs from the collector's log sink, read off the wire by the SLS test server: every LogGroup's
tags (cluster, namespace, session, node, file, worker) and `__pack_id__` (one prefix per file, a counter per
LogGroup in file order, continuing across a restart), and each line's number and offset in its file."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from archive import sls_schema as schema
from collector.sinks.sls import SlsSink
from tests.servers.sls import running_sls
from tests.test_sls_sink import CPP, NODE, config, scan

WORKER = "worker-" + "b" * 56 + "-01000000-4242.out"
SESSION = "session_2026-11-25_19-58-12_123456_7000"


@pytest.fixture
def sls():
    with running_sls() as server:
        yield server


def groups(server) -> dict[str, list[tuple[int, list]]]:
    """file -> [(pack counter, items)] in arrival order: the items of one LogGroup share its tags."""
    out: dict[str, dict[int, list]] = defaultdict(dict)
    for x in server.items():
        prefix, counter = schema.parse_pack_id(x.tags[schema.TAG_PACK_ID])
        assert prefix == schema.pack_prefix(SESSION, NODE, x.tags["file"])
        out[x.tags["file"]].setdefault(counter, []).append(x)
    return {f: list(g.items()) for f, g in out.items()}


def line_numbers_hold(server, logs: Path) -> int:
    """Every item's `line`/`offset` point at the line it came from; returns how many were checked."""
    checked = 0
    for x in server.items():
        data = (logs / x.tags["file"]).read_bytes()
        offset, line = int(x.contents["offset"]), int(x.contents["line"])
        assert data.count(b"\n", 0, offset) + 1 == line, (x.tags["file"], offset, line)
        assert offset == 0 or data[offset - 1 : offset] == b"\n"
        checked += 1
    return checked


def run(server, tmp_path: Path, logs: Path) -> bool:
    sink = SlsSink(
        config(server, tmp_path, max_batch_items=150, cluster="c1", namespace="ns1", session=SESSION), NODE, logs
    )
    sink.offer(scan(logs))
    return sink.close(60)


def test_loggroups_carry_their_origin_and_pack_ids_in_file_order_across_a_restart(sls, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "raylet.out").write_bytes(b"".join(CPP % i for i in range(1000)))
    (logs / WORKER).write_bytes(b"".join(b":task_name:t%d\nline %d\n" % (i // 10, i) for i in range(400)))
    assert run(sls, tmp_path, logs)

    first = groups(sls)
    for file, got in first.items():
        tags = got[0][1][0].tags
        assert {k: tags[k] for k in ("cluster", "namespace", "session", "node_id", "file")} == {
            "cluster": "c1",
            "namespace": "ns1",
            "session": SESSION,
            "node_id": NODE,
            "file": file,
        }
        assert tags.get("worker_id") == ("b" * 56 if file == WORKER else None)
        assert [c for c, _ in got] == list(range(len(got))) and len(got) > 2  # +1 per LogGroup, in order
        assert all(len(items) <= 150 for _, items in got)
    assert [int(x.contents["line"]) for _, g in first["raylet.out"] for x in g] == list(range(1, 1001))
    worker_lines = [int(x.contents["line"]) for _, g in first[WORKER] for x in g]
    assert worker_lines == list(range(2, 801, 2))  # marker lines count, and carry no record
    assert line_numbers_hold(sls, logs) == 1400

    # a new collector on the same checkpoint: counters and line numbers continue where the first stopped
    counted = {f: len(g) for f, g in first.items()}
    with open(logs / "raylet.out", "ab") as fh:
        fh.write(b"".join(CPP % i for i in range(1000, 1400)))
    assert run(sls, tmp_path, logs)
    again = groups(sls)
    raylet = again["raylet.out"]
    assert [c for c, _ in raylet] == list(range(len(raylet))) and len(raylet) > counted["raylet.out"]
    assert [int(x.contents["line"]) for _, g in raylet for x in g] == list(range(1, 1401))
    assert len(again[WORKER]) == counted[WORKER]  # nothing new there, nothing resent
    assert line_numbers_hold(sls, logs) == 1800


def test_a_checkpoint_from_before_line_numbers_resumes_with_the_right_line(sls, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "raylet.out").write_bytes(b"".join(CPP % i for i in range(300)))
    assert run(sls, tmp_path, logs)
    ck_path = tmp_path / "sls-checkpoint.json"
    ck = json.loads(ck_path.read_text())
    assert (
        ck["version"] == 2
        and ck["files"][0]["line"] == 301
        and ck["files"][0]["pack"] == len(groups(sls)["raylet.out"])
    )
    ck["version"] = 1
    for f in ck["files"]:
        del f["line"], f["pack"]
    ck_path.write_text(json.dumps(ck))
    with open(logs / "raylet.out", "ab") as fh:
        fh.write(b"".join(CPP % i for i in range(300, 400)))
    assert run(sls, tmp_path, logs)
    assert [int(x.contents["line"]) for x in sls.items()] == list(range(1, 401))
    assert line_numbers_hold(sls, logs) == 400
