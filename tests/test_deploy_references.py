"""deploy/'s references and pins: every `$(VAR)`, ConfigMap, Secret, label, volume and port reference resolves,
images are the versions this repository pins, and the examples and the OSS overlay use the archive settings they
must."""

from __future__ import annotations

import functools
import os
import re

import pytest

from tests.deploy_manifests import (
    DEPLOY,
    DOWNWARD_FIELDS,
    EXAMPLES,
    KUBERAY_POD_LABELS,
    OAUTH2_PROXY_IMAGE,
    RAY_KINDS,
    ROOT,
    _report,  # noqa: F401  (a fixture: prints which renderer and schemas ran)
    cluster_spec,
    configmap,
    every_pod_template,
    example,
    kuberay_injected,
    rendered,
)

# --- references -----------------------------------------------------------------------------------------------


@functools.cache
def documented_secrets() -> dict[str, frozenset[str]]:
    """Secrets the manifests expect to exist: those deploy/README.md tells you to create, with their keys."""
    text = (DEPLOY / "README.md").read_text().replace("\\\n", " ")
    secrets: dict[str, frozenset[str]] = {}
    for line in text.splitlines():
        m = re.search(r"kubectl create secret generic (\S+)", line)
        if m:
            secrets[m.group(1)] = frozenset(re.findall(r"--from-literal=([A-Za-z_][A-Za-z0-9_]*)=", line))
    return secrets


def var_references(value: str) -> list[str]:
    """The $(VAR) the kubelet expands in a value ($$ escapes a $)."""
    found, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            i += 2
        elif value.startswith("$(", i):
            end = value.find(")", i)
            found.append(value[i + 2 : end])
            i = end + 1
        else:
            i += 1
    return found


