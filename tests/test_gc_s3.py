"""`rayhistory gc` on the real SeaweedFS S3 server: batches of DeleteObjects, refusals, a run cut short."""

from __future__ import annotations

import pytest

from archive.errors import BackendUnavailable
from archive.manifest import RUNNING
from archive.storage import open_store
from archive.storage.s3 import S3Store
from historyserver.catalog import Catalog
from rayhistory.cli import main
from tests.retention_archive import add_session, snapshot
from tests.servers.seaweedfs import SeaweedFS


def _raw_keys(seaweedfs: SeaweedFS, archive: str) -> set[str]:
    prefix = archive.split("/", 3)[3] + "/"
    keys, token = set(), None
    while True:
        page = seaweedfs.client().list_objects_v2(
            Bucket=seaweedfs.bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {})
        )
        keys |= {o["Key"][len(prefix) :] for o in page.get("Contents", [])}
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def test_gc_on_s3(s3_archive: str, seaweedfs: SeaweedFS, capsys) -> None:
    store = open_store(s3_archive)
    big = add_session(store, "ns", "a", ended_days_ago=50, segments=520)  # 1,040 segments: two DeleteObjects
    unfinished = add_session(store, "ns", "a", status=RUNNING, silent_days_ago=40)
    newest_old = add_session(store, "ns", "b", ended_days_ago=45)
    running = add_session(store, "ns", "b", status=RUNNING, silent_days_ago=0, started_days_ago=60)
    young = add_session(store, "ns", "a", ended_days_ago=2)
    before = snapshot(store)

    assert main(["gc", "--archive", s3_archive, "--older-than", "30d", "--keep-last", "2", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert snapshot(store) == before
    assert [line.split()[2] for line in dry.splitlines() if line.startswith("would delete")] == [big.ref.id]

    assert main(["gc", "--archive", s3_archive, "--older-than", "30d", "--keep-last", "1"]) == 0
    out = capsys.readouterr().out
    deleted = [line.split()[1] for line in out.splitlines() if line.startswith("deleted")]
    assert deleted == [big.ref.id, unfinished.ref.id]
    assert f"{len(big.keys)} objects" in out
    assert any(line.startswith("refuse") and running.ref.id in line for line in out.splitlines())
    assert any(line.startswith("keep") and newest_old.ref.id in line for line in out.splitlines())  # started last
    assert _raw_keys(seaweedfs, s3_archive) == {*young.keys, *running.keys, *newest_old.keys}


class FailingS3Store(S3Store):
    """The real S3 store, whose delete_many() fails after a given number of calls: a gc cut short."""

    def __init__(self, url: str, fail_after: int) -> None:
        super().__init__(url)
        self.calls, self.fail_after = 0, fail_after

    def delete_many(self, keys: list[str]) -> None:
        self.calls += 1
        if self.calls > self.fail_after:
            raise BackendUnavailable(self.url, "injected failure")
        super().delete_many(keys)


@pytest.mark.parametrize("fail_after", [1, 2])
def test_an_interrupted_gc_on_s3_is_finished_by_the_next(
    s3_archive: str, seaweedfs: SeaweedFS, capsys, monkeypatch: pytest.MonkeyPatch, fail_after: int
) -> None:
    store = open_store(s3_archive)
    old = add_session(store, ended_days_ago=40, segments=600)
    young = add_session(store, ended_days_ago=1)
    failing = FailingS3Store(s3_archive, fail_after)
    monkeypatch.setattr("historyserver.retention.cli.open_store", lambda url: failing)
    assert main(["gc", "--archive", s3_archive, "--older-than", "30d"]) == 1
    assert "injected failure" in capsys.readouterr().err
    assert {e.ref for e in Catalog(store, ttl=0).sessions()} == {young.ref}  # unlisted, though data remains
    left = _raw_keys(seaweedfs, s3_archive)
    assert old.ref.deleting_key in left and any(k.startswith(old.ref.prefix) for k in left)
    monkeypatch.setattr("historyserver.retention.cli.open_store", open_store)

    assert main(["gc", "--archive", s3_archive, "--older-than", "30d"]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("deleted")]
    assert old.ref.id in line and "an interrupted gc" in line
    assert _raw_keys(seaweedfs, s3_archive) == set(young.keys)


def test_gc_with_read_only_credentials_exits_2_and_deletes_nothing(
    s3_archive: str, seaweedfs: SeaweedFS, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(s3_archive)
    made = add_session(store, ended_days_ago=40)
    for name, value in seaweedfs.env(read_only=True).items():
        monkeypatch.setenv(name, value)
    assert main(["gc", "--archive", s3_archive, "--older-than", "30d"]) == 2
    err = capsys.readouterr().err
    assert "AccessDenied" in err and "may write and delete objects" in err
    assert _raw_keys(seaweedfs, s3_archive) == set(made.keys)
