"""Shared fixtures: real registries on loopback, per-arch busybox binaries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.busybox import busybox_binaries
from tests.support.dockerd import DockerEngine, start_docker_engine
from tests.support.dockerfile_app import ArtifactServer, push_base_image, serve_artifacts
from tests.support.fixture_images import FixtureImage, build_fixture
from tests.support.registry import Registry, start_registry


@pytest.fixture(scope="session")
def busybox() -> dict[str, Path]:
    """{'amd64': path, 'arm64': path} of Debian's static busybox."""
    return busybox_binaries()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP docker-registry on a free loopback port, shared by the session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def fixture_image(
    tmp_path_factory: pytest.TempPathFactory, busybox: dict[str, Path]
) -> FixtureImage:
    """A linux/amd64 + linux/arm64 busybox index in an OCI layout (read-only for tests)."""
    return build_fixture(tmp_path_factory.mktemp("fixture-layout"), busybox)


@pytest.fixture(scope="session")
def busybox_base(
    registry: Registry, busybox: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A linux/amd64 + linux/arm64 busybox image in the session registry (its reference)."""
    return push_base_image(registry.host, busybox, tmp_path_factory.mktemp("base-image"))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArtifactServer]:
    """Per-arch release artifacts served over loopback HTTP (one server per test module)."""
    server = serve_artifacts(tmp_path_factory.mktemp("artifacts"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """A real Docker Engine on its own socket; `docker_engine.run("pull", …)`."""
    engine = start_docker_engine(tmp_path_factory.mktemp("docker"))
    yield engine
    engine.stop()
