"""A synthetic archived Ray session of N task attempts, written straight into an archive as collectors would.

    python -m benchmarks.synthetic_session --tasks 100000 --archive DIR [--seed 1] [--nodes 8] [--workers-per-node 16]

The keys and documents follow archive/FORMAT.md (built with archive.layout, archive.manifest and archive.logs), and
the bytes follow what Ray 2.60 writes (compare a real run's logs/export_events/): a task's owner (its driver, or the
worker running its parent) writes the definition and state changes to its event_EXPORT_TASK_<pid>.log, one line per
1 s flush; the executing worker writes RUNNING, its log offsets and profile events to its own file and
:task_name: markers to its worker-*.out/.err; the head's GCS writes node, actor and driver-job events, the job
manager submission-job events. Files are cut into gzip segments of a few MB at arbitrary byte offsets, as the
collector ships them. The same arguments always give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from typing import Any

from archive.manifest import ENDED, SessionManifest, end_marker
from archive.storage import open_store
from benchmarks import synthetic_render as render
from benchmarks.synthetic_plan import DRIVER, JOBS, MS, RAY_VERSION, Plan, assign_lines, make_plan
from benchmarks.synthetic_render import SegmentWriter, head_files, node_files, node_record, render_proc


# --- the whole session ----------------------------------------------------------------------------------------
def summary(plan: Plan) -> dict[str, Any]:
    """What a reader of this session must find: the counts the smoke test and the benchmark check."""
    return {
        "session_id": plan.ref.id,
        "tasks": len(plan.attempts),
        "failed_tasks": sum(1 for a in plan.attempts if a.failed),
        "driver_tasks": sum(1 for a in plan.attempts if a.kind == DRIVER),
        "jobs": sum(1 for s in JOBS if s.kind != "internal"),
        "nodes": len(plan.node_ids),
        "actors": len(plan.actors),
    }


def generate(
    archive: str,
    tasks: int,
    seed: int = 1,
    nodes: int = 8,
    workers_per_node: int = 16,
    segment_mb: float = 4.0,
    procs: int | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Write the session into the archive (unless it is already there, complete) and return its summary."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.monotonic()
    plan = make_plan(tasks, seed, nodes, workers_per_node)
    info = summary(plan)
    store = open_store(archive)
    if store.exists(plan.ref.ended_key):
        say(f"{plan.ref.id} is already in {store.url}; not rewritten")
        return {**info, "written": False}
    assign_lines(plan)
    say(
        f"planned {len(plan.attempts):,} task attempts on {nodes} nodes, {len(plan.procs)} processes "
        f"in {time.monotonic() - started:.1f}s"
    )
    ctx = multiprocessing.get_context("fork")  # the children share the plan instead of pickling it
    # render_proc reads these in the forked children
    render._PLAN, render._STORE_URL, render._SEGMENT_BYTES = plan, store.url, int(segment_mb * (1 << 20))
    render._PROGRESS = ctx.Value("q", 0)
    order = sorted(range(len(plan.procs)), key=lambda i: -len(plan.procs[i].entries))
    done = threading.Event()

    def report() -> None:
        while not done.wait(2.0):
            say(
                f"  {render._PROGRESS.value / 1e6:,.0f} MB of export events written ({time.monotonic() - started:.0f}s)"
            )

    threading.Thread(target=report, daemon=True).start()
    total_bytes = total_segs = 0
    try:
        with ctx.Pool(procs or min(os.cpu_count() or 1, 4)) as pool:
            for size, segs in pool.imap_unordered(render_proc, order):
                total_bytes, total_segs = total_bytes + size, total_segs + segs
    finally:
        done.set()
        render._PLAN = render._PROGRESS = None  # type: ignore[assignment]  # a caller that goes on should not carry the plan
    for n in range(nodes):
        node = plan.ref.node(plan.node_ids[n].hex())
        files = {**(head_files(plan) if n == 0 else {}), **node_files(plan, n)}
        for path, text in files.items():
            w = SegmentWriter(store, node, path, render._SEGMENT_BYTES)
            w.write(text.encode())
            total_bytes, total_segs = total_bytes + w.close(), total_segs + w.segments
    end_ms = plan.end_ns // MS + 2000
    for n in range(nodes):  # each node's collector: its record, then its end marker
        node = plan.ref.node(plan.node_ids[n].hex())
        store.put(node.node_key, node_record(plan, n).to_json())
        store.put(node.ended_key, end_marker(end_ms, "signal:SIGTERM"))
    manifest = SessionManifest(
        namespace=plan.ref.namespace,
        cluster=plan.ref.cluster,
        session_name=plan.ref.session,
        ray_version=RAY_VERSION,
        start_ms=plan.start_ns // MS,
        end_ms=end_ms,
        status=ENDED,
        ended_by="signal:SIGTERM",
        nodes=[node_record(plan, 0)],
    )
    store.put(plan.ref.manifest_key, manifest.to_json())
    store.put(plan.ref.index_key, manifest.to_json())
    store.put(plan.ref.ended_key, end_marker(end_ms, "signal:SIGTERM"))  # last: the session is complete
    seconds = time.monotonic() - started
    say(f"wrote {plan.ref.id}: {total_bytes / 1e6:,.0f} MB in {total_segs:,} segments in {seconds:.1f}s")
    return {**info, "written": True, "bytes": total_bytes, "segments": total_segs, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.synthetic_session", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, required=True, help="task attempts in the session (driver tasks included)")
    p.add_argument("--archive", required=True, help="archive: a directory (or file://, s3://)")
    p.add_argument("--seed", type=int, default=1, help="same seed, same bytes")
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--workers-per-node", type=int, default=16)
    p.add_argument("--segment-mb", type=float, default=4.0, help="size of the archived segments")
    p.add_argument("--procs", type=int, default=None, help="processes that render files (default: CPUs, at most 4)")
    args = p.parse_args(argv)
    try:
        info = generate(
            args.archive, args.tasks, args.seed, args.nodes, args.workers_per_node, args.segment_mb, args.procs
        )
    except ValueError as e:
        p.error(str(e))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
