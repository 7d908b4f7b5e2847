"""archive.storage's S3Store against the real SeaweedFS S3 server (tests/servers/seaweedfs.py)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from archive.errors import AccessDenied, BackendUnavailable, NotFound, StoreError
from archive.storage import open_store
from tests.servers.seaweedfs import SeaweedFS, free_ports


def _prefix(url: str) -> str:
    return url.split("/", 3)[3] + "/"


def _raw_keys(seaweedfs: SeaweedFS, prefix: str) -> list[str]:
    page = seaweedfs.client().list_objects_v2(Bucket=seaweedfs.bucket, Prefix=prefix)
    return [o["Key"] for o in page.get("Contents", [])]


@pytest.fixture
def closed_endpoint(monkeypatch: pytest.MonkeyPatch, s3_archive: str) -> str:
    """Point AWS_ENDPOINT_URL at a local port nobody listens on, with one quick attempt per request."""
    endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("RAYHISTORY_S3_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("RAYHISTORY_S3_CONNECT_TIMEOUT", "1")
    return endpoint


def test_put_get_roundtrip(s3_archive: str, seaweedfs: SeaweedFS) -> None:
    store = open_store(s3_archive)
    store.check()
    data = random.randbytes(9 << 20)  # a log segment can be this big; SeaweedFS stores it in several chunks
    store.put("v1/a/segment.gz", data)
    store.put("v1/a/empty", b"")
    assert store.get("v1/a/segment.gz") == data
    assert store.get("v1/a/empty") == b""
    store.put("v1/a/segment.gz", b"replaced")
    assert store.get("v1/a/segment.gz") == b"replaced"
    assert store.exists("v1/a/empty") and not store.exists("v1/a/nothing")
    prefix = _prefix(s3_archive)  # the keys sit under the URL's prefix
    assert _raw_keys(seaweedfs, prefix) == [prefix + "v1/a/empty", prefix + "v1/a/segment.gz"]


def test_get_missing_key_raises_not_found(s3_archive: str) -> None:
    store = open_store(s3_archive)
    with pytest.raises(NotFound) as e:
        store.get("v1/none.json")
    assert "v1/none.json" in str(e.value) and s3_archive in str(e.value)


def _truncated(seaweedfs: SeaweedFS, prefix: str, **kwargs: str) -> bool:
    """Whether the server needs more than one page for this listing (so the store had to paginate)."""
    return seaweedfs.client().list_objects_v2(Bucket=seaweedfs.bucket, Prefix=prefix, **kwargs)["IsTruncated"]


def test_list_paginates_in_key_order_with_sizes(s3_archive: str, seaweedfs: SeaweedFS) -> None:
    store = open_store(s3_archive)
    expected = {f"v1/logs/{i:05d}.gz": i % 7 for i in range(1100)}
    keys = list(expected)
    random.shuffle(keys)
    with ThreadPoolExecutor(max_workers=10) as pool:  # boto3's default connection pool holds 10
        list(pool.map(lambda k: store.put(k, b"x" * expected[k]), keys))
    # Neighbours that share the string prefix but not the directory must stay out.
    store.put("v1/logsx", b"1")
    open_store(s3_archive + "-sibling").put("v1/logs/00000.gz", b"other archive")

    assert _truncated(seaweedfs, _prefix(s3_archive) + "v1/logs/")
    listed = list(store.list("v1/logs/"))
    assert [(o.key, o.size) for o in listed] == sorted(expected.items())
    assert all(o.tag for o in listed)  # the ETag: readers tell a rewritten object by it
    assert [o.key for o in store.list("v1/logs/0109")] == [f"v1/logs/0109{i}.gz" for i in range(10)]
    assert list(store.list("v1/nothing/")) == []


def test_list_dirs(s3_archive: str) -> None:
    store = open_store(s3_archive)
    for key in ("n/b/1", "n/a/2", "n/a/deep/3", "n/file.txt", "other/4"):
        store.put(key, b"-")
    assert store.list_dirs("n/") == ["a", "b"]
    assert store.list_dirs("n/a/") == ["deep"]
    assert store.list_dirs("") == ["n", "other"]
    assert store.list_dirs("missing/") == []


def test_list_dirs_paginates(s3_archive: str, seaweedfs: SeaweedFS) -> None:
    store = open_store(s3_archive)
    names = [f"node{i:04d}" for i in range(1005)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda n: store.put(f"nodes/{n}/node.json", b"{}"), names))
    assert _truncated(seaweedfs, _prefix(s3_archive) + "nodes/", Delimiter="/")
    assert store.list_dirs("nodes/") == names


def test_list_orders_keys_across_directory_boundaries(s3_archive: str) -> None:
    store = open_store(s3_archive)
    for key in ("a/b", "a-b", "a.b", "a0"):
        store.put(key, b"-")
    assert [o.key for o in store.list("")] == ["a-b", "a.b", "a/b", "a0"]


def test_wrong_secret_is_access_denied(s3_archive: str, seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + seaweedfs.secret_key)
    store = open_store(s3_archive)
    with pytest.raises(AccessDenied) as checked:
        store.check()
    with pytest.raises(AccessDenied) as put:
        store.put("v1/x.json", b"{}")
    for e in (checked.value, put.value):
        assert e.url == s3_archive and s3_archive in str(e)
        assert "secret" in str(e)
    assert _raw_keys(seaweedfs, _prefix(s3_archive)) == []


def test_unknown_access_key_is_access_denied(s3_archive: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKNOBODY")
    with pytest.raises(AccessDenied, match="InvalidAccessKeyId"):
        open_store(s3_archive).check()


def test_closed_port_is_backend_unavailable_quickly(s3_archive: str, closed_endpoint: str) -> None:
    store = open_store(s3_archive)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as e:
        store.check()
    assert time.monotonic() - started < 5
    assert closed_endpoint in str(e.value) and s3_archive in str(e.value)


def test_missing_bucket_has_a_clear_error(s3_archive: str, seaweedfs: SeaweedFS) -> None:
    bucket = f"absent-{uuid.uuid4().hex[:8]}"
    store = open_store(f"s3://{bucket}/x")
    for action in (store.check, lambda: store.put("k", b"1")):
        with pytest.raises(StoreError, match=f"bucket {bucket} does not exist") as e:
            action()
        assert f"s3://{bucket}/x" in str(e.value)
    assert bucket not in [b["Name"] for b in seaweedfs.client().list_buckets()["Buckets"]]


def test_missing_bucket_is_not_a_missing_object(s3_archive: str) -> None:
    store = open_store(f"s3://absent-{uuid.uuid4().hex[:8]}/x")
    with pytest.raises((AccessDenied, BackendUnavailable)):
        store.check()
    with pytest.raises(StoreError):
        store.exists("v1/index/a.json")


# --- the collector's command line ----------------------------------------------------------------------


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    path = tmp_path / "session_2026-11-25_20-59-21_325155_1996"
    (path / "logs").mkdir(parents=True)
    (path / f"metrics_export_port_{'ab' * 28}").touch()
    return path


def _collect(session_dir: Path, archive: str) -> subprocess.CompletedProcess[str]:
    """A one-off `collect --once`, run by hand: a broken archive ends it at once (exit 2). A sidecar (no --once)
    retries instead and says so on /healthz: tests/test_collector_sidecar.py."""
    argv = ["collect", "--once", "--session-dir", str(session_dir), "--archive", archive]
    return subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(params=["wrong secret", "closed port"])
def broken_s3(
    request: pytest.FixtureRequest, seaweedfs: SeaweedFS, s3_archive: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Break the S3 settings one way; returns what the error message must name besides the archive."""
    if request.param == "wrong secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + seaweedfs.secret_key)
        return "check the access key and secret"
    return request.getfixturevalue("closed_endpoint")


