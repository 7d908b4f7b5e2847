"""The series of tests/oracle_data.py's synthetic Ray metrics: the sessions and nodes scraped, which families the
dashboards' expressions reference (`referenced_metrics` walks promql_parser's AST), and the label sets of each
family (`_entities`, modelled on Ray 2.60's real exposition, reference/ray-2.60/metrics/). Deterministic: every
random choice is seeded by what it is for."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

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
