"""Copy against real registries, with skopeo as the independent client on the other side."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from multiarch_mirror.oci.client import NotFoundError, RegistryClient, RegistrySettings
from multiarch_mirror.oci.copy import copy_image
from multiarch_mirror.oci.layout import LayoutStore
from multiarch_mirror.oci.media import Descriptor, MediaType, Platform
from multiarch_mirror.oci.store import open_store
from tests.support.fixture_images import FixtureImage, skopeo, skopeo_push
from tests.support.registry import Registry, start_registry


@dataclass(frozen=True)
class Pushed:
    """An image skopeo pushed: where, its raw index bytes, its per-platform digests."""

    reference: str
    raw: bytes
    platforms: dict[str, str]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.raw).hexdigest()


def pushed_by_skopeo(registry: Registry, image: FixtureImage, *, docker: bool) -> Pushed:
    reference = f"{registry.host}/fixtures/busybox-{'docker' if docker else 'oci'}:1.0"
    skopeo_push(image, reference, docker_format=docker)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reference}").encode()
    index = json.loads(raw)
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }
    return Pushed(reference, raw, platforms)


@pytest.fixture(scope="module")
def oci_pushed(registry: Registry, fixture_image: FixtureImage) -> Pushed:
    return pushed_by_skopeo(registry, fixture_image, docker=False)


@pytest.fixture(scope="module")
def docker_pushed(registry: Registry, fixture_image: FixtureImage) -> Pushed:
    return pushed_by_skopeo(registry, fixture_image, docker=True)


@pytest.fixture(scope="module")
def other_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A second registry: copies to it must stream, since nothing can be mounted across."""
    reg = start_registry(tmp_path_factory.mktemp("other-registry"))
    yield reg
    reg.stop()


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(RegistrySettings()) as client:
        yield client


def fresh(registry: Registry, name: str = "copy") -> str:
    return f"{registry.host}/{name}-{uuid.uuid4().hex[:8]}/busybox"


def raw_manifest(reference: str) -> bytes:
    return skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reference}").encode()


@pytest.mark.parametrize("kind", ["oci", "docker"])
async def test_an_image_skopeo_pushed_is_copied_digest_for_digest(
    kind: str,
    request: pytest.FixtureRequest,
    other_registry: Registry,
    client: RegistryClient,
) -> None:
    pushed: Pushed = request.getfixturevalue(f"{kind}_pushed")
    dest = fresh(other_registry)
    src_store, dst_store = open_store(pushed.reference, client), open_store(dest, client)

    result = await copy_image(src_store, "1.0", dst_store, tags=["1.0"])

    assert result.digest == pushed.digest
    assert result.platforms == pushed.platforms
    assert result.blobs_copied == 4 and result.bytes_moved > 1_000_000
    assert raw_manifest(f"{dest}:1.0") == pushed.raw
    for digest in pushed.platforms.values():
        assert raw_manifest(f"{dest}@{digest}") == raw_manifest(
            f"{pushed.reference.rsplit(':', 1)[0]}@{digest}"
        )


async def test_a_docker_manifest_list_stays_a_docker_manifest_list(
    docker_pushed: Pushed, other_registry: Registry, client: RegistryClient
) -> None:
    dest = fresh(other_registry)

    await copy_image(
        open_store(docker_pushed.reference, client), "1.0", open_store(dest, client), tags=["1.0"]
    )

    assert json.loads(raw_manifest(f"{dest}:1.0"))["mediaType"] == MediaType.DOCKER_MANIFEST_LIST


async def test_skopeo_copies_every_platform_of_an_image_we_pushed(
    tmp_path: Path, fixture_image: FixtureImage, registry: Registry, client: RegistryClient
) -> None:
    dest = fresh(registry)
    await copy_image(
        LayoutStore(fixture_image.layout), fixture_image.ref, open_store(dest, client), tags=["v1"]
    )

    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{dest}:v1", f"oci:{tmp_path}:v1")

    index = json.loads((tmp_path / "index.json").read_text())
    assert index["manifests"][0]["digest"] == fixture_image.digest
    arm64 = json.loads(
        skopeo("inspect", "--override-arch", "arm64", "--tls-verify=false", f"docker://{dest}:v1")
    )
    assert arm64["Architecture"] == "arm64"
    arm64_manifest = (fixture_image.layout / "blobs" / "sha256").joinpath(
        fixture_image.platforms["linux/arm64"].removeprefix("sha256:")
    )
    assert arm64["Layers"] == [json.loads(arm64_manifest.read_text())["layers"][0]["digest"]]


