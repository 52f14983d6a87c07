"""The registry client and `RegistryStore` against a real plain-HTTP docker-registry."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from multiarch_mirror.oci.client import (
    DigestMismatchError,
    NotFoundError,
    RegistryClient,
    RegistryError,
    RegistrySettings,
)
from multiarch_mirror.oci.media import Descriptor, ImageIndex, Manifest, MediaType, Platform
from multiarch_mirror.oci.reference import Reference
from multiarch_mirror.oci.store import RegistryStore, open_store
from tests.support.images import chunks_of, push_small_image
from tests.support.registry import Registry


async def read_all(store: RegistryStore, desc: Descriptor) -> bytes:
    async with store.read_blob(desc) as chunks:
        return b"".join([chunk async for chunk in chunks])


def repo_name() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(RegistrySettings(credentials={})) as client:
        yield client


@pytest.fixture
def store(registry: Registry, client: RegistryClient) -> RegistryStore:
    return RegistryStore(client, Reference.parse(f"{registry.host}/{repo_name()}"))


async def test_blob_uploaded_in_one_request_reads_back_verified(store: RegistryStore) -> None:
    data = os.urandom(1_500_000)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)

    await store.write_blob(desc, chunks_of(data))

    assert await store.blob_exists(desc.digest)
    assert await read_all(store, desc) == data


async def test_blob_uploaded_in_chunks_reads_back_verified(registry: Registry) -> None:
    data = os.urandom(300_000)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
    settings = RegistrySettings(credentials={}, chunked_uploads=True, chunk_size=64 * 1024)
    async with RegistryClient(settings) as client:
        store = RegistryStore(client, Reference.parse(f"{registry.host}/{repo_name()}"))
        await store.write_blob(desc, chunks_of(data, 10_000))

        assert await read_all(store, desc) == data


async def test_upload_from_a_callable_source_reads_back(store: RegistryStore) -> None:
    data = os.urandom(10_000)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)

    await store.write_blob(desc, lambda: chunks_of(data))

    assert await read_all(store, desc) == data


async def test_missing_blob_does_not_exist(store: RegistryStore) -> None:
    assert not await store.blob_exists(Descriptor.of(b"never pushed", "x").digest)


async def test_upload_of_bytes_not_matching_the_digest_is_refused_and_not_stored(
    store: RegistryStore,
) -> None:
    claimed = Descriptor.of(b"A" * 5000, MediaType.OCI_LAYER_GZIP)

    with pytest.raises(DigestMismatchError, match=claimed.digest):
        await store.write_blob(claimed, chunks_of(b"B" * 5000))

    assert not await store.blob_exists(claimed.digest)


async def test_upload_of_more_bytes_than_the_descriptor_says_is_refused(
    store: RegistryStore,
) -> None:
    claimed = Descriptor.of(b"A" * 5000, MediaType.OCI_LAYER_GZIP)

    with pytest.raises(DigestMismatchError, match="run past its 5000-byte size"):
        await store.write_blob(claimed, chunks_of(b"A" * 6000))

    assert not await store.blob_exists(claimed.digest)


async def test_upload_of_fewer_bytes_than_the_descriptor_says_is_refused(
    store: RegistryStore,
) -> None:
    claimed = Descriptor.of(b"A" * 5000, MediaType.OCI_LAYER_GZIP)

    with pytest.raises(DigestMismatchError, match=r"\(4000 bytes\)"):
        await store.write_blob(claimed, lambda: chunks_of(b"A" * 4000))

    assert not await store.blob_exists(claimed.digest)


async def test_reading_a_blob_with_a_wrong_descriptor_fails(store: RegistryStore) -> None:
    data = os.urandom(2000)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
    await store.write_blob(desc, chunks_of(data))
    lying = desc.model_copy(update={"size": 1000})

    with pytest.raises(DigestMismatchError, match="larger than"):
        await read_all(store, lying)


async def test_manifest_put_by_tag_resolves_and_reads_back_verified(store: RegistryStore) -> None:
    desc = await push_small_image(store, tag="1.0")

    resolved = await store.resolve("1.0")
    got, data = await store.get_manifest("1.0")

    assert resolved == Descriptor(
        media_type=MediaType.OCI_MANIFEST, digest=desc.digest, size=desc.size
    )
    assert got.digest == desc.digest
    assert Manifest.model_validate_json(data).config.media_type == MediaType.OCI_CONFIG
    assert await store.list_tags() == ["1.0"]


async def test_manifest_put_by_digest_writes_no_tag(store: RegistryStore) -> None:
    desc = await push_small_image(store)

    assert (await store.get_manifest(desc.digest))[0].digest == desc.digest
    assert await store.list_tags() == []


async def test_index_of_two_platforms_reads_back(store: RegistryStore) -> None:
    amd64 = await push_small_image(store)
    arm64 = await push_small_image(store)
    index = ImageIndex(
        manifests=[
            amd64.model_copy(update={"platform": Platform.parse("linux/amd64")}),
            arm64.model_copy(update={"platform": Platform.parse("linux/arm64")}),
        ]
    ).to_json()

    desc = await store.put_manifest(index, MediaType.OCI_INDEX, tag="multi")

    got, data = await store.get_manifest("multi")
    assert got == Descriptor(media_type=MediaType.OCI_INDEX, digest=desc.digest, size=len(index))
    platforms = [str(m.platform) for m in ImageIndex.model_validate_json(data).manifests]
    assert platforms == ["linux/amd64", "linux/arm64"]


async def test_missing_manifest_resolves_to_none_and_get_raises_not_found(
    store: RegistryStore,
) -> None:
    assert await store.resolve("nope") is None
    with pytest.raises(NotFoundError, match=r"nope.*404 \(MANIFEST_UNKNOWN: manifest unknown\)"):
        await store.get_manifest("nope")


async def test_every_tag_is_listed(registry: Registry, client: RegistryClient) -> None:
    reference = Reference.parse(f"{registry.host}/{repo_name()}")
    store = RegistryStore(client, reference)
    desc = await push_small_image(store)
    _, data = await store.get_manifest(desc.digest)
    expected = [f"v{i:02d}" for i in range(7)]
    for tag in expected:
        await store.put_manifest(data, MediaType.OCI_MANIFEST, tag=tag)

    tags = await client.list_tags(reference.registry, reference.repository, page_size=3)

    assert sorted(tags) == expected


async def test_a_repository_not_yet_created_has_no_tags(store: RegistryStore) -> None:
    assert await store.list_tags() == []


async def test_blob_mounts_between_repositories_of_one_registry(
    registry: Registry, client: RegistryClient, store: RegistryStore
) -> None:
    data = os.urandom(4000)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
    await store.write_blob(desc, chunks_of(data))
    other = RegistryStore(client, Reference.parse(f"{registry.host}/{repo_name()}"))

    assert await other.mount_blob(desc, store)
    assert await read_all(other, desc) == data


async def test_mount_of_an_absent_blob_is_declined(
    registry: Registry, client: RegistryClient, store: RegistryStore
) -> None:
    other = RegistryStore(client, Reference.parse(f"{registry.host}/{repo_name()}"))
    desc = Descriptor.of(b"not in the source", MediaType.OCI_LAYER_GZIP)

    assert not await other.mount_blob(desc, store)
    assert not await other.blob_exists(desc.digest)


async def test_upload_with_mount_from_uses_the_declined_session(
    registry: Registry, client: RegistryClient, store: RegistryStore
) -> None:
    data = os.urandom(4000)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)

    mounted = await client.upload_blob(
        registry.host, store.repository, desc, chunks_of(data), mount_from="test/elsewhere"
    )

    assert not mounted
    assert await read_all(store, desc) == data


async def test_mount_from_another_registry_is_not_attempted(
    registry: Registry, client: RegistryClient, store: RegistryStore
) -> None:
    elsewhere = RegistryStore(client, Reference.parse(f"localhost:1/{repo_name()}"))
    desc = Descriptor.of(b"x", MediaType.OCI_LAYER_GZIP)

    assert not await store.mount_blob(desc, elsewhere)


async def test_deleted_manifest_is_gone(store: RegistryStore, client: RegistryClient) -> None:
    desc = await push_small_image(store, tag="doomed")

    await client.delete_manifest(store.registry, store.repository, desc.digest)

    assert await store.resolve(desc.digest) is None
    assert await store.list_tags() == []


async def test_deleted_blob_is_gone(store: RegistryStore, client: RegistryClient) -> None:
    data = os.urandom(1000)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
    await store.write_blob(desc, chunks_of(data))

    await client.delete_blob(store.registry, store.repository, desc.digest)

    assert not await store.blob_exists(desc.digest)


async def test_deleting_a_tag_where_the_registry_cannot_says_what_to_do_instead(
    store: RegistryStore,
) -> None:
    await push_small_image(store, tag="keep")

    with pytest.raises(
        RegistryError, match=r"cannot delete tag 'keep'.*delete the manifest by digest"
    ):
        await store.delete_tag("keep")

    assert await store.list_tags() == ["keep"]


async def test_referrers_fall_back_to_the_digest_tag_schema(store: RegistryStore) -> None:
    subject = await push_small_image(store, tag="1.0")
    empty = Descriptor.of(b"{}", MediaType.OCI_EMPTY)
    await store.write_blob(empty, chunks_of(b"{}"))
    artifact = Manifest(
        artifact_type="application/vnd.example.signature",
        config=empty,
        layers=[empty],
        subject=subject,
    ).to_json()
    signature = await store.put_manifest(artifact, MediaType.OCI_MANIFEST)
    fallback = ImageIndex(
        manifests=[
            signature.model_copy(update={"artifact_type": "application/vnd.example.signature"})
        ]
    ).to_json()
    await store.put_manifest(
        fallback, MediaType.OCI_INDEX, tag=subject.digest.replace("sha256:", "sha256-")
    )

    found = await store.referrers(subject.digest)
    filtered = await store.referrers(subject.digest, "application/vnd.other")

    assert [d.digest for d in found] == [signature.digest]
    assert filtered == []


async def test_referrers_of_an_image_without_any_are_empty(store: RegistryStore) -> None:
    subject = await push_small_image(store)

    assert await store.referrers(subject.digest) == []


async def test_open_store_appends_the_namespace_to_the_target(
    registry: Registry, client: RegistryClient
) -> None:
    store = open_store(f"{registry.host}/acme/mirror", client, namespace="outline")

    assert store.display == f"{registry.host}/acme/mirror/outline"
