"""Deterministic synthetic Ray metrics for the PromQL oracle: every metric Ray's dashboards query, scraped from a
few nodes of two sessions of one cluster for two hours, written both ways the same samples can travel:
(a) per series, its samples plus the staleness markers a live Prometheus would have written
    (`Dataset.series_samples`, for Prometheus's remote-write receiver: OpenMetrics backfill cannot carry markers),
    computed here from what the generator knows (which series a scrape lacks, which scrapes failed), independently
    of the compaction, and
(b) Rayhistory's archive: per node, the collector's `metrics` spool files (archive/FORMAT.md) cut into segments,
    which historyserver/compaction/metrics.py:compact_metrics reads (deriving its own markers from the blocks).
The OpenMetrics text of (b) is still available (`Dataset.openmetrics`, markers-free) for promtool.

What the data exercises: counters that grow at uneven rates, stall, and reset (a restarted process); gauges that
move, go to zero, or hold integer counts; histograms with cumulative `le` buckets and matching `_sum`/`_count`;
series that appear late and vanish early (stale at the first scrape without them), a node that joins late and
leaves early (no marker after a target's last scrape, on either side), failed scrapes (an `up 0` block and the two
other per-scrape series; every other series of the target is stale there), empty label values as Ray exposes them
(`WorkerId=""`), one node scraped exactly on the minute (range boundaries) and others off it, and a second session
whose head reuses the first one's `instance`.

Which families exist comes from the expressions themselves (`referenced_metrics` walks promql_parser's AST); their
labels come from the rules in `_entities`, modelled on Ray 2.60's real exposition (reference/ray-2.60/metrics/).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import promql_parser

T0_MS = 1_763_596_800_000  # 2025-11-20T00:00:00Z: in the past, so Prometheus treats the blocks as history
MINUTE = 60_000
SCRAPE_MS = 15_000
END_MS = T0_MS + 120 * MINUTE
NAMESPACE = "default"
CLUSTER = "demo"
JOB = "ray"
VERSION = "2.60.0"
HIST_LE = ("0.1", "1.0", "10.0", "+Inf")
_MONOTONE_FUNCS = {"rate", "increase", "irate", "delta", "idelta", "resets"}


@dataclass(frozen=True)
class Node:
    node_id: str
    ip: str
    is_head: bool
    start_ms: int
    end_ms: int
    offset_ms: int  # scrape phase: 0 puts every scrape exactly on a 15 s (and minute) boundary
    jitter_ms: int  # scrape times wander by up to this much


@dataclass(frozen=True)
class Session:
    name: str
    nodes: tuple[Node, ...]

    @property
    def head(self) -> Node:
        return next(n for n in self.nodes if n.is_head)


def _nid(i: int) -> str:
    return f"{i:02x}" * 28


SESSIONS = (
    Session(
        "session_2025-11-20_00-00-00_000001_101",
        (
            Node(_nid(1), "10.0.0.1", True, T0_MS, T0_MS + 80 * MINUTE, 0, 0),
            Node(_nid(2), "10.0.0.2", False, T0_MS + 20_000, T0_MS + 80 * MINUTE, 3_217, 40),
            Node(_nid(3), "10.0.0.3", False, T0_MS + 10 * MINUTE + 5_000, T0_MS + 55 * MINUTE, 7_500, 25),
        ),
    ),
    Session(
        "session_2025-11-20_01-22-00_000002_202",
        (
            Node(_nid(4), "10.0.0.1", True, T0_MS + 82 * MINUTE, END_MS, 1_001, 10),
            Node(_nid(5), "10.0.0.4", False, T0_MS + 83 * MINUTE, END_MS - 4 * MINUTE, 11_900, 60),
        ),
    ),
)
NODE_PORT = 8080
AUTOSCALER_PORT = 44217


# --- which families the dashboards query --------------------------------------------------------------------------


@dataclass
class Referenced:
    names: set[str] = field(default_factory=set)
    monotone: set[str] = field(default_factory=set)  # names read through rate/increase/delta (counters in spirit)
    name_regexes: list[str] = field(default_factory=list)  # `{__name__=~...}` selectors


def referenced_metrics(exprs: Iterable[str]) -> Referenced:
    ref = Referenced()
    for text in exprs:

        def visit(node, ref=ref):
            if isinstance(node, promql_parser.Call) and node.func.name in _MONOTONE_FUNCS:
                for arg in node.args:
                    promql_parser.walk(arg, lambda n: _mark(n, ref.monotone))
            if isinstance(node, promql_parser.VectorSelector):
                if node.name:
                    ref.names.add(node.name)
                for m in node.matchers.matchers:
                    if m.name == "__name__":
                        ref.name_regexes.append(m.value)

        promql_parser.walk(promql_parser.parse(text), visit)
    return ref


def _mark(node, into: set[str]) -> None:
    if isinstance(node, promql_parser.VectorSelector) and node.name:
        into.add(node.name)


@dataclass(frozen=True)
class Family:
    name: str  # family name (without _total / _bucket / _sum / _count)
    type: str  # counter | gauge | histogram
    monotone: bool  # a gauge that only grows (Ray Data's and Train's cumulative gauges)


def families(ref: Referenced) -> list[Family]:
    out: dict[str, Family] = {}
    for name in sorted(ref.names):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name != base and name not in _GAUGE_NAMES:
            out[base] = Family(base, "histogram", True)
        elif name.endswith("_total"):
            out.setdefault(name[:-6], Family(name[:-6], "counter", True))
        else:
            out.setdefault(name, Family(name, "gauge", name in ref.monotone))
    return sorted(out.values(), key=lambda f: f.name)


_GAUGE_NAMES = {"ray_node_cpu_count", "ray_data_max_uss_bytes_max"}


# --- the label sets of each family (Ray's own labels, as its exposition has them) ---------------------------------


@dataclass(frozen=True)
class Entity:
    """One label set of a family, alive on one scrape target for [birth, death)."""

    target: str  # `host:port`
    labels: tuple[tuple[str, str], ...]
    birth_ms: int
    death_ms: int


# Ray also sets otel_scope_* labels; they are left out to keep the data small (WorkerId="" keeps an empty label).
OTEL = {"Version": VERSION}


def _hex(*key) -> str:
    return f"{zlib.crc32(repr(key).encode()):08x}" * 7


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _window(node: Node, key, transient: bool) -> tuple[int, int]:
    """Most series live as long as their node; transient ones start late and/or stop early."""
    if not transient:
        return node.start_ms, node.end_ms
    r = _rng("life", key)
    life = node.end_ms - node.start_ms
    birth = node.start_ms + (int(r.uniform(0.05, 0.4) * life) if r.random() < 0.5 else 0)
    death = node.end_ms - (int(r.uniform(0.05, 0.4) * life) if r.random() < 0.5 else 0)
    return birth, max(death, birth + 10 * MINUTE)


def _serve_replicas(session: Session) -> list[dict[str, str]]:
    out = []
    workers = [n for n in session.nodes if not n.is_head] or [session.head]
    for i, (app, dep, replicas) in enumerate(
        (("app1", "Ingress", 1), ("llm", "LLMServer", 2), ("sglang", "SGLangServer", 1))
    ):
        for r in range(replicas):
            out.append(
                {
                    "application": app,
                    "deployment": dep,
                    "replica": f"{app}#{dep}#{session.name[-3:]}{r}",
                    "WorkerId": _hex(session.name, app, dep, r)[:56],
                    "_node": workers[(i + r) % len(workers)].ip,
                }
            )
    return out


def _entities(fam: Family, session: Session) -> list[Entity]:
    """Every label set of `fam` in `session`, on the target that exposes it."""
    n = fam.name
    head = session.head
    out: list[Entity] = []

    def add(node: Node, labels: dict[str, str], transient=False, port=NODE_PORT, otel=True):
        full = {"SessionName": session.name, **(OTEL if otel else {}), **labels}
        key = (session.name, n, node.ip, tuple(sorted(full.items())))
        b, d = _window(node, key, transient)
        out.append(Entity(f"{node.ip}:{port}", tuple(sorted(full.items())), b, d))

    def node_type(node: Node) -> dict[str, str]:
        return {
            "IsHeadNode": str(node.is_head).lower(),
            "RayNodeType": "head" if node.is_head else "worker",
            "ip": node.ip,
        }

    workers = [x for x in session.nodes if not x.is_head]
    if n.startswith("autoscaler_"):
        if n.endswith("_nodes"):
            dims = [{"NodeType": t} for t in ("headgroup", "cpu-group", "gpu-group")]
        elif n.endswith("_resources"):
            dims = [{"resource": r} for r in ("CPU", "GPU", "memory", "object_store_memory")]
        else:
            dims = [{}]
        for d in dims:
            transient = n != "autoscaler_active_nodes" and d.get("NodeType") != "headgroup"
            add(head, d, transient, AUTOSCALER_PORT, otel=False)
    elif n.startswith(("ray_node_gpu", "ray_node_gram")):
        for node in workers:
            for g in ("0", "1"):
                add(node, {**node_type(node), "GpuIndex": g, "GpuDeviceName": "NVIDIA A10G"})
    elif n.startswith("ray_node_"):
        for node in session.nodes:
            add(node, node_type(node))
    elif n.startswith("ray_tpu_"):
        for node in workers[:1]:
            for t in ("0", "1"):
                add(
                    node,
                    {
                        "ip": node.ip,
                        "TpuIndex": t,
                        "TpuDeviceName": "TPU-v4",
                        "TpuType": "v4-8",
                        "TpuTopology": "2x2x1",
                    },
                )
    elif n.startswith("ray_component_"):
        for node in session.nodes:
            comps = ["raylet", "agent", "ray::IDLE", "ray::Counter"] + (["gcs", "dashboard"] if node.is_head else [])
            for c in comps:
                add(
                    node,
                    {"Component": c, "ip": node.ip, "pid": str(100 + zlib.crc32(c.encode()) % 900)},
                    transient=c.startswith("ray::"),
                )
    elif n == "ray_tasks":
        for node in session.nodes:
            for state in ("RUNNING", "PENDING_NODE_ASSIGNMENT", "FINISHED", "FAILED", "RUNNING_IN_RAY_GET"):
                for name in ("square", "flaky"):
                    for retry in ("0", "1"):
                        for source in ("executor", "owner") if state == "FINISHED" else ("executor",):
                            if retry == "1" and name == "square":
                                continue
                            add(
                                node,
                                {
                                    "Component": "core_worker",
                                    "State": state,
                                    "Name": name,
                                    "IsRetry": retry,
                                    "Source": source,
                                    "JobId": "01000000",
                                    "NodeAddress": node.ip,
                                },
                                True,
                            )
    elif n == "ray_actors":
        for node in session.nodes:
            for state in ("ALIVE", "DEAD", "PENDING_CREATION"):
                for name in ("Counter", "BrokenInit"):
                    for source in ("gcs", "executor"):
                        add(
                            node,
                            {
                                "Component": "core_worker" if source == "executor" else "gcs_server",
                                "State": state,
                                "Name": name,
                                "Source": source,
                                "JobId": "01000000",
                                "NodeAddress": node.ip,
                            },
                            True,
                        )
    elif n == "ray_resources":
        for node in session.nodes:
            for name in ("CPU", "GPU", "memory", "object_store_memory"):
                for state in ("USED", "AVAILABLE"):
                    add(
                        node,
                        {"Component": "raylet", "Name": name, "State": state, "NodeAddress": node.ip, "WorkerId": ""},
                    )
    elif n == "ray_object_store_memory":
        for node in session.nodes:
            for loc in ("MMAP_SHM", "SPILLED", "WORKER_HEAP"):
                add(
                    node,
                    {
                        "Component": "raylet",
                        "Location": loc,
                        "ObjectState": "SEALED" if loc != "SPILLED" else "",
                        "NodeAddress": node.ip,
                        "WorkerId": "",
                    },
                )
    elif n == "ray_placement_groups":
        for state in ("CREATED", "PENDING", "REMOVED"):
            add(head, {"Component": "gcs_server", "State": state, "Source": "gcs", "NodeAddress": head.ip}, True)
    elif n in ("ray_memory_manager_worker_eviction", "ray_node_manager_unexpected_worker_failure"):
        for node in session.nodes:
            for name in ("square", "flaky"):
                add(node, {"Component": "raylet", "Name": name, "Type": "TASK", "NodeAddress": node.ip}, True)
    elif n.startswith("ray_data_iter_"):
        for ds in ("train_ds",):
            for split in ("0", "1"):
                add(workers[0] if workers else head, {"dataset": ds, "split": split}, True)
    elif n.startswith("ray_data_cluster_") or n == "ray_data_sched_loop_duration_s":
        for ds in ("train_ds", "eval_ds"):
            add(head, {"dataset": ds}, ds == "eval_ds")
    elif n.endswith("_per_node") and n.startswith("ray_data_"):
        for ds in ("train_ds",):
            for node in session.nodes:
                add(head, {"dataset": ds, "node_ip": node.ip}, True)
    elif n.startswith("ray_data_"):
        for ds in ("train_ds",):
            for op in ("ReadRange->MapBatches(add_one)", "split(2, equal=True)"):
                add(head, {"dataset": ds, "operator": op}, True)
    elif n.startswith("ray_train_"):
        run_id = _hex(session.name, "run")[:32]
        for run in ("train_run_a",):
            base = {"ray_train_run_name": run, "ray_train_run_id": run_id}
            if n == "ray_train_controller_state":
                for state in ("SCHEDULING", "RUNNING", "FINISHED"):
                    add(head, {**base, "ray_train_controller_state": state}, True)
            elif "worker_group" in n:
                add(head, base, True)
            else:
                for rank in ("0", "1"):
                    add(
                        workers[0] if workers else head,
                        {
                            **base,
                            "ray_train_worker_world_rank": rank,
                            "ray_train_worker_actor_id": _hex(session.name, rank)[:32],
                        },
                        True,
                    )
    elif n.startswith("ray_serve_controller_") or n in (
        "ray_serve_num_scheduling_tasks",
        "ray_serve_num_scheduling_tasks_in_backoff",
    ):
        add(head, {"Component": "serve_controller"} if "scheduling" not in n else {})
    elif n.startswith(("ray_serve_num_http", "ray_serve_http", "ray_serve_num_ongoing_http")):
        for app, route in (("app1", "/app1"), ("llm", "/v1/chat"), ("", "/-/healthz"), ("app1", "/-/routes")):
            labels = {"application": app, "route": route, "method": "GET"}
            if "error" in n:
                for code in ("500", "503"):
                    add(head, {**labels, "error_code": code}, True)
            elif "ongoing" in n:
                add(head, {"node_id": head.node_id})
                break
            else:
                add(head, labels)
    elif n.startswith(("ray_serve_num_grpc", "ray_serve_grpc", "ray_serve_num_ongoing_grpc")):
        for app, method in (("app1", "/app1.Predictor/Predict"), ("app1", "/ray.serve.RayServeAPIService/Healthz")):
            if "error" in n:
                add(head, {"application": app, "method": method, "error_code": "UNAVAILABLE"}, True)
            elif "ongoing" in n:
                add(head, {"node_id": head.node_id})
                break
            else:
                add(head, {"application": app, "method": method})
    elif n.startswith("ray_serve_"):
        for rep in _serve_replicas(session):
            node = next(x for x in session.nodes if x.ip == rep["_node"])
            labels = {k: v for k, v in rep.items() if not k.startswith("_")}
            if "request_counter" in n or "error_counter" in n or "processing_latency" in n:
                for route in ("/" + labels["application"], "/-/healthz"):
                    extra = {"route": route}
                    if labels["deployment"] == "LLMServer":
                        extra["model_name"] = "llama-3-8b"
                    add(node, {**labels, **extra}, True)
            elif "multiplexed_model_id" in n:
                add(node, {**labels, "model_id": "m1"}, True)
            else:
                add(node, labels, True)
    elif n.startswith("ray_vllm_"):
        for rep in _serve_replicas(session):
            if rep["deployment"] != "LLMServer":
                continue
            node = next(x for x in session.nodes if x.ip == rep["_node"])
            labels = {
                "model_name": "llama-3-8b" if rep["application"] == "llm" else "qwen-7b",
                "WorkerId": rep["WorkerId"],
            }
            if "success" in n:
                for reason in ("stop", "length"):
                    add(node, {**labels, "finished_reason": reason}, True)
            else:
                add(node, labels, True)
    elif n.startswith("ray_sglang_"):
        for rep in _serve_replicas(session):
            if rep["deployment"] != "SGLangServer":
                continue
            node = next(x for x in session.nodes if x.ip == rep["_node"])
            add(node, {"model_name": "sglang-llama", "deployment": rep["deployment"], "replica": rep["replica"]}, True)
    else:
        for node in session.nodes:
            add(node, {"Component": "raylet", "NodeAddress": node.ip, "WorkerId": ""})
    return out


# --- samples --------------------------------------------------------------------------------------------------------


def scrape_times(node: Node, port: int) -> np.ndarray:
    """The target's scrape timestamps (ms) and, separately, which of them failed (see `failed_scrapes`)."""
    first = T0_MS + ((node.start_ms - T0_MS + SCRAPE_MS - 1) // SCRAPE_MS) * SCRAPE_MS + node.offset_ms
    ts = np.arange(first, node.end_ms, SCRAPE_MS, dtype=np.int64)
    if node.jitter_ms:
        ts = ts + _rng("jitter", node.node_id, port).integers(0, node.jitter_ms + 1, len(ts))
    return ts


def failed_scrapes(node: Node, port: int, n: int) -> np.ndarray:
    r = _rng("failed", node.node_id, port)
    bad = r.random(n) < 0.015
    if n > 200:
        bad[120:124] = True  # one outage of a minute: four scrapes in a row
    return bad


def _counter(r: np.random.Generator, n: int, scale: float, resets: bool) -> np.ndarray:
    inc = r.exponential(scale, n) * (r.random(n) < 0.7)
    idle = r.integers(0, n)
    inc[idle : idle + n // 10] = 0.0  # a quiet stretch: rate 0
    inc[0] = r.uniform(0, 10 * scale)
    v = np.cumsum(inc)
    if resets and n > 20 and r.random() < 0.35:
        k = int(r.integers(5, n - 5))
        v[k:] = np.cumsum(inc[k:]) * r.uniform(0.0, 0.5)  # process restart: starts over near zero
    return v


def _gauge(r: np.random.Generator, n: int, scale: float, integral: bool) -> np.ndarray:
    t = np.arange(n)
    v = scale * (1 + 0.5 * np.sin(t / r.uniform(8, 60) + r.uniform(0, 6))) + r.normal(0, scale * 0.1, n)
    v = np.maximum(v, 0.0)
    if r.random() < 0.3:
        z = int(r.integers(0, n))
        v[z : z + n // 8] = 0.0
    return np.round(v) if integral else v


def _scale(name: str) -> tuple[float, bool]:
    """A plausible magnitude for a family, and whether its values are whole numbers."""
    if re.search(r"(bytes|memory|mem_|_mb|gram|_disk|_speed|_received|_sent|budget)", name):
        return 2.5e8, False
    if re.search(r"(utilization|percentage|perc|_rate$|cycle)", name):
        return 40.0, False
    if re.search(r"(seconds|_time|_s$|latency|duration)", name):
        return 3.0, False
    return 6.0, True


def family_samples(
    fam: Family, ent: Entity, ts: np.ndarray
) -> list[tuple[str, tuple[tuple[str, str], ...], np.ndarray]]:
    """(sample name, labels, values over ts) of one entity of a family."""
    r = _rng("values", fam.name, ent.labels, ent.target)
    scale, integral = _scale(fam.name)
    n = len(ts)
    if fam.type == "histogram":
        counts = r.poisson(r.uniform(0.2, 4.0), n) * (r.random(n) < 0.8)  # observations per scrape
        probs = r.dirichlet(np.ones(len(HIST_LE)))
        per_bucket = np.stack(
            [
                r.binomial(c, probs[:-1] / probs[:-1].sum() * 0.9) if c else np.zeros(len(HIST_LE) - 1, dtype=np.int64)
                for c in counts
            ]
        )
        finite = np.cumsum(np.minimum(per_bucket, counts[:, None]), axis=1)
        finite = np.minimum(finite, counts[:, None])  # cumulative over le, never above the total
        obs_sum = counts * r.uniform(0.05, 50.0) + r.random(n) * (counts > 0)
        series = np.concatenate([finite, counts[:, None], obs_sum[:, None], counts[:, None]], axis=1)
        series = np.cumsum(series, axis=0).astype(float)
        if n > 20 and r.random() < 0.3:
            k = int(r.integers(5, n - 5))
            series[k:] -= series[k - 1]  # restart: every bucket, the sum and the count start over together
            series[k:] = np.maximum(series[k:], 0.0)
        base = ent.labels
        out = [
            (f"{fam.name}_bucket", tuple(sorted(base + (("le", le),))), series[:, i]) for i, le in enumerate(HIST_LE)
        ]
        out.append((f"{fam.name}_sum", base, series[:, len(HIST_LE)]))
        out.append((f"{fam.name}_count", base, series[:, len(HIST_LE) + 1]))
        return out
    if fam.type == "counter":
        return [(f"{fam.name}_total", ent.labels, _counter(r, n, scale / 20, True))]
    if fam.monotone:
        return [(fam.name, ent.labels, _counter(r, n, scale / 20, False))]
    return [(fam.name, ent.labels, _gauge(r, n, scale, integral))]


# --- writing --------------------------------------------------------------------------------------------------------


def _ts(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{k}="{esc(v)}"' for k, v in labels)


@dataclass
class Dataset:
    """All scrape blocks, per session and node, in scrape order (the bytes the collector would have spooled)."""

    node_text: dict[tuple[str, str], str]  # (session, node_id) -> text without `# EOF`
    samples: int
    series: int
    families: list[Family]
    # (name, sorted labels) -> (ts ms, values) in time order, staleness markers (STALE_NAN) included
    series_samples: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )
    start_ms: int = T0_MS
    end_ms: int = END_MS

    def openmetrics(self) -> str:
        return "".join(self.node_text.values()) + "# EOF\n"


def generate(exprs: Iterable[str]) -> Dataset:
    fams = families(referenced_metrics(exprs))
    node_text: dict[tuple[str, str], str] = {}
    total = 0
    keys: set = set()
    chunks: dict = {}
    for session in SESSIONS:
        per_target: dict[str, list[tuple[Family, Entity]]] = {}
        for fam in fams:
            for ent in _entities(fam, session):
                per_target.setdefault(ent.target, []).append((fam, ent))
        for node in session.nodes:
            blocks: list[tuple[int, str]] = []
            for port in (NODE_PORT, AUTOSCALER_PORT) if node.is_head else (NODE_PORT,):
                target = f"{node.ip}:{port}"
                ts = scrape_times(node, port)
                bad = failed_scrapes(node, port, len(ts))
                target_labels = (("instance", target), ("job", JOB), ("ray_io_cluster", CLUSTER))
                # Per family: (header, [(sample line prefix, values, alive mask)])
                rendered: list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]] = []
                for fam, ent in per_target.get(target, []):
                    alive = (ts >= ent.birth_ms) & (ts < ent.death_ms)
                    lines = []
                    for name, labels, values in family_samples(fam, ent, ts):
                        merged = tuple(sorted(labels + target_labels))
                        keys.add((name, merged))
                        lines.append((f"{name}{{{_labels(merged)}}} ", values, alive))
                        _record(chunks, (name, merged), ts, values, alive & ~bad)
                    typ = fam.type
                    rendered.append(
                        (f"# HELP {fam.name} {fam.name.replace('_', ' ')}.\n# TYPE {fam.name} {typ}\n", lines)
                    )
                tl = _labels(target_labels)
                report = {
                    "up": (~bad).astype(float),  # the per-scrape series, as the blocks below write them
                    "scrape_duration_seconds": 0.004 + (np.arange(len(ts)) % 7) * 0.001,
                    "scrape_samples_scraped": np.zeros(len(ts)),
                }
                for i, t in enumerate(ts.tolist()):
                    stamp = _ts(t)
                    body: list[str] = []
                    count = 0
                    if not bad[i]:
                        for header, lines in rendered:
                            live = [
                                f"{prefix}{float(values[i])!r} {stamp}\n" for prefix, values, alive in lines if alive[i]
                            ]
                            if live:
                                body.append(header)
                                body.extend(live)
                                count += len(live)
                    up = 0 if bad[i] else 1
                    report["scrape_samples_scraped"][i] = count
                    head_lines = (
                        f"# HELP up 1 if the scrape of the target succeeded, else 0\n# TYPE up gauge\n"
                        f"up{{{tl}}} {up} {stamp}\n"
                        f"# HELP scrape_duration_seconds how long the scrape took\n"
                        f"# TYPE scrape_duration_seconds gauge\n"
                        f"scrape_duration_seconds{{{tl}}} {0.004 + (i % 7) * 0.001!r} {stamp}\n"
                        f"# HELP scrape_samples_scraped samples the target exposed in this scrape\n"
                        f"# TYPE scrape_samples_scraped gauge\n"
                        f"scrape_samples_scraped{{{tl}}} {count} {stamp}\n"
                    )
                    total += 3 + count
                    blocks.append((t, head_lines + "".join(body)))
                for name, values in report.items():  # in every block, failed or not: never stale
                    _record(chunks, (name, target_labels), ts, values, np.ones(len(ts), np.bool_))
            blocks.sort(key=lambda b: b[0])
            node_text[(session.name, node.node_id)] = "".join(b for _, b in blocks)
    series = {}
    for key, parts in chunks.items():
        ts = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
        order = np.argsort(ts, kind="stable")
        series[key] = (ts[order], values[order])
    return Dataset(node_text, total, len(keys), fams, series_samples=series)


def _record(chunks: dict, key, ts: np.ndarray, values: np.ndarray, present: np.ndarray) -> None:
    """One target's samples of a series where `present` (alive, scrape succeeded), and a staleness marker at each
    scrape that lacks it after one that had it, as a live Prometheus writes them (none after the last scrape)."""
    from historyserver.promql.model import STALE_NAN

    gone = np.flatnonzero(present[:-1] & ~present[1:]) + 1
    t = np.concatenate([ts[present], ts[gone]])
    v = np.concatenate([np.asarray(values, np.float64)[present], np.full(len(gone), STALE_NAN)])
    chunks.setdefault(key, []).append((t, v))


def write_openmetrics(data: Dataset, path: Path) -> Path:
    path.write_text(data.openmetrics())
    return path


def write_archive(data: Dataset, root: Path) -> list[tuple[object, list[str]]]:
    """The spool files of every node as archive segments under `root` (a LocalStore), cut the way the collector's
    shipping cuts them: two files per node (the spool rolled over), each in a few segments that end mid-line.
    Returns (SessionRef, node ids) per session, what compact_metrics takes."""
    from archive.layout import LogSegment, SessionRef
    from archive.logs import encode
    from archive.storage.local import LocalStore

    store = LocalStore(root)
    out = []
    for session in SESSIONS:
        ref = SessionRef(NAMESPACE, CLUSTER, session.name)
        for node in session.nodes:
            text = data.node_text[(session.name, node.node_id)].encode()
            roll = text.find(b"\n# HELP up ", len(text) // 2) + 1  # the spool moved to its next file here
            for seq, part in enumerate((text[:roll], text[roll:]), 1):
                bounds = [0, *sorted({len(part) // 3, (2 * len(part)) // 3 + 17}), len(part)]
                for start, end in zip(bounds, bounds[1:]):
                    seg = LogSegment(f"metrics-{seq:06d}.prom", 0, start, end, source="metrics")
                    store.put(ref.node(node.node_id).segment_key(seg), encode(part[start:end]))
        out.append((ref, [n.node_id for n in session.nodes]))
    return out


def compact(data: Dataset, root: Path) -> list[Path]:
    """Archive and compact every session (the real path); returns the compacted table folders, one per session."""
    from archive.storage.local import LocalStore
    from historyserver.compaction.export_events import Damage
    from historyserver.compaction.metrics import compact_metrics

    refs = write_archive(data, root / "archive")
    store = LocalStore(root / "archive")
    dirs = []
    for ref, node_ids in refs:
        out = root / "compacted" / ref.session
        out.mkdir(parents=True, exist_ok=True)
        damage = Damage()
        compact_metrics(store, ref, node_ids, out, damage)
        if damage.bad_lines:
            raise AssertionError(f"compaction found damage in generated data: {damage.examples}")
        dirs.append(out)
    return dirs


__all__ = [
    "CLUSTER",
    "Dataset",
    "END_MS",
    "SESSIONS",
    "T0_MS",
    "compact",
    "families",
    "generate",
    "referenced_metrics",
    "write_archive",
    "write_openmetrics",
]