def test_collect_exits_2_naming_the_archive(session_dir: Path, broken_s3: str) -> None:
    result = _collect(session_dir, "s3://rayhistory/x")
    assert result.returncode == 2, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("rayhistory collect: ") and "s3://rayhistory/x" in last and broken_s3 in last


def test_collect_error_is_one_line_on_stderr(session_dir: Path, broken_s3: str) -> None:
    result = _collect(session_dir, "s3://rayhistory/x")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_delete_many_in_batches_with_missing_keys(s3_archive: str, seaweedfs: SeaweedFS) -> None:
    store = open_store(s3_archive)
    keys = [f"v1/s/{i:05d}.gz" for i in range(1205)]  # more than one DeleteObjects call holds
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda k: store.put(k, b"x"), keys))
    store.put("v1/t/keep", b"1")
    sibling = open_store(s3_archive + "-sibling")
    sibling.put("v1/s/00000.gz", b"other archive")
    store.delete_many(keys + ["v1/s/never-there"])
    assert [o.key for o in store.list("v1/")] == ["v1/t/keep"]
    assert sibling.get("v1/s/00000.gz") == b"other archive"  # the URL's prefix bounds what is deleted
    store.delete("v1/t/keep")
    store.delete("v1/t/keep")  # again: already gone is not an error
    assert _raw_keys(seaweedfs, _prefix(s3_archive)) == []


def test_delete_with_a_wrong_secret_is_access_denied(
    s3_archive: str, seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(s3_archive).put("v1/k", b"1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + seaweedfs.secret_key)
    with pytest.raises(AccessDenied, match="secret"):
        open_store(s3_archive).delete_many(["v1/k"])
    assert _raw_keys(seaweedfs, _prefix(s3_archive)) == [_prefix(s3_archive) + "v1/k"]


def test_keys_refused_one_by_one_are_access_denied_naming_them(
    s3_archive: str, seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS answers DeleteObjects from a read-only identity with 200 and an AccessDenied per key."""
    open_store(s3_archive).put("v1/k", b"1")
    for name, value in seaweedfs.env(read_only=True).items():
        monkeypatch.setenv(name, value)
    reader = open_store(s3_archive)
    assert reader.get("v1/k") == b"1"
    with pytest.raises(AccessDenied) as e:
        reader.delete_many(["v1/k", "v1/other"])
    assert "2 of 2 keys were not deleted, first v1/k: AccessDenied" in str(e.value)
    assert "may delete" in str(e.value) and s3_archive in str(e.value)
    assert _raw_keys(seaweedfs, _prefix(s3_archive)) == [_prefix(s3_archive) + "v1/k"]
