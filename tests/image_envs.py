"""The Python environment an image would hold, built here without a container runtime: the Dockerfile is read (its
final stage's ENTRYPOINT/CMD/USER, its build stage's COPY and `pip install` lines, ARG defaults substituted), the
COPY sources are laid out as the build context would put them, and the very same pip commands run into a fresh
virtualenv in place of the image's. tests/test_images.py runs the entrypoint from it; `python -m tests.image_envs`
prints each environment's installed size (docs/images.md).

What this cannot check is the base image itself (its Python is this machine's, of the same minor version, which the
test asserts) and anything a RUN line does besides pip (there is none; the parser refuses what it does not know).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {"collector": ROOT / "Dockerfile.collector", "server": ROOT / "Dockerfile.server"}
# The images the workflow builds: (Dockerfile, its build args); .github/workflows/images.yml lists the same.
VARIANTS = {
    "collector": ("collector", {}),
    "collector-sls": ("collector", {"EXTRAS": "sls"}),
    "server": ("server", {}),
}
IMAGE_VENV = "/opt/rayhistory"  # where both Dockerfiles put the environment


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    path: Path
    stages: list[Stage]
    args: dict[str, str]  # every ARG's default, global or per stage

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def last(self, keyword: str, stage: Stage | None = None) -> str | None:
        found = [v for k, v in (stage or self.final).instructions if k == keyword]
        return found[-1] if found else None

    def exec_form(self, keyword: str) -> list[str]:
        value = self.last(keyword)
        if value is None:
            return []
        parsed = json.loads(value)  # the shell form would run under /bin/sh -c: refused
        assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), f"{keyword} {value}"
        return parsed

    @property
    def command(self) -> list[str]:
        return self.exec_form("ENTRYPOINT") + self.exec_form("CMD")

    @property
    def build(self) -> Stage:
        (copied,) = {m.group(1) for _, v in self.final.instructions if (m := re.match(r"--from=(\S+)", v))}
        (stage,) = [s for s in self.stages if s.name == copied]
        return stage

    def substitute(self, text: str) -> str:
        return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: self.args.get(m.group(1), m.group(0)), text)

    def pip_installs(self) -> list[list[str]]:
        """The arguments of every `pip --python <image venv>/bin/python install` of the build stage, in order."""
        installs = []
        for keyword, value in self.build.instructions:
            if keyword != "RUN":
                continue
            for command in re.split(r"\s*&&\s*", self.substitute(value)):
                argv = shlex.split(command)
                if argv == ["python", "-m", "venv", "--without-pip", IMAGE_VENV]:
                    continue
                assert argv[:4] == ["pip", "--python", f"{IMAGE_VENV}/bin/python", "install"], (
                    f"{self.path.name}: RUN {command!r} is neither the venv nor a pip install into it: "
                    "tests/image_envs.py cannot reproduce it"
                )
                installs.append(argv[4:])
        return installs

    def copies(self) -> list[tuple[list[str], str]]:
        """(sources, destination) of the build stage's COPY lines, relative to its WORKDIR."""
        out = []
        for keyword, value in self.build.instructions:
            if keyword == "COPY":
                *sources, dest = shlex.split(value)
                assert not any(s.startswith("--") for s in sources), value
                out.append((sources, dest))
        return out


def parse(path: Path) -> Dockerfile:
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue  # comments, also inside a continued instruction, as Docker drops them
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        if (pending + raw).strip():
            lines.append(pending + raw)
        pending = ""
    stages: list[Stage] = []
    args: dict[str, str] = {}
    for line in lines:
        keyword, _, value = line.strip().partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", value, re.I)
            assert m, f"{path.name}: FROM {value}"
            stages.append(Stage(m.group(1), m.group(2)))
            continue
        if keyword == "ARG":
            name, _, default = value.partition("=")
            args[name] = default.strip('"')
        assert stages or keyword == "ARG", f"{path.name}: {keyword} before FROM"
        if stages:
            stages[-1].instructions.append((keyword, value))
    return Dockerfile(path, stages, args)


def context_copy(dockerfile: Dockerfile, into: Path) -> Path:
    """The build stage's COPY lines applied to `into` (its WORKDIR); returns that directory."""
    for sources, dest in dockerfile.copies():
        target = into / dest
        for source in sources:
            src = ROOT / source
            assert src.exists(), f"{dockerfile.path.name}: COPY {source}: no such file in the build context"
            if src.is_dir():
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
            else:
                shutil.copy2(src, target)
    return into


def build_env(name: str, where: Path, build_args: dict[str, str] | None = None) -> tuple[Dockerfile, Path]:
    """A fresh virtualenv holding exactly what the image's pip lines install (with `docker build --build-arg`
    values, each of which must be an ARG of the Dockerfile); returns (dockerfile, venv)."""
    dockerfile = parse(DOCKERFILES[name])
    for arg, value in (build_args or {}).items():
        assert arg in dockerfile.args, f"{dockerfile.path.name} has no ARG {arg}"
        dockerfile.args[arg] = value
    workdir = dockerfile.last("WORKDIR", dockerfile.build)
    assert workdir, f"{dockerfile.path.name}: the build stage needs a WORKDIR for its COPY lines"
    src = context_copy(dockerfile, where / "context")
    env_dir = where / "venv"
    venv.EnvBuilder(with_pip=False, clear=True).create(env_dir)
    environ = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for args in dockerfile.pip_installs():
        local = [str(src) + a[len(workdir) :] if a.startswith(workdir) else a for a in args]
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "--quiet", *local],
            capture_output=True,
            text=True,
            timeout=1200,
            env=environ,
        )
        assert done.returncode == 0, f"pip install {' '.join(local)} failed:\n{done.stdout}\n{done.stderr}"
    return dockerfile, env_dir


def installed(env_dir: Path) -> dict[str, str]:
    """Distribution name (normalized) -> version, as the environment's own pip lists them."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {re.sub(r"[-_.]+", "-", d["name"]).lower(): d["version"] for d in json.loads(done.stdout)}


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    """Build both environments in a temporary directory and print their installed sizes."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty"
        venv.EnvBuilder(with_pip=False).create(empty)
        baseline = tree_size(empty)
        print(
            f"Python {sys.version.split()[0]}; an empty virtualenv (no pip, as in the images): {baseline / 2**20:.2f} MiB"
        )
        print(f"{'image':<14} {'packages':>8} {'venv MiB':>9}  largest (MiB)")
        for name, (dockerfile, build_args) in VARIANTS.items():
            _, env_dir = build_env(dockerfile, Path(tmp) / name, build_args)
            size = tree_size(env_dir)
            site = next((env_dir / "lib").glob("python*/site-packages"))
            biggest = sorted(((tree_size(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)[:4]
            top = ", ".join(f"{n} {s / 2**20:.0f}" for s, n in biggest)
            print(f"{name:<14} {len(installed(env_dir)):>8} {size / 2**20:>9.1f}  {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