def test_every_env_label_volume_port_and_secret_reference_resolves() -> None:
    problems: list[str] = []
    secrets = documented_secrets()
    for where, obj, template, docs in every_pod_template():
        spec = template["spec"]
        labels = set((template.get("metadata") or {}).get("labels", {}))
        if obj["kind"] in RAY_KINDS:
            labels |= KUBERAY_POD_LABELS
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                configmap(docs, v["configMap"]["name"])
        if "serviceAccountName" in spec and obj["kind"] not in RAY_KINDS:
            assert any(
                o["kind"] == "ServiceAccount" and o["metadata"]["name"] == spec["serviceAccountName"] for o in docs
            ), f"{where}: no ServiceAccount {spec['serviceAccountName']}"
        for container in spec.get("initContainers", []) + spec["containers"]:
            at = f"{where} container {container['name']}"
            defined: set[str] = set()
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    defined |= {
                        source.get("prefix", "") + k
                        for k in configmap(docs, source["configMapRef"]["name"]).get("data", {})
                    }
                if "secretRef" in source:
                    name = source["secretRef"]["name"]
                    if name not in secrets:
                        problems.append(f"{at}: Secret {name} is neither defined nor documented in deploy/README.md")
                    defined |= {source.get("prefix", "") + k for k in secrets.get(name, ())}
            for e in container.get("env", []):
                for var in var_references(e.get("value", "")):
                    if var not in defined:
                        problems.append(f"{at}: env {e['name']} refers to $({var}), not defined before it")
                ref = e.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    r = ref["configMapKeyRef"]
                    if r["key"] not in configmap(docs, r["name"]).get("data", {}):
                        problems.append(f"{at}: ConfigMap {r['name']} has no key {r['key']}")
                if "secretKeyRef" in ref:
                    r = ref["secretKeyRef"]
                    if r["key"] not in secrets.get(r["name"], ()):
                        problems.append(
                            f"{at}: Secret {r['name']} key {r['key']} is not in deploy/README.md's "
                            "`kubectl create secret` command"
                        )
                if "fieldRef" in ref:
                    m = DOWNWARD_FIELDS.match(ref["fieldRef"]["fieldPath"])
                    if not m:
                        problems.append(f"{at}: the downward API has no field {ref['fieldRef']['fieldPath']}")
                    elif m.group(4) and m.group(3) == "labels" and m.group(4) not in labels:
                        problems.append(f"{at}: the pod has no label {m.group(4)}")
                defined.add(e["name"])
            for value in container.get("command", []) + container.get("args", []):
                for var in var_references(value):
                    if var not in defined:
                        problems.append(f"{at}: $({var}) is not in the container's environment (left as is)")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    problems.append(f"{at}: no volume {mount['name']}")
            ports = {p.get("name") for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = (container.get(probe) or {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{at}: {probe} uses port {port}, which the container does not name")
    assert not problems, "\n".join(problems)
    assert secrets, "deploy/README.md must show how to create the credentials Secret"


def test_images_are_the_versions_this_repository_pins() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+, the project supports 3.10
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    (ray_pin,) = set(re.findall(r'"ray==([^"]+)"', pyproject))
    allowed = {
        f"rayhistory-server:{version}",
        f"rayhistory-collector:{version}",
        f"rayproject/ray:{ray_pin}",
        OAUTH2_PROXY_IMAGE,
    }
    seen = set()
    for where, obj, template, _ in every_pod_template():
        options = (cluster_spec(obj).get("historyServerOptions") or {}).get("collectorOptions")
        if options:  # KubeRay's own injection runs this image
            assert options["image"] in allowed, f"{where}: collectorOptions.image {options['image']}"
            seen.add(options["image"])
        for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            assert container["image"] in allowed, f"{where}: image {container['image']} (expected one of {allowed})"
            seen.add(container["image"])
        if obj["kind"] in RAY_KINDS:
            assert cluster_spec(obj)["rayVersion"] == ray_pin, where
    assert seen == allowed


# --- the archive settings -------------------------------------------------------------------------------------


def test_examples_use_the_same_archive_settings_as_the_base_and_the_same_cluster() -> None:
    (base,) = [o for o in rendered("base") if o["kind"] == "ConfigMap"]
    for name in EXAMPLES:
        docs = example(name)
        injected = [cluster_spec(o)["historyServerOptions"] for o in docs if kuberay_injected(o)]
        if not injected:
            data = configmap(docs, "rayhistory-archive")["data"]  # the base's archive settings, plus SLS's stores
            assert {k: data.get(k) for k in base["data"]} == base["data"], name
        for options in injected:  # KubeRay's injection takes literal env, no envFrom
            env = {e["name"]: e.get("value") for e in options["collectorOptions"]["env"]}
            assert {k: env.get(k) for k in base["data"]} == base["data"], name
    (cluster,) = [o for o in example("raycluster-with-collector.yaml") if o["kind"] == "RayCluster"]
    (job,) = [o for o in example("rayjob-with-collector.yaml") if o["kind"] == "RayJob"]
    assert job["spec"]["rayClusterSpec"] == cluster["spec"], "the RayJob's cluster drifted from the RayCluster example"
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_the_oss_overlay_makes_boto3_address_oss_as_it_requires(monkeypatch: pytest.MonkeyPatch) -> None:
    from archive.storage import open_store

    (config,) = [o for o in rendered("oss") if o["kind"] == "ConfigMap"]
    data = config["data"]
    assert re.fullmatch(r"https://s3\.oss-[a-z0-9-]+\.aliyuncs\.com", data["AWS_ENDPOINT_URL"]), data
    assert data["RAYHISTORY_S3_ADDRESSING_STYLE"] == "virtual"
    for key in [k for k in os.environ if k.startswith(("AWS_", "RAYHISTORY_S3_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    store = open_store(data["RAYHISTORY_ARCHIVE"])  # builds the client; nothing is sent
    client = store._client
    assert client.meta.config.s3["addressing_style"] == "virtual"
    assert client.meta.config.request_checksum_calculation == "when_required"
    assert client.meta.config.response_checksum_validation == "when_required"
    bucket = data["RAYHISTORY_ARCHIVE"].removeprefix("s3://").split("/")[0]
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    host = data["AWS_ENDPOINT_URL"].removeprefix("https://")
    assert url.startswith(f"https://{bucket}.{host}/k?"), url
