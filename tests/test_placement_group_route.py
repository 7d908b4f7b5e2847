"""Placement groups compacted and served as Ray 2.60's /api/v0/placement_groups: its shape, filters and limit,
an empty envelope without any, and a table always written."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from archive.compacted import PLACEMENT_GROUPS
from archive.storage.local import LocalStore
from historyserver.compaction.build import compact
from historyserver.queries.session_db import SessionDB
from tests.helpers import client_for
from tests.placement_group_events import (
    END_MS,
    KEPT_PG,
    NODE_HEX,
    PENDING_PG,
    REMOVED_PG,
    _archive,
    _lines,
    _list,
    _pg_events,
    _sample_events,
)


def _response(reference: Path, name: str) -> dict:
    return json.loads((reference / "dashboard_api" / name).read_text())["response"]


@pytest.fixture(scope="module")
def served(reference, tmp_path_factory):
    root = tmp_path_factory.mktemp("pgs")
    archive, ref = _archive(root, _lines(_sample_events(reference) + _pg_events()))
    with client_for(archive, root / "cache") as client:
        yield client, f"/sessions/{ref.id}"


# --- compaction and the route --------------------------------------------------------------------------------


def _same_shape(ours, ref, where: str = "record") -> None:
    """Same keys at every level, and the same JSON type wherever ours has a value (null: not known)."""
    if ours is None:
        return
    if isinstance(ref, dict) and ref:
        assert isinstance(ours, dict) and ours.keys() == ref.keys(), f"{where}: {sorted(ours)} != {sorted(ref)}"
        for k in ref:
            _same_shape(ours[k], ref[k], f"{where}.{k}")
    elif isinstance(ref, list):
        assert isinstance(ours, list), where
        for item in ours:
            _same_shape(item, ref[0], f"{where}[]")
    else:
        assert type(ours) is type(ref), f"{where}: {ours!r} is {type(ours).__name__}, Ray gives {type(ref).__name__}"


def test_route_answers_in_rays_shape(served, reference):
    client, base = served
    ref = _response(reference, "v0_pgs.json")
    body = _list(client, base, detail=1, limit=10000)
    assert body.keys() == ref.keys() and body["data"]["result"].keys() == ref["data"]["result"].keys()
    page = body["data"]["result"]
    assert (page["total"], page["num_after_truncation"], page["num_filtered"]) == (3, 3, 3)
    assert [g["placement_group_id"] for g in page["result"]] == sorted([REMOVED_PG, KEPT_PG, PENDING_PG])
    ref_record = ref["data"]["result"]["result"][0]
    for group in page["result"]:
        _same_shape(group, ref_record)
    assert all(g["topology_strategy"] is None and g["topology_assignments"] is None for g in page["result"])
    [kept] = [g for g in page["result"] if g["name"] == "pg_kept"]
    assert kept["state"] == "CREATED" and kept["bundles"][0]["node_id"] == NODE_HEX

    brief = _list(client, base, limit=10000)["data"]["result"]
    summary_keys = ["placement_group_id", "name", "creator_job_id", "state"]  # PlacementGroupState, detail=False
    assert all(list(g) == summary_keys for g in brief["result"])
    assert list(ref_record)[:4] == summary_keys
    assert brief["result"][0] == {k: page["result"][0][k] for k in summary_keys}


def test_route_filters_and_limit(served):
    client, base = served

    def page(**params):
        return _list(client, base, detail=1, **params)["data"]["result"]

    def where(key, value, predicate="="):
        return page(filter_keys=key, filter_predicates=predicate, filter_values=value)

    created = where("state", "created")  # strings compare case-insensitively, as Ray's do_filter
    assert (created["total"], created["num_filtered"], [g["name"] for g in created["result"]]) == (3, 1, ["pg_kept"])
    assert [g["placement_group_id"] for g in where("name", "PG_REMOVED")["result"]] == [REMOVED_PG]
    assert [g["name"] for g in where("is_detached", "true")["result"]] == ["pg_kept"]
    assert where("is_detached", "0")["num_filtered"] == 2
    assert where("state", "removed", "!=")["num_filtered"] == 2
    assert where("creator_job_id", "01000000")["num_filtered"] == 3
    assert where("placement_group_id", PENDING_PG)["result"][0]["state"] == "PENDING"
    limited = page(limit=1)
    assert (limited["total"], limited["num_filtered"], len(limited["result"])) == (3, 3, 1)
    bad = client.get(
        f"{base}/api/v0/placement_groups",
        params={"filter_keys": "bundles", "filter_predicates": "=", "filter_values": "x"},
    )
    assert bad.status_code == 400 and bad.json()["result"] is False and "bundles" in bad.json()["msg"]
    uneven = client.get(f"{base}/api/v0/placement_groups", params={"filter_keys": "state"})
    assert uneven.status_code == 400 and uneven.json()["data"] is None


def test_session_without_placement_groups_answers_an_empty_envelope(reference, tmp_path):
    archive, ref = _archive(tmp_path, _lines(_sample_events(reference)))
    with client_for(archive, tmp_path / "cache") as client:
        body = _list(client, f"/sessions/{ref.id}", detail=1, limit=10000)
    assert body == {
        "result": True,
        "msg": "",
        "data": {
            "result": {
                "total": 0,
                "num_after_truncation": 0,
                "num_filtered": 0,
                "result": [],
                "partial_failure_warning": "",
                "warnings": None,
            }
        },
    }


def test_compaction_always_writes_the_table(reference, tmp_path):
    archive, ref = _archive(tmp_path, _lines(_sample_events(reference)))
    info = compact(LocalStore(Path(archive)), ref, tmp_path / "empty", END_MS)
    assert info["counts"]["placement_groups"] == 0 and info["damage"]["bad_lines"] == 0
    assert pq.read_schema(tmp_path / "empty" / "placement_groups.parquet").equals(PLACEMENT_GROUPS.schema)

    archive, ref = _archive(tmp_path / "full", _lines(_sample_events(reference) + _pg_events()))
    info = compact(LocalStore(Path(archive)), ref, tmp_path / "full" / "tables", END_MS)
    assert info["counts"]["placement_groups"] == 3 and info["damage"]["bad_lines"] == 0
    db = SessionDB(tmp_path / "full" / "tables")
    assert db.query("SELECT placement_group_id, state, unfinished FROM placement_groups ORDER BY 1") == [
        (KEPT_PG, "CREATED", True),
        (REMOVED_PG, "REMOVED", False),
        (PENDING_PG, "PENDING", True),
    ]
    assert info["counts"]["nodes"] == 1  # the samples' other events are folded as before
