"""The local-directory backend: atomic puts, ordered listing, typed errors."""

from __future__ import annotations

import os

import pytest

from archive.errors import AccessDenied, BackendUnavailable, InvalidArchiveURL, NotFound
from archive.storage import open_store
from archive.storage.local import LocalStore


def test_put_get_list(tmp_path):
    store = open_store(str(tmp_path / "a"))
    store.check()
    for key in ["v1/x/b", "v1/x/a", "v1/y/c", "v1/xz"]:
        store.put(key, key.encode())
    assert store.get("v1/x/a") == b"v1/x/a"
    assert [o.key for o in store.list("v1/x/")] == ["v1/x/a", "v1/x/b"]
    assert [o.key for o in store.list("v1/x")] == ["v1/x/a", "v1/x/b", "v1/xz"]
    assert [o.size for o in store.list("v1/y/")] == [6]
    assert store.list_dirs("v1/") == ["x", "y"]
    assert store.list_dirs("v1/nothing/") == []


def test_put_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    store = LocalStore(tmp_path)
    store.put("k/v", b"one")
    store.put("k/v", b"two")
    assert store.get("k/v") == b"two"
    assert os.listdir(tmp_path / "k") == ["v"]


def test_missing_key_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        LocalStore(tmp_path).get("v1/none")


def test_keys_cannot_leave_the_root(tmp_path):
    with pytest.raises(ValueError):
        LocalStore(tmp_path).put("../escape", b"x")


def test_archive_path_that_is_a_file_is_refused_with_the_path(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(AccessDenied, match="not-a-dir"):
        LocalStore(blocker).check()


def test_unknown_scheme_is_refused():
    with pytest.raises(InvalidArchiveURL, match="gs://"):
        open_store("gs://bucket/x")


def test_file_url(tmp_path):
    store = open_store(f"file://{tmp_path}")
    store.put("a", b"1")
    assert (tmp_path / "a").read_bytes() == b"1"


def test_delete_many_removes_keys_and_the_folders_it_empties(tmp_path):
    store = LocalStore(tmp_path / "a")
    for key in ["v1/s/nodes/n/logs/x.gz", "v1/s/nodes/n/logs/y.gz", "v1/s/manifest.json", "v1/t/keep"]:
        store.put(key, b"1")
    store.delete_many(["v1/s/nodes/n/logs/x.gz", "v1/s/nodes/n/logs/y.gz", "v1/s/never-there"])
    assert [o.key for o in store.list("v1/")] == ["v1/s/manifest.json", "v1/t/keep"]
    assert store.list_dirs("v1/s/") == []  # nodes/n/logs/ emptied, so gone
    store.delete("v1/s/manifest.json")
    assert store.list_dirs("v1/") == ["t"]
    assert (tmp_path / "a").is_dir()  # the root stays, even when empty
    store.delete("v1/t/keep")
    assert list(store.list("")) == [] and (tmp_path / "a").is_dir()
    store.put("v1/s/again", b"2")  # a pruned folder is recreated by the next write
    assert store.get("v1/s/again") == b"2"


def test_delete_that_fails_is_a_typed_error_naming_the_key(tmp_path):
    store = LocalStore(tmp_path / "a")
    store.put("v1/s/k/inside", b"1")  # "v1/s/k" is a folder: it cannot be deleted as an object
    with pytest.raises(BackendUnavailable, match="v1/s/k"):
        store.delete_many(["v1/s/k"])
    assert store.get("v1/s/k/inside") == b"1"


def test_a_listing_snapshot_lists_each_prefix_once_and_hands_out_copies(tmp_path, monkeypatch):
    """A closed session's build reads its listing in several passes: the snapshot lists once, and what a caller
    does to its segment lists never reaches the next caller."""
    from archive import logs as archive_logs
    from archive.layout import LogSegment, SessionRef
    from archive.storage.snapshot import ListingSnapshot

    inner = LocalStore(tmp_path)
    node = SessionRef("ns", "c", "session_2026-01-01_00-00-00_000001_1").node("ab" * 28)
    for start in (0, 5):
        seg = LogSegment("worker.log", 1, start, start + 5)
        inner.put(node.segment_key(seg), archive_logs.encode(b"12345"))
    listings = []
    real_list = LocalStore.list
    monkeypatch.setattr(LocalStore, "list", lambda self, prefix: listings.append(prefix) or real_list(self, prefix))
    snap = ListingSnapshot(inner)
    first = archive_logs.list_segments(snap, node)
    first["worker.log"].pop()
    second = archive_logs.list_segments(snap, node)
    assert [s.end for s in second["worker.log"]] == [5, 10]
    assert len(listings) == 1
    assert snap.list_dirs(node.source_prefix("logs")) == inner.list_dirs(node.source_prefix("logs"))
    extra = LogSegment("worker.log", 1, 10, 15)
    snap.put(node.segment_key(extra), archive_logs.encode(b"12345"))  # writes go through, listings stay as taken
    assert inner.exists(node.segment_key(extra)) and len(archive_logs.list_segments(snap, node)["worker.log"]) == 2
    assert len(archive_logs.list_segments(inner, node)["worker.log"]) == 3
