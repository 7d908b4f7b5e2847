"""`rayhistory gc` on a local archive: which sessions go, the order they go in, and what it prints."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from archive.errors import BackendUnavailable
from archive.manifest import RUNNING
from archive.storage.local import LocalStore
from historyserver.catalog import Catalog
from historyserver.retention.durations import InvalidDuration, parse_duration
from historyserver.retention.progress import format_size
from rayhistory.cli import main
from tests.retention_archive import add_compacted, add_session, snapshot


def gc(archive: str, *flags: str, capsys) -> tuple[int, str, str]:
    code = main(["gc", "--archive", archive, *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _lines(out: str, verb: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(verb + " ")]


def assert_gone(store, ref) -> None:
    assert list(store.list(ref.prefix)) == [], f"leftovers of {ref.id}"
    assert not store.exists(ref.index_key) and not store.exists(ref.deleting_key)


# --- durations -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, ms",
    [
        ("90m", 90 * 60_000),
        ("12h", 12 * 3_600_000),
        ("30d", 30 * 86_400_000),
        ("2w", 14 * 86_400_000),
        (" 7D ", 7 * 86_400_000),
    ],
)
def test_durations(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["30", "d", "1.5d", "30 days", "-3d", "0d", "3y", "30s", "", "1d2h"])
def test_bad_durations_say_what_is_accepted(text):
    with pytest.raises(InvalidDuration, match=r"90m, 12h, 30d, 2w|longer than zero") as e:
        parse_duration(text)
    assert repr(text) in str(e.value)


def test_bad_duration_on_the_command_line_exits_2_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["gc", "--archive", str(tmp_path), "--older-than", "30days"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--older-than" in err and "'30days'" in err and "30d" in err


def test_keep_failed_shorter_than_older_than_is_refused(tmp_path, capsys):
    code, _, err = gc(str(tmp_path), "--older-than", "30d", "--keep-failed", "2w", capsys=capsys)
    assert code == 2 and "--keep-failed 14d" in err and "--older-than 30d" in err


def test_unusable_archive_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = gc(str(tmp_path / "file"), "--older-than", "30d", capsys=capsys)
    assert code == 2 and "rayhistory gc:" in err and "file" in err


# --- what goes -----------------------------------------------------------------------------------------------


def test_older_than_counts_from_the_end_and_never_touches_running_sessions(tmp_path, capsys):
    store = LocalStore(tmp_path / "archive")
    old = add_session(store, ended_days_ago=40, started_days_ago=41)
    young = add_session(store, ended_days_ago=10, started_days_ago=60)  # started long ago, ended recently
    silent = add_session(store, status=RUNNING, silent_days_ago=35, started_days_ago=50)  # unfinished
    running = add_session(store, status=RUNNING, silent_days_ago=0, started_days_ago=90)  # fresh heartbeat
    other = add_session(store, "team-b", "x", ended_days_ago=31)
    kept = {**young.keys, **running.keys}

    code, out, err = gc(store.url, "--older-than", "30d", capsys=capsys)

    assert code == 0, err
    for made in (old, silent, other):
        assert_gone(store, made.ref)
    assert snapshot(store) == kept  # byte for byte
    deleted = _lines(out, "deleted")
    assert [line.split()[1] for line in deleted] == [old.ref.id, silent.ref.id, other.ref.id]  # oldest first
    assert "40d old, ended" in deleted[0] and "unfinished" in deleted[1]
    assert all(" KiB " in line or " B " in line for line in deleted)
    [refused] = _lines(out, "refuse")
    assert refused.endswith(f"{running.ref.id}  started 90d ago, running (heartbeat 0m ago)")
    assert out.splitlines()[-1].startswith("total: deleted 3 session(s)") and "refused 1 running" in out
    assert young.ref.id not in out
    assert "progress: 100%" in err  # not a terminal: plain progress lines


def test_a_running_session_is_refused_whatever_the_flags(tmp_path, capsys):
    store = LocalStore(tmp_path / "archive")
    running = add_session(store, status=RUNNING, silent_days_ago=0, started_days_ago=400)
    code, out, _ = gc(store.url, "--older-than", "1m", "--keep-last", "0", capsys=capsys)
    assert code == 0 and snapshot(store) == running.keys
    assert _lines(out, "refuse") and not _lines(out, "deleted")


def test_keep_last_keeps_the_newest_n_of_each_cluster(tmp_path, capsys):
    store = LocalStore(tmp_path / "archive")
    a = [add_session(store, "ns", "a", ended_days_ago=d) for d in (50, 40, 45, 60)]
    b = add_session(store, "ns", "b", ended_days_ago=70)
    code, out, _ = gc(store.url, "--older-than", "30d", "--keep-last", "2", capsys=capsys)
    assert code == 0
    remaining = {e.ref for e in Catalog(store, ttl=0).sessions()}
    assert remaining == {a[1].ref, a[2].ref, b.ref}  # ended 40 and 45 days ago: the newest two of ns/a
    assert len(_lines(out, "keep")) == 3 and "newest 2 of ns/a" in out


def test_keep_failed_keeps_failed_and_unknown_sessions_until_older(tmp_path, capsys):
    store = LocalStore(tmp_path / "archive")
    clean = add_session(store, ended_days_ago=40, compacted_failures=(0, 0))
    failed_task = add_session(store, ended_days_ago=40, compacted_failures=(0, 3))
    failed_job = add_session(store, ended_days_ago=40, compacted_failures=(1, 0))
    unknown = add_session(store, ended_days_ago=40)
    api_failed = add_session(store, ended_days_ago=40, api_failed_job=True)
    ancient_failure = add_session(store, ended_days_ago=100, compacted_failures=(2, 9))
    code, out, _ = gc(store.url, "--older-than", "30d", "--keep-failed", "90d", capsys=capsys)
    assert code == 0
    remaining = {e.ref for e in Catalog(store, ttl=0).sessions()}
    assert remaining == {failed_task.ref, failed_job.ref, unknown.ref, api_failed.ref}
    for made in (clean, ancient_failure):
        assert_gone(store, made.ref)
    keeps = "\n".join(_lines(out, "keep"))
    assert "3 failed task attempt(s)" in keeps and "1 failed job(s)" in keeps
    assert "not compacted yet" in keeps and "/api/jobs/" in keeps and "--keep-failed 90d" in keeps


def test_compacted_tables_decide_over_an_api_snapshot(tmp_path, capsys):
    store = LocalStore(tmp_path / "archive")
    made = add_session(store, ended_days_ago=40, api_failed_job=True)
    add_compacted(store, made.ref, failed_jobs=0, failed_tasks=0)  # e.g. the job's failure was in a later run
    code, out, _ = gc(store.url, "--older-than", "30d", "--keep-failed", "90d", "--dry-run", capsys=capsys)
    assert code == 0 and made.ref.id in _lines(out, "would delete")[0]


def test_namespace_and_cluster_filters(tmp_path, capsys):
    store = LocalStore(tmp_path / "archive")
    mine = add_session(store, "ns", "a", ended_days_ago=40)
    same_ns = add_session(store, "ns", "b", ended_days_ago=40)
    other_ns = add_session(store, "other", "a", ended_days_ago=40)
    code, _, _ = gc(store.url, "--older-than", "30d", "--namespace", "ns", "--cluster", "a", capsys=capsys)
    assert code == 0
    assert {e.ref for e in Catalog(store, ttl=0).sessions()} == {same_ns.ref, other_ns.ref}
    assert_gone(store, mine.ref)
    with pytest.raises(SystemExit):
        main(["gc", "--archive", store.url, "--older-than", "30d", "--namespace", "Not_A_Name"])
    assert "namespace" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_deletes_nothing(tmp_path, capsys):
    store = LocalStore(tmp_path / "archive")
    old = add_session(store, ended_days_ago=40, compacted_failures=(0, 0))
    add_session(store, ended_days_ago=41, compacted_failures=(1, 1))
    add_session(store, status=RUNNING, silent_days_ago=0, started_days_ago=90)
    before = snapshot(store)
    code, dry, _ = gc(store.url, "--older-than", "30d", "--keep-failed", "60d", "--dry-run", capsys=capsys)
    assert code == 0 and snapshot(store) == before
    [line] = _lines(dry, "would delete")
    size = format_size(sum(len(v) for v in old.keys.values()))
    assert line.endswith(f"{old.ref.id}  40d old, ended  {size}  {len(old.keys)} objects")
    assert dry.splitlines()[-1].startswith("total: would delete 1 session(s)")
    code, real, _ = gc(store.url, "--older-than", "30d", "--keep-failed", "60d", capsys=capsys)
    [deleted] = _lines(real, "deleted")
    assert deleted.split()[1:] == line.split()[2:]  # the same session, age, size and count
    assert [x for x in dry.splitlines() if x.startswith(("keep", "refuse"))] == [
        x for x in real.splitlines() if x.startswith(("keep", "refuse"))
    ]
    assert len(_lines(real, "keep")) == 1 and len(_lines(real, "refuse")) == 1


# --- crash safety --------------------------------------------------------------------------------------------


class FailingStore(LocalStore):
    """A local store whose delete_many() fails after a given number of calls: a gc cut short."""

    def __init__(self, root, fail_after: int) -> None:
        super().__init__(root)
        self.calls = 0
        self.fail_after = fail_after

    def delete_many(self, keys: list[str]) -> None:
        self.calls += 1
        if self.calls > self.fail_after:
            raise BackendUnavailable(self.url, "injected failure")
        super().delete_many(keys)


def _complete_or_unlisted(store, made: dict) -> None:
    """Every session the catalog lists has all its objects: none is listed half-deleted."""
    listed = {e.ref for e in Catalog(store, ttl=0).sessions()}
    for ref, keys in made.items():
        if ref in listed:
            assert all(store.exists(k) for k in keys), f"{ref.id} is listed but half-deleted"


@pytest.mark.parametrize("fail_after", [0, 1, 2, 3, 5])
def test_an_interrupted_run_leaves_nothing_listed_half_deleted_and_a_rerun_finishes(
    tmp_path, capsys, monkeypatch, fail_after
):
    store = LocalStore(tmp_path / "archive")
    old = [add_session(store, ended_days_ago=40 + i, segments=250, compacted_failures=(0, 0)) for i in range(2)]
    young = add_session(store, ended_days_ago=1)
    failing = FailingStore(store.root, fail_after)
    monkeypatch.setattr("historyserver.retention.cli.open_store", lambda url: failing)
    code, _, err = gc(store.url, "--older-than", "30d", capsys=capsys)
    assert code == 1 and "injected failure" in err and "running gc again finishes" in err
    _complete_or_unlisted(store, {m.ref: m.keys for m in old})
    monkeypatch.undo()

    code, out, _ = gc(store.url, "--older-than", "30d", capsys=capsys)
    assert code == 0
    for made in old:
        assert_gone(store, made.ref)
    assert snapshot(store) == young.keys
    assert not list(store.list("v1/deleting/"))
    if fail_after >= 1:  # the index entry of the first went: the rerun found it by its marker
        assert "an interrupted gc" in _lines(out, "deleted")[0]


def test_session_data_without_index_or_marker_is_left_alone(tmp_path, capsys):
    store = LocalStore(tmp_path / "archive")
    made = add_session(store, ended_days_ago=40)
    store.delete(made.ref.index_key)  # like a session whose head collector has not announced it yet
    before = snapshot(store)
    code, _, _ = gc(store.url, "--older-than", "1m", capsys=capsys)
    assert code == 0 and snapshot(store) == before


def test_a_marker_for_a_session_running_again_is_dropped_not_followed(tmp_path, capsys):
    store = LocalStore(tmp_path / "archive")
    made = add_session(store, status=RUNNING, silent_days_ago=0, started_days_ago=90)
    store.put(made.ref.deleting_key, b'{"format_version": 1}')  # an earlier gc began, then its collector came back
    code, out, _ = gc(store.url, "--older-than", "30d", capsys=capsys)
    assert code == 0 and snapshot(store) == made.keys
    assert "running again" in out


# --- the command, as a user runs it --------------------------------------------------------------------------


def test_the_command_line(tmp_path):
    store = LocalStore(tmp_path / "archive")
    made = add_session(store, ended_days_ago=40)
    result = subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "gc", "--archive", store.url, "--older-than", "4w"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert made.ref.id in result.stdout and "progress: 100%, " in result.stderr
    assert_gone(store, made.ref)


def test_on_a_terminal_progress_is_a_bar_redrawn_in_place(tmp_path):
    import os
    import pty

    store = LocalStore(tmp_path / "archive")
    made = [add_session(store, ended_days_ago=40 + i) for i in range(3)]
    main_fd, term_fd = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rayhistory.cli", "gc", "--archive", store.url, "--older-than", "30d"],
            stdout=subprocess.PIPE,
            stderr=term_fd,
            text=True,
            timeout=120,
        )
        os.close(term_fd)
        seen = b""
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # the terminal's other end is closed: everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(main_fd)
    assert result.returncode == 0
    text = seen.decode()
    assert "progress:" not in text  # no plain lines on a terminal
    assert text.count("\r[") >= 3 and "100% " in text and "3/3 sessions" in text
    assert all(m.ref.id in result.stdout for m in made)
    assert "\r" not in result.stdout  # the bar never reaches stdout


def test_every_gc_flag_and_exit_code_is_in_the_readme():
    import argparse
    from pathlib import Path

    from historyserver.retention import cli as gc_cli

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Retention") : readme.index("## Tests")]
    parser = argparse.ArgumentParser()
    gc_cli.add_arguments(parser)
    for action in parser._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}`" in section, f"rayhistory gc {flag} is not documented in README.md's Retention"
    for code in (gc_cli.OK, gc_cli.INCOMPLETE, gc_cli.UNUSABLE):
        assert f"{code} " in section.split("Exit codes:")[1].split("\n\n")[0]


def test_a_session_whose_collector_comes_back_after_the_listing_is_left_alone(tmp_path, capsys, monkeypatch):
    from historyserver.retention import sweep

    store = LocalStore(tmp_path / "archive")
    first = add_session(store, ended_days_ago=40)
    revived = add_session(store, status=RUNNING, silent_days_ago=35)  # unfinished: its collector went silent
    real_delete = sweep.delete_session

    def collector_returns_meanwhile(store_, ref, *args):
        if ref == first.ref:  # while gc deletes the first, the other's collector writes a heartbeat
            entry = Catalog(store, ttl=0).get(revived.ref.id).manifest
            entry.last_seen_ms = int(time.time() * 1000)
            store.put(revived.ref.index_key, entry.to_json())
            revived.keys[revived.ref.index_key] = entry.to_json()
        return real_delete(store_, ref, *args)

    monkeypatch.setattr(sweep, "delete_session", collector_returns_meanwhile)
    code, out, _ = gc(store.url, "--older-than", "30d", capsys=capsys)
    assert code == 0
    assert_gone(store, first.ref)
    assert snapshot(store) == revived.keys
    assert "running again since this run listed it" in out
