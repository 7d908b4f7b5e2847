"""`rayhistory gc`: delete whole sessions past their age. Exit 0 done, 1 the store failed midway (run again to
finish), 2 bad arguments or an unusable archive (credentials that may not delete included)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from archive.errors import AccessDenied, ArchiveError, NotFound, StoreError
from archive.layout import InvalidName, SessionRef, check_name
from archive.manifest import RUNNING, SessionManifest
from archive.storage import ObjectInfo, Store, open_store
from historyserver.catalog import Catalog, SessionEntry
from historyserver.errors import ArchiveUnavailable
from historyserver.retention import sweep
from historyserver.retention.durations import InvalidDuration, format_age, parse_duration
from historyserver.retention.failures import evidence
from historyserver.retention.policy import DELETE, KEEP, REFUSE, Policy, decide
from historyserver.retention.progress import Progress, format_size

OK, INCOMPLETE, UNUSABLE = 0, 1, 2


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except InvalidDuration as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: expected a whole number of sessions, e.g. 5")
    return int(text)


def _name(what: str):
    def check(text: str) -> str:
        try:
            return check_name(text, what)
        except InvalidName as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", required=True, help="a directory, file://PATH or s3://bucket/prefix")
    parser.add_argument(
        "--older-than",
        required=True,
        type=_duration,
        metavar="DURATION",
        help="delete sessions that ended (or went silent) longer ago than this: 90m, 12h, 30d, 2w",
    )
    parser.add_argument(
        "--keep-failed",
        type=_duration,
        metavar="DURATION",
        help="keep sessions with failed jobs or tasks (or not yet known) until this old",
    )
    parser.add_argument(
        "--keep-last",
        type=_count,
        default=0,
        metavar="N",
        help="always keep the newest N sessions of each namespace/cluster",
    )
    parser.add_argument("--namespace", type=_name("namespace"), help="only sessions of this namespace")
    parser.add_argument("--cluster", type=_name("cluster name"), help="only sessions of this cluster")
    parser.add_argument("--cache-dir", help="a history server's --cache-dir: its tables of deleted sessions go too")
    parser.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.keep_failed is not None and args.keep_failed <= args.older_than:
        print(
            f"rayhistory gc: --keep-failed {format_age(args.keep_failed)} is not longer than --older-than "
            f"{format_age(args.older_than)}, so it would keep nothing; give a longer --keep-failed or leave it out",
            file=err,
        )
        return UNUSABLE
    policy = Policy(args.older_than, args.keep_failed, args.keep_last, args.namespace, args.cluster)
    try:
        store = open_store(args.archive)
        store.check()
    except ArchiveError as e:
        print(f"rayhistory gc: {e}", file=err)
        return UNUSABLE
    try:
        return _gc(store, policy, args, out, err)
    except AccessDenied as e:  # running again will not help until the credentials change
        print(f"rayhistory gc: {e}", file=err)
        print(
            "rayhistory gc: stopped; gc needs credentials that may write and delete objects. No listed session "
            "is half-deleted, and gc run again with them finishes what this run began",
            file=err,
        )
        return UNUSABLE
    except (StoreError, ArchiveUnavailable, sweep.StillBeingWritten) as e:
        print(f"rayhistory gc: {e}", file=err)
        print(
            "rayhistory gc: stopped; no listed session is half-deleted, and running gc again finishes "
            "what this run began",
            file=err,
        )
        return INCOMPLETE


def _gc(store: Store, policy: Policy, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    now_ms = int(time.time() * 1000)
    listings: dict[SessionRef, list[ObjectInfo]] = {}

    def objects(ref: SessionRef) -> list[ObjectInfo]:
        if ref not in listings:
            listings[ref] = sweep.session_objects(store, ref)
        return listings[ref]

    entries = {e.ref: e for e in Catalog(store, ttl=0).sessions()}
    verdicts = decide(entries.values(), policy, now_ms, lambda e: evidence(store, e.ref, objects(e.ref)))
    plan: list[tuple[SessionRef, str]] = []  # (session, what the line says)
    for ref in sweep.pending(store):
        if not policy.selects_ref(ref):
            continue
        entry = entries.get(ref)
        if entry is not None and entry.status == RUNNING:
            print(f"refuse  {ref.id}  running again since an earlier gc began deleting it; left alone", file=out)
            if not args.dry_run:
                store.delete(ref.deleting_key)
            continue
        plan.append((ref, "an interrupted gc"))
    planned = {ref for ref, _ in plan}
    for v in verdicts:
        if v.action == DELETE:
            if v.entry.ref not in planned:
                plan.append((v.entry.ref, f"{format_age(v.age_ms)} old, {v.reason}"))
        elif v.action == KEEP:
            print(f"keep    {v.entry.ref.id}  {format_age(v.age_ms)} old  {v.reason}", file=out)
        elif v.action == REFUSE:
            print(f"refuse  {v.entry.ref.id}  started {format_age(v.age_ms)} ago, {v.reason}", file=out)
    sizes = {ref: sum(o.size for o in objects(ref)) for ref, _ in plan}
    total = sum(sizes.values())
    verb = "would delete" if args.dry_run else "deleted"
    if args.dry_run:
        for ref, why in plan:
            print(f"{verb}  {ref.id}  {why}  {format_size(sizes[ref])}  {len(objects(ref))} objects", file=out)
    else:
        progress = Progress(err, total, len(plan))
        for ref, why in plan:
            if _running_now(store, ref):
                progress.clear()
                print(f"refuse  {ref.id}  running again since this run listed it; left alone", file=out)
                continue
            done = sweep.delete_session(store, ref, objects(ref), why, progress.add)
            if args.cache_dir:
                sweep.forget_cached_tables(Path(args.cache_dir), ref)
            progress.clear()
            print(f"{verb}  {ref.id}  {why}  {format_size(done)}  {len(objects(ref))} objects", file=out)
            out.flush()
            progress.session_done()
        progress.clear()
    kept = sum(v.action == KEEP for v in verdicts)
    refused = sum(v.action == REFUSE for v in verdicts)
    print(
        f"total: {verb} {len(plan)} session(s), {format_size(total)}; kept {kept}; refused {refused} running", file=out
    )
    return OK


def _running_now(store: Store, ref: SessionRef) -> bool:
    """Whether the session's index entry says running, read again just before deleting it: a collector thought
    dead may have come back since the listing (gc can run for long on a large archive)."""
    try:
        return SessionEntry(SessionManifest.from_json(store.get(ref.index_key)), "").status == RUNNING
    except NotFound:
        return False  # unlisted already: an interrupted deletion
    except (ValueError, TypeError, KeyError):
        return False  # unreadable: the catalog does not list it either
