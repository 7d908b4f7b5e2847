"""How the catalog copes with many sessions: cold listing, warm listing, one new session, filtered page.

    python -m benchmarks.catalog_listing --sessions 10000 [--archive DIR | s3://bucket/prefix]

Prints a markdown table. The baseline beside our number is the naive reader that lists the whole archive
(every segment of every session) to discover sessions, which is what a reader without an index must do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from archive.layout import LogSegment
from archive.manifest import ENDED, SessionManifest
from archive.storage import open_store
from benchmarks.outcome import exit_status
from historyserver.catalog import Catalog


def _session(i: int) -> SessionManifest:
    stamp = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}_{i % 24:02d}-{i % 60:02d}-00_{i:06d}_{1000 + i}"
    return SessionManifest(
        namespace=f"team-{i % 7}",
        cluster=f"raycluster-{i % 50}",
        session_name=f"session_{stamp}",
        status=ENDED,
        start_ms=1_790_000_000_000 + i * 1000,
        end_ms=1_790_000_000_000 + i * 1000 + 500,
    )


def populate(store, n: int, segments_per_session: int) -> None:
    def one(i: int) -> None:
        m = _session(i)
        body = m.to_json()
        store.put(m.ref.manifest_key, body)
        node = m.ref.node("ab" * 28)
        for k in range(segments_per_session):
            store.put(node.segment_key(LogSegment(f"worker-{k}.out", 0, 0, 1)), b"x")
        store.put(m.ref.index_key, body)

    with ThreadPoolExecutor(16) as pool:
        for done, _ in enumerate(pool.map(one, range(n)), 1):
            if done % 1000 == 0:
                print(f"  populated {done}/{n} sessions", file=sys.stderr, flush=True)


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=10000)
    p.add_argument("--segments-per-session", type=int, default=20)
    p.add_argument("--archive", help="archive URL (default: a new temp directory)")
    args = p.parse_args(argv)
    if args.archive:
        return run(args, args.archive)
    with tempfile.TemporaryDirectory(prefix="rh-catalog-") as tmp:  # 10,000 sessions: about 1.8 GB, removed after
        return run(args, tmp)


def run(args: argparse.Namespace, url: str) -> int:
    store = open_store(url)
    print(f"populating {args.sessions} sessions into {url}", file=sys.stderr)
    populate(store, args.sessions, args.segments_per_session)

    catalog = Catalog(store, ttl=0)
    cold, sessions = timed(catalog.sessions)
    warm, _ = timed(catalog.sessions)
    extra = _session(args.sessions)
    store.put(extra.ref.index_key, extra.to_json())
    new, after = timed(catalog.sessions)
    page, rows = timed(lambda: [e for e in catalog.sessions() if e.manifest.namespace == "team-3"][:100])
    naive, manifests = timed(lambda: [o.key for o in store.list("v1/clusters/")])
    keys = len(manifests)
    manifests = {k for k in manifests if k.endswith("/manifest.json")}
    problems = answer_problems(args.sessions, sessions, after, rows, manifests)
    cluster_page, cluster_problems = time_cluster_page(store, url)
    problems += cluster_problems

    print(f"\n{args.sessions} sessions, {args.segments_per_session} segments each, archive {url}\n")
    print("| operation | rayhistory | naive full listing (no index) |")
    print("|---|---|---|")
    print(f"| first listing (cold) | {cold:.2f} s | {naive:.2f} s ({keys} keys) |")
    print(f"| listing again (warm, nothing changed) | {warm * 1000:.0f} ms | {naive:.2f} s |")
    print(f"| listing after one new session | {new * 1000:.0f} ms | {naive:.2f} s |")
    print(f"| filtered page (namespace, 100 rows) | {page * 1000:.0f} ms | n/a |")
    verdict = "ok" if cluster_page < CLUSTER_PAGE_TARGET else "FAIL"
    print(
        f"| cluster page, {CLUSTER_SESSIONS} past sessions (HTML, median of 5) | {cluster_page * 1000:.0f} ms "
        f"| target < {CLUSTER_PAGE_TARGET * 1000:.0f} ms: {verdict} |"
    )
    return exit_status(problems, "benchmarks.catalog_listing")


CLUSTER_SESSIONS = 100
CLUSTER_PAGE_TARGET = 0.300  # issue 15: the cluster page of a cluster with 100 past sessions, in under 300 ms


def time_cluster_page(store, url: str) -> tuple[float, list[str]]:
    """The cluster page (/clusters/{ns}/{name}) of a cluster with 100 past sessions among all the others, served
    by the app in-process (Kubernetes off: the archive's part, which grows with the sessions)."""
    from fastapi.testclient import TestClient

    from historyserver.app import create_app
    from historyserver.settings import ServerSettings

    for i in range(CLUSTER_SESSIONS):
        m = SessionManifest(
            namespace="bench",
            cluster="big",
            session_name=f"session_2026-06-01_00-00-00_{i:06d}_{9000 + i}",
            status=ENDED,
            start_ms=1_790_000_000_000 + i * 60_000,
            end_ms=1_790_000_000_000 + i * 60_000 + 30_000,
        )
        store.put(m.ref.manifest_key, m.to_json())
        store.put(m.ref.index_key, m.to_json())
    cache = tempfile.TemporaryDirectory(prefix="rh-bench-cache-")
    settings = ServerSettings(archive=url, cache_dir=cache.name, compact_on_end=False)
    with cache, TestClient(create_app(settings, store)) as client:
        first = client.get("/clusters/bench/big")  # the first listing of the catalog, then served from memory
        times = []
        for _ in range(5):
            took, page = timed(lambda: client.get("/clusters/bench/big"))
            times.append(took)
    rows = page.text.count('<tr><td><a href="/sessions/')
    problems = []
    if first.status_code != 200 or page.status_code != 200 or rows != CLUSTER_SESSIONS:
        problems.append(f"the cluster page answered {page.status_code} with {rows} sessions, not {CLUSTER_SESSIONS}")
    median = sorted(times)[len(times) // 2]
    if median >= CLUSTER_PAGE_TARGET:
        problems.append(f"the cluster page took {median * 1000:.0f} ms, the target is {CLUSTER_PAGE_TARGET * 1000:.0f}")
    return median, problems


def answer_problems(n: int, cold: list, after: list, page: list, naive_manifests: set[str]) -> list[str]:
    """What each listing found, against what populate() wrote: a fast listing of the wrong sessions is no result."""
    out = []
    if len(cold) != n:
        out.append(f"the first listing found {len(cold)} sessions, {n} were written")
    if len(naive_manifests) != len(cold):
        out.append(f"the naive full listing found {len(naive_manifests)} sessions, the catalog {len(cold)}")
    if len(after) != len(cold) + 1:
        out.append(f"after one new session the listing has {len(after)} sessions, not {len(cold) + 1}")
    expected = min(100, sum(1 for i in range(n + 1) if i % 7 == 3))
    if len(page) != expected or any(e.manifest.namespace != "team-3" for e in page):
        out.append(
            f"the filtered page has {len(page)} rows ({sorted({e.manifest.namespace for e in page})}), "
            f"expected {expected} of team-3"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
