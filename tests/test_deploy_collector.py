"""deploy/'s collector in the Ray pods: sidecar flags that `rayhistory collect` knows, a grace period that covers
`ray stop` and the final flush, and export events written to a volume the collector reads."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy_manifests import (
    SHUTDOWN_MARGIN,
    _report,  # noqa: F401  (a fixture: prints which renderer and schemas ran)
    check_flags,
    collector_argv,
    collectors,
    ray_pod_templates,
    sample_env,
    substituted,
)


def test_collector_sidecars_pass_flags_that_rayhistory_collect_knows() -> None:
    from collector import cli as collect_cli
    from collector.settings import CollectorSettings

    templates = ray_pod_templates()
    assert len(templates) >= 4  # head and workers, of the RayCluster and of the RayJob
    for where, _, template, docs in templates:
        (sidecar,) = collectors(template)
        argv = collector_argv(sidecar)
        given = check_flags(argv, "collect")
        assert given["--session-dir"] == "/tmp/ray/session_latest", where
        assert given["--archive"] == "$(RAYHISTORY_ARCHIVE)" and given["--cluster"] == "$(RAY_CLUSTER_NAME)", where
        # The same arguments through the CLI's own parser and settings: types, and no abbreviated flags.
        parser = argparse.ArgumentParser(prog="rayhistory collect", allow_abbrev=False)
        collect_cli.add_arguments(parser)
        args, extra = parser.parse_known_args([substituted(a, sample_env(sidecar, docs)) for a in argv])
        assert not extra, f"{where}: `rayhistory collect` does not take {extra}"
        CollectorSettings(
            **{
                f.name: getattr(args, f.name)
                for f in dataclasses.fields(CollectorSettings)
                if getattr(args, f.name) is not None
            }
        )


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
    from collector.settings import CollectorSettings

    default_deadline = next(
        f.default for f in dataclasses.fields(CollectorSettings) if f.name == "final_flush_deadline"
    )
    for where, _, template, _ in ray_pod_templates():
        spec = template["spec"]
        ray = spec["containers"][0]
        stop = ray["lifecycle"]["preStop"]["exec"]["command"]
        assert stop[:2] == ["ray", "stop"], f"{where}: the Ray container must run `ray stop` before it is killed"
        assert set(a for a in stop[2:] if a.startswith("--")) <= ray_stop_flags(), stop
        stop_grace = int(stop[stop.index("--grace-period") + 1])
        (sidecar,) = collectors(template)
        given = check_flags(collector_argv(sidecar), "collect")
        deadline = float(given.get("--final-flush-deadline") or default_deadline)
        grace = spec["terminationGracePeriodSeconds"]
        assert grace >= stop_grace + deadline + SHUTDOWN_MARGIN, (
            f"{where}: terminationGracePeriodSeconds {grace} < ray stop's {stop_grace} s + the final flush's "
            f"{deadline:.0f} s + {SHUTDOWN_MARGIN} s"
        )
        assert deadline <= default_deadline + 60, "a deadline this long keeps deleted pods around for minutes"


def test_ray_pods_write_export_events_to_a_volume_the_collector_reads() -> None:
    for where, _obj, template, _ in ray_pod_templates():
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
        assert shared and shared == {m["name"] for m in sidecar["volumeMounts"] if m["mountPath"] == "/tmp/ray"}
        assert all("emptyDir" in volumes[n] for n in shared), where
        assert not any(m.get("readOnly") for m in sidecar["volumeMounts"]), "the checkpoint lives on that volume"
        env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in sidecar["env"]}
        assert env["POD_NAMESPACE"] == "metadata.namespace", where
        assert env["RAY_CLUSTER_NAME"] == "metadata.labels['ray.io/cluster']", where
        # The sidecar starts before Ray creates its session directory: the collector must wait for it, for longer
        # than Ray takes to start (its own test: tests/test_collector.py, --wait-for-session).
        given = check_flags(collector_argv(sidecar), "collect")
        assert float(given.get("--wait-for-session") or 0) >= 600, where
        security = sidecar["securityContext"]
        assert security["runAsNonRoot"] and security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