async def test_copy_between_repositories_of_one_registry_mounts_instead_of_moving_bytes(
    oci_pushed: Pushed, registry: Registry, client: RegistryClient
) -> None:
    dest = fresh(registry)

    result = await copy_image(
        open_store(oci_pushed.reference, client), "1.0", open_store(dest, client), tags=["1.0"]
    )

    assert result.bytes_moved == 0
    assert result.blobs_mounted == 4
    assert result.blobs_copied == 0
    assert raw_manifest(f"{dest}:1.0") == oci_pushed.raw


async def test_a_second_copy_to_a_registry_moves_zero_bytes(
    oci_pushed: Pushed, other_registry: Registry, client: RegistryClient
) -> None:
    dest = fresh(other_registry)
    source, target = open_store(oci_pushed.reference, client), open_store(dest, client)
    await copy_image(source, "1.0", target, tags=["1.0"])

    again = await copy_image(source, "1.0", target, tags=["1.0", "latest"])

    assert again.bytes_moved == 0
    assert again.blobs_skipped == 4
    assert again.manifests_written == 0
    assert sorted(await target.list_tags()) == ["1.0", "latest"]


async def test_platform_filter_pushes_a_new_index_of_just_that_platform(
    oci_pushed: Pushed, other_registry: Registry, client: RegistryClient
) -> None:
    dest = fresh(other_registry)

    result = await copy_image(
        open_store(oci_pushed.reference, client),
        "1.0",
        open_store(dest, client),
        tags=["arm"],
        platforms=[Platform.parse("linux/arm64")],
    )

    index = json.loads(raw_manifest(f"{dest}:arm"))
    assert index["mediaType"] == MediaType.OCI_INDEX
    assert [m["digest"] for m in index["manifests"]] == [oci_pushed.platforms["linux/arm64"]]
    assert result.digest == "sha256:" + hashlib.sha256(raw_manifest(f"{dest}:arm")).hexdigest()
    assert result.blobs_copied == 2


async def test_registry_to_layout_and_back_keeps_the_digest(
    tmp_path: Path, oci_pushed: Pushed, other_registry: Registry, client: RegistryClient
) -> None:
    layout = LayoutStore(tmp_path, "busybox")
    await copy_image(open_store(oci_pushed.reference, client), "1.0", layout, tags=["1.0"])
    dest = fresh(other_registry)

    result = await copy_image(layout, "1.0", open_store(dest, client), tags=["1.0"])

    assert result.digest == oci_pushed.digest
    assert json.loads(skopeo("inspect", f"oci:{tmp_path}:busybox:1.0"))["Digest"] == (
        oci_pushed.digest
    )
    assert raw_manifest(f"{dest}:1.0") == oci_pushed.raw


async def test_a_missing_source_tag_fails_naming_it_and_writes_nothing(
    oci_pushed: Pushed, other_registry: Registry, client: RegistryClient
) -> None:
    dest = open_store(fresh(other_registry), client)

    with pytest.raises(NotFoundError, match=r"manifest 9\.9 on .*/fixtures/busybox-oci"):
        await copy_image(open_store(oci_pushed.reference, client), "9.9", dest, tags=["9.9"])

    assert await dest.list_tags() == []


async def test_a_large_layer_streams_through_in_constant_memory(
    tmp_path: Path, other_registry: Registry, client: RegistryClient
) -> None:
    """64 MiB of layer through a registry and back costs a few chunks of memory, not 64 MiB."""
    source = LayoutStore(tmp_path / "src")
    layer = os.urandom(64 << 20)
    layer_desc = Descriptor.of(layer, MediaType.OCI_LAYER_GZIP)
    await source.write_blob(layer_desc, _chunks(layer))
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    config_desc = Descriptor.of(config, MediaType.OCI_CONFIG)
    await source.write_blob(config_desc, _chunks(config))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "config": config_desc.to_dict(),
            "layers": [layer_desc.to_dict()],
        }
    ).encode()
    await source.put_manifest(manifest, MediaType.OCI_MANIFEST, tag="big")
    del layer
    remote = open_store(fresh(other_registry), client)

    tracemalloc.start()
    try:
        await copy_image(source, "big", remote, tags=["big"])
        back = await copy_image(remote, "big", LayoutStore(tmp_path / "back"), tags=["big"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert back.bytes_moved > 64 << 20
    assert peak < 24 << 20, f"peak traced memory {peak / 2**20:.0f} MiB"


async def _chunks(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
