"""Shared fixtures: real registries on loopback, per-arch busybox binaries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.busybox import busybox_binaries
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
