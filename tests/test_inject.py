"""`rayhistory inject`: its output fits KubeRay's CRDs, injecting twice changes nothing, the shared volume is the one
KubeRay's autoscaler mounts, the examples in deploy/examples are its output, and what it cannot handle is refused
with a message naming where and what to do."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from rayhistory import inject
from tests.deploy_manifests import DEPLOY, _docs, pod_templates
from tests.test_deploy_validation import crd_errors

PLAIN = DEPLOY / "examples" / "plain"
ARGS = [
    "--archive",
    "s3://my-rayhistory-bucket/archive",
    "--env-from",
    "configmap:rayhistory-archive",
    "--env-from",
    "secret:rayhistory-archive-credentials",
    "--image",
    "rayhistory-collector:0.1.0",
]
OPTIONS = inject.Options(
    "s3://my-rayhistory-bucket/archive",
    "rayhistory-collector:0.1.0",
    [{"configMapRef": {"name": "rayhistory-archive"}}, {"secretRef": {"name": "rayhistory-archive-credentials"}}],
)


def _inject(text: str, options: inject.Options = OPTIONS) -> list[dict]:
    return _docs(inject.inject_text(text, options))


def _ray_service() -> dict:
    (cluster,) = [d for d in _docs((PLAIN / "raycluster.yaml").read_text()) if d["kind"] == "RayCluster"]
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "svc"},
        "spec": {"serveConfigV2": "applications: []\n", "rayClusterConfig": cluster["spec"]},
    }


def _inputs() -> dict[str, str]:
    found = {p.name: p.read_text() for p in sorted(PLAIN.glob("*.yaml"))}
    found["rayservice"] = yaml.safe_dump(_ray_service())
    return found


@pytest.mark.parametrize("name", sorted(_inputs()))
def test_output_fits_the_crds_and_injecting_twice_changes_nothing(name: str) -> None:
    once = _inject(_inputs()[name])
    ray_objects = [d for d in once if d["kind"] in ("RayCluster", "RayJob", "RayService")]
    assert ray_objects
    for obj in ray_objects:
        assert not crd_errors(obj), crd_errors(obj)
    assert _inject(yaml.safe_dump_all(once)) == once


def test_every_group_gets_the_collector_sharing_kuberays_ray_logs_volume() -> None:
    (cluster,) = [d for d in _inject((PLAIN / "raycluster.yaml").read_text()) if d["kind"] == "RayCluster"]
    templates = pod_templates(cluster)
    assert [part for part, _ in templates] == ["head", "worker group workers"]
    for part, template in templates:
        spec = template["spec"]
        ray, (collector,) = spec["containers"][0], spec["initContainers"]
        assert collector["name"] == inject.COLLECTOR and collector["restartPolicy"] == "Always", part
        # KubeRay mounts the volume named ray-logs at /tmp/ray in its autoscaler container: the same volume.
        for container in (ray, collector):
            assert {"name": "ray-logs", "mountPath": "/tmp/ray"} in container["volumeMounts"], part
        assert {"name": "ray-logs", "emptyDir": {}} in spec["volumes"]
        assert {"name": "RAY_enable_export_api_write", "value": "1"} in ray["env"]
        assert ray["lifecycle"]["preStop"]["exec"]["command"][:2] == ["ray", "stop"]
        assert spec["terminationGracePeriodSeconds"] >= inject.RAY_STOP_GRACE + inject.FINAL_FLUSH


def test_existing_settings_are_kept_and_a_ray_logs_volume_is_reused() -> None:
    plain = _docs((PLAIN / "raycluster.yaml").read_text())
    (cluster,) = [d for d in plain if d["kind"] == "RayCluster"]
    spec = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    spec["terminationGracePeriodSeconds"] = 300
    spec["volumes"] = [{"name": "ray-logs", "emptyDir": {"sizeLimit": "10Gi"}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "ray-logs", "mountPath": "/tmp/ray"}]
    spec["containers"][0]["env"] = [{"name": "RAY_enable_export_api_write", "value": "true"}]
    (out,) = [d for d in _inject(yaml.safe_dump_all(plain)) if d["kind"] == "RayCluster"]
    head = out["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["terminationGracePeriodSeconds"] == 300
    assert head["volumes"] == [{"name": "ray-logs", "emptyDir": {"sizeLimit": "10Gi"}}]
    assert head["containers"][0]["env"] == [{"name": "RAY_enable_export_api_write", "value": "true"}]


def test_a_new_image_replaces_the_collector_and_other_kinds_pass_through() -> None:
    once = _inject((PLAIN / "raycluster.yaml").read_text())
    again = _inject(yaml.safe_dump_all(once), inject.Options("s3://b/p", "registry.example/c:2", []))
    (cluster,) = [d for d in again if d["kind"] == "RayCluster"]
    (collector,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["initContainers"]
    assert collector["image"] == "registry.example/c:2" and "envFrom" not in collector
    assert {"name": "RAYHISTORY_ARCHIVE", "value": "s3://b/p"} in collector["env"]
    assert [d for d in again if d["kind"] == "ConfigMap"] == [d for d in once if d["kind"] == "ConfigMap"]


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_the_examples_are_injects_output(name: str) -> None:
    example = _docs((DEPLOY / "examples" / f"{name}-with-collector.yaml").read_text())
    assert _inject((PLAIN / f"{name}.yaml").read_text()) == example, (
        f"deploy/examples/{name}-with-collector.yaml differs from `rayhistory inject` of plain/{name}.yaml: "
        "regenerate it with the command in its header"
    )


def _refusal(obj: dict) -> str:
    with pytest.raises(inject.CannotInject) as caught:
        inject.inject_text(yaml.safe_dump(obj), OPTIONS)
    return str(caught.value)


def _head(obj: dict) -> dict:
    return obj["spec"]["rayClusterConfig"]["headGroupSpec"]


@pytest.mark.parametrize(
    "change, words",
    [
        (
            lambda o: _head(o)["template"]["spec"]["containers"][0].update(
                volumeMounts=[{"name": "tmp", "mountPath": "/tmp/ray"}]
            ),
            ["RayService svc head", "volume 'tmp'", "rename that volume to 'ray-logs'", "autoscaler"],
        ),
        (lambda o: _head(o)["rayStartParams"].update({"temp-dir": "/data/ray"}), ["temp-dir is '/data/ray'"]),
        (
            lambda o: _head(o)["template"]["spec"]["containers"][0].update(
                env=[{"name": "RAY_enable_ray_event", "value": "true"}]
            ),
            ["RAY_enable_ray_event", "KubeRay's injection"],
        ),
        (
            lambda o: o["spec"]["rayClusterConfig"].update(historyServerOptions={"collectorOptions": {"image": "x"}}),
            ["historyServerOptions", "one way, not both"],
        ),
        (
            lambda o: _head(o)["template"]["spec"]["containers"].append(
                {"name": "ray-history-collector", "image": "x"}
            ),
            ["'ray-history-collector' already collects"],
        ),
        (lambda o: o["spec"].pop("rayClusterConfig"), ["has no spec.rayClusterConfig"]),
    ],
)
def test_what_it_cannot_handle_is_refused_with_what_to_do(change, words: list[str]) -> None:
    obj = copy.deepcopy(_ray_service())
    change(obj)
    message = _refusal(obj)
    assert all(w in message for w in words), message


def test_a_rayjob_on_an_existing_cluster_is_refused() -> None:
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "j"},
        "spec": {"entrypoint": "python x.py", "clusterSelector": {"ray.io/cluster": "c"}},
    }
    assert "inject into that RayCluster instead" in _refusal(job)


def test_the_command_reads_stdin_writes_stdout_and_refuses_in_one_line(tmp_path: Path) -> None:
    stdout = io.StringIO()
    args = Namespace(filename="-", archive="s3://b/p", image=None, env_from=[])
    assert inject.run(args, stdin=io.StringIO((PLAIN / "rayjob.yaml").read_text()), stdout=stdout) == 0
    (job,) = [d for d in _docs(stdout.getvalue()) if d["kind"] == "RayJob"]
    assert not crd_errors(job)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: j}\nspec: {clusterSelector: {a: b}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "inject", "-f", str(bad), *ARGS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("rayhistory inject: RayJob j runs on an existing cluster") and "Traceback" not in (
        done.stderr
    )
    done = subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "inject", "-f", str(tmp_path / "missing.yaml"), *ARGS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "cannot read" in done.stderr
