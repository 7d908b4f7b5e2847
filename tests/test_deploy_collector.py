"""deploy/'s collector in the Ray pods: sidecar flags that `rayhistory collect` knows, a grace period that covers
`ray stop` and the final flush, and export events written to a volume the collector reads."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collector.settings import CollectorSettings
from tests.deploy_manifests import (
    SHUTDOWN_MARGIN,
    _report,  # noqa: F401  (a fixture: prints which renderer and schemas ran)
    check_flags,
    collector_argv,
    collectors,
    configmap,
    ray_pod_templates,
    sample_env,
    substituted,
)


def effective_settings(where: str, sidecar: dict, docs: tuple) -> CollectorSettings:
    """What `rayhistory collect` would run with in this container: its flags (parsed by the CLI's own parser, no
    abbreviations) over its environment (stand-ins for Secrets and the downward API), no unknown RAYHISTORY_ names."""
    from archive.storage.s3 import S3Settings
    from collector import cli as collect_cli

    argv = collector_argv(sidecar)
    check_flags(argv, "collect")
    env = sample_env(sidecar, docs)
    parser = argparse.ArgumentParser(prog="rayhistory collect", allow_abbrev=False)
    collect_cli.add_arguments(parser)
    args, extra = parser.parse_known_args([substituted(a, env) for a in argv])
    assert not extra, f"{where}: `rayhistory collect` does not take {extra}"
    assert not CollectorSettings.unknown_variables(env, also=(S3Settings,)), where
    return CollectorSettings.load(args, env)


def test_collector_sidecars_are_configured_by_their_environment() -> None:
    templates = ray_pod_templates()
    assert len(templates) >= 4  # head and workers, of the RayCluster and of the RayJob
    for where, _, template, docs in templates:
        (sidecar,) = collectors(template)
        settings = effective_settings(where, sidecar, docs)
        assert settings.session_dir == "/tmp/ray/session_latest", where
        assert settings.archive == configmap(docs, "rayhistory-archive")["data"]["RAYHISTORY_ARCHIVE"], where
        assert settings.cluster == "<RAY_CLUSTER_NAME>" and settings.namespace == "<POD_NAMESPACE>", where
        # The /metrics and /healthz port is named for scrapers, and bound on the pod IP.
        assert settings.http_host == "0.0.0.0" and settings.http_port, where
        assert {"name": "rh-collector", "containerPort": settings.http_port, "protocol": "TCP"} in sidecar["ports"]


# --- the collector in the Ray pods ----------------------------------------------------------------------------


@functools.cache
def ray_stop_flags() -> frozenset[str]:
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        pytest.fail(
            f"the ray command is missing beside {sys.executable}: install the test extras "
            "(`make install`, i.e. pip install -e '.[test]')",
            pytrace=False,
        )
    done = subprocess.run([str(ray), "stop", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return frozenset(re.findall(r"(--[a-z][a-z-]*)", done.stdout))


def test_grace_period_covers_ray_stop_and_the_final_flush() -> None:
    default_deadline = next(
        f.default for f in dataclasses.fields(CollectorSettings) if f.name == "final_flush_deadline"
    )
    for where, _, template, docs in ray_pod_templates():
        spec = template["spec"]
        ray = spec["containers"][0]
        stop = ray["lifecycle"]["preStop"]["exec"]["command"]
        assert stop[:2] == ["ray", "stop"], f"{where}: the Ray container must run `ray stop` before it is killed"
        assert set(a for a in stop[2:] if a.startswith("--")) <= ray_stop_flags(), stop
        stop_grace = int(stop[stop.index("--grace-period") + 1])
        (sidecar,) = collectors(template)
        deadline = effective_settings(where, sidecar, docs).final_flush_deadline
        grace = spec["terminationGracePeriodSeconds"]
        assert grace >= stop_grace + deadline + SHUTDOWN_MARGIN, (
            f"{where}: terminationGracePeriodSeconds {grace} < ray stop's {stop_grace} s + the final flush's "
            f"{deadline:.0f} s + {SHUTDOWN_MARGIN} s"
        )
        assert deadline <= default_deadline + 60, "a deadline this long keeps deleted pods around for minutes"


def test_ray_pods_write_export_events_to_a_volume_the_collector_reads() -> None:
    for where, _obj, template, docs in ray_pod_templates():
        spec = template["spec"]
        ray = spec["containers"][0]
        assert ray["image"].startswith("rayproject/ray:"), f"{where}: KubeRay takes the first container as Ray's"
        env = {e["name"]: e.get("value") for e in ray.get("env", [])}
        assert env.get("RAY_enable_export_api_write") == "1", where
        (sidecar,) = collectors(template)
        assert sidecar in spec.get("initContainers", []) and sidecar.get("restartPolicy") == "Always", (
            f"{where}: the collector must be a native sidecar, so it is stopped after Ray"
        )
        volumes = {v["name"]: v for v in spec["volumes"]}
        shared = {m["name"] for m in ray["volumeMounts"] if m["mountPath"] == "/tmp/ray"}
        # Named as KubeRay names the autoscaler's /tmp/ray volume, so the autoscaler shares it.
        assert shared == {"ray-logs"} == {m["name"] for m in sidecar["volumeMounts"] if m["mountPath"] == "/tmp/ray"}
        assert all("emptyDir" in volumes[n] for n in shared), where
        assert not any(m.get("readOnly") for m in sidecar["volumeMounts"]), "the checkpoint lives on that volume"
        env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in sidecar["env"]}
        assert env["POD_NAMESPACE"] == "metadata.namespace", where
        assert env["RAY_CLUSTER_NAME"] == "metadata.labels['ray.io/cluster']", where
        # The sidecar starts before Ray creates its session directory: the collector must wait for it, for as long
        # as Ray takes to start (its own test: tests/test_collector_sidecar.py).
        assert effective_settings(where, sidecar, docs).session_wait == math.inf, where
        security = sidecar["securityContext"]
        assert security["runAsNonRoot"] and security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
