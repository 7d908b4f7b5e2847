"""Every key builder has a parser, and they round-trip."""

from __future__ import annotations

import pytest

from archive.layout import (
    DELETING_PREFIX,
    InvalidName,
    LogSegment,
    SessionRef,
    index_prefix,
    parse_deleting_key,
    parse_index_key,
    parse_node_key,
    parse_segment_key,
)

SESSION = "session_2026-11-25_19-58-10_578535_6555"
NODE = "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40"


def test_session_id_round_trip():
    ref = SessionRef("ml-team", "raycluster-a", SESSION)
    assert ref.id == f"ml-team~raycluster-a~{SESSION}"
    assert SessionRef.from_id(ref.id) == ref


def test_index_key_round_trip_and_prefixes():
    ref = SessionRef("ml-team", "raycluster-a", SESSION)
    assert parse_index_key(ref.index_key) == ref
    assert ref.index_key.startswith(index_prefix("ml-team", "raycluster-a"))
    assert index_prefix("ml-team", "raycluster-a").startswith(index_prefix("ml-team"))
    assert index_prefix("ml-team").startswith(index_prefix())
    assert not ref.manifest_key.startswith(index_prefix())  # listing the index never lists session data


def test_deleting_key_round_trip():
    ref = SessionRef("ml-team", "raycluster-a", SESSION)
    assert parse_deleting_key(ref.deleting_key) == ref
    assert ref.deleting_key.startswith(DELETING_PREFIX)
    assert not ref.deleting_key.startswith(index_prefix())  # a marker is never mistaken for a listed session
    with pytest.raises(InvalidName):
        parse_deleting_key(ref.index_key)
    with pytest.raises(InvalidName):
        parse_index_key(ref.deleting_key)


@pytest.mark.parametrize(
    "path",
    ["raylet.out", "events/event_GCS.log", "old/worker-1-ffffffff-7.err", "export_events/event_EXPORT_TASK_12.log.1"],
)
def test_segment_key_round_trip(path):
    node = SessionRef("default", "c", SESSION).node(NODE)
    seg = LogSegment(path, 3, 1024, 4096)
    key = node.segment_key(seg)
    assert key.startswith(node.logs_prefix)
    assert parse_segment_key(key, node) == seg
    assert parse_node_key(key, node.session) == NODE


def test_segment_keys_sort_in_byte_order():
    node = SessionRef("default", "c", SESSION).node(NODE)
    segs = [LogSegment("a.log", 0, 0, 9), LogSegment("a.log", 0, 9, 100), LogSegment("a.log", 1, 0, 5)]
    assert sorted(node.segment_key(s) for s in segs) == [node.segment_key(s) for s in segs]


@pytest.mark.parametrize(
    "bad",
    [
        lambda: SessionRef("Default", "c", SESSION),
        lambda: SessionRef("default", "c/../x", SESSION),
        lambda: SessionRef("default", "c~d", SESSION),
        lambda: SessionRef("default", "c", "../session_1"),
        lambda: SessionRef("default", "c", SESSION).node("not-hex"),
        lambda: LogSegment("../etc/passwd", 0, 0, 1),
        lambda: LogSegment("a//b", 0, 0, 1),
        lambda: LogSegment("/abs", 0, 0, 1),
        lambda: LogSegment("a.log", 0, 5, 5),
        lambda: SessionRef.from_id("only~two"),
    ],
)
def test_invalid_names_are_refused(bad):
    with pytest.raises(InvalidName):
        bad()


def test_foreign_keys_are_not_parsed():
    node = SessionRef("default", "c", SESSION).node(NODE)
    with pytest.raises(InvalidName):
        parse_segment_key(node.node_key, node)
    with pytest.raises(InvalidName):
        parse_index_key("v1/index/default/c.json")


def test_ray_events_segments_live_beside_logs():
    node = SessionRef("default", "c", SESSION).node(NODE)
    seg = LogSegment("spool-0001.jsonl", 0, 0, 10, source="ray_events")
    key = node.segment_key(seg)
    assert key.startswith(node.source_prefix("ray_events")) and not key.startswith(node.logs_prefix)
    assert parse_segment_key(key, node, "ray_events") == seg
    with pytest.raises(InvalidName):
        parse_segment_key(key, node)
    with pytest.raises(InvalidName):
        node.source_prefix("metrics/../logs")
