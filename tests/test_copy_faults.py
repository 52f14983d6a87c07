"""Copy through fault-injecting proxies: it ends with every digest right, or fails with no tag."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from multiarch_mirror.oci.client import (
    DigestMismatchError,
    RegistryClient,
    RegistrySettings,
    RegistryUnavailableError,
    RetryPolicy,
)
from multiarch_mirror.oci.copy import copy_image
from multiarch_mirror.oci.store import open_store
from tests.support.faultproxy import Fault, FaultPlan, FaultProxy
from tests.support.fixture_images import FixtureImage, skopeo, skopeo_push
from tests.support.registry import Registry

FAST = RetryPolicy(max_attempts=5, max_seconds=15.0, base_delay=0.05, max_delay=0.3)


@pytest.fixture(scope="module")
def source_image(registry: Registry, fixture_image: FixtureImage) -> str:
    """The fixture index, pushed by skopeo; returns its `registry/repo` (tag 1.0)."""
    repository = f"{registry.host}/faults-source/busybox"
    skopeo_push(fixture_image, f"{repository}:1.0")
    return repository.split("/", 1)[1]


@pytest.fixture
def source_proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.host) as proxy:
        yield proxy


@pytest.fixture
def dest_proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A second way into the same registry: a different host, so blobs stream, not mount."""
    with FaultProxy(registry.host) as proxy:
        yield proxy


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(RegistrySettings(credentials={}, retry=FAST)) as client:
        yield client


def fresh_repository(proxy: FaultProxy) -> str:
    return f"{proxy.host}/faults-{uuid.uuid4().hex[:8]}/busybox"


def skopeo_raw(reference: str) -> bytes:
    return skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reference}").encode()


async def test_copy_through_resets_errors_throttling_and_slowness_ends_with_every_digest_right(
    source_image: str,
    source_proxy: FaultProxy,
    dest_proxy: FaultProxy,
    client: RegistryClient,
    fixture_image: FixtureImage,
) -> None:
    source_proxy.add(FaultPlan(Fault.reset_midway(200_000), match=r"GET .*/blobs/", limit=2))
    source_proxy.add(FaultPlan(Fault.slow(0.3), match=r"GET .*/manifests/", limit=2))
    dest_proxy.add(FaultPlan(Fault.reset(), match=r"PUT .*/blobs/uploads/", limit=2))
    dest_proxy.add(FaultPlan(Fault.error(500), match=r"HEAD .*/blobs/", limit=2))
    dest_proxy.add(FaultPlan(Fault.error(503), match=r"POST .*/blobs/uploads/", limit=1))
    dest_proxy.add(FaultPlan(Fault.throttle("1"), match=r"PUT .*/manifests/", limit=1))
    dest = fresh_repository(dest_proxy)

    result = await copy_image(
        open_store(f"{source_proxy.host}/{source_image}", client),
        "1.0",
        open_store(dest, client),
        tags=["1.0"],
    )

    assert source_proxy.injected == 4 and dest_proxy.injected == 6
    assert result.digest == fixture_image.digest
    assert result.platforms == fixture_image.platforms
    raw = skopeo_raw(f"{dest}:1.0")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == fixture_image.digest
    for digest in fixture_image.platforms.values():
        manifest = json.loads(skopeo_raw(f"{dest}@{digest}"))
        for blob in [manifest["config"], *manifest["layers"]]:
            assert blob["digest"] in fixture_image.blobs


async def test_the_tag_is_the_last_thing_written(
    source_image: str, dest_proxy: FaultProxy, client: RegistryClient, registry: Registry
) -> None:
    dest = fresh_repository(dest_proxy)

    await copy_image(
        open_store(f"{registry.host}/{source_image}", client),
        "1.0",
        open_store(dest, client),
        tags=["1.0"],
    )

    writes = dest_proxy.requests(r"^(PUT|POST|PATCH) ")
    assert writes[-1].endswith("/manifests/1.0")
    assert all("/manifests/1.0" not in line for line in writes[:-1])
    assert sum("/manifests/sha256:" in line for line in writes) == 3


async def test_when_faults_never_stop_the_copy_fails_clearly_and_writes_no_tag(
    source_image: str, dest_proxy: FaultProxy, client: RegistryClient, registry: Registry
) -> None:
    dest_proxy.add(FaultPlan(Fault.error(500), match=r"PUT .*/blobs/uploads/"))
    dest = fresh_repository(dest_proxy)
    target = open_store(dest, client)

    with pytest.raises(RegistryUnavailableError) as caught:
        await copy_image(
            open_store(f"{registry.host}/{source_image}", client), "1.0", target, tags=["1.0"]
        )

    message = str(caught.value)
    assert f"on {dest_proxy.host} failed after {FAST.max_attempts} attempt(s)" in message
    assert "upload of sha256:" in message
    dest_proxy.clear()
    assert await target.list_tags() == []
    assert dest_proxy.requests(r"PUT .*/manifests/") == []


async def test_a_blob_corrupted_in_transit_fails_the_copy_and_writes_no_tag(
    source_image: str,
    source_proxy: FaultProxy,
    dest_proxy: FaultProxy,
    client: RegistryClient,
    fixture_image: FixtureImage,
) -> None:
    source_proxy.add(FaultPlan(Fault.corrupt(), match=r"GET .*/blobs/"))
    target = open_store(fresh_repository(dest_proxy), client)

    with pytest.raises(DigestMismatchError, match="does not match its descriptor"):
        await copy_image(
            open_store(f"{source_proxy.host}/{source_image}", client), "1.0", target, tags=["1.0"]
        )

    assert await target.list_tags() == []
    for digest in fixture_image.blobs:
        assert not await target.blob_exists(digest)
