"""The OCI image layout store: spec-conformant on disk, verified, atomic, read by skopeo."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multiarch_mirror.errors import UsageError
from multiarch_mirror.oci.copy import copy_image
from multiarch_mirror.oci.layout import LayoutError, LayoutStore
from multiarch_mirror.oci.media import Descriptor, MediaType
from tests.support.fixture_images import FixtureImage, skopeo

CONFIG = b'{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


async def chunks_of(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def manifest_bytes(config: bytes = CONFIG) -> bytes:
    config_desc = Descriptor.of(config, MediaType.OCI_CONFIG)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "config": config_desc.to_dict(),
            "layers": [],
        }
    ).encode()


async def store_image(store: LayoutStore, tag: str | None, config: bytes = CONFIG) -> Descriptor:
    await store.write_blob(Descriptor.of(config, MediaType.OCI_CONFIG), chunks_of(config))
    return await store.put_manifest(manifest_bytes(config), MediaType.OCI_MANIFEST, tag=tag)


async def test_new_layout_has_the_oci_layout_file_index_and_ref_name(tmp_path: Path) -> None:
    desc = await store_image(LayoutStore(tmp_path, namespace="demo"), "1.0")

    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == MediaType.OCI_INDEX
    assert index["manifests"] == [
        {
            "mediaType": MediaType.OCI_MANIFEST,
            "digest": desc.digest,
            "size": desc.size,
            "annotations": {"org.opencontainers.image.ref.name": "demo:1.0"},
        }
    ]
    assert (tmp_path / "blobs" / "sha256" / desc.digest.removeprefix("sha256:")).is_file()


async def test_skopeo_inspects_an_index_we_wrote_by_namespace_and_tag(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    source = LayoutStore(fixture_image.layout)
    await copy_image(source, fixture_image.ref, LayoutStore(tmp_path, "demo"), tags=["1.0"])

    raw = skopeo("inspect", "--raw", f"oci:{tmp_path}:demo:1.0")
    arm64 = json.loads(skopeo("inspect", "--override-arch", "arm64", f"oci:{tmp_path}:demo:1.0"))

    assert (
        raw.encode()
        == (fixture_image.layout / "blobs" / "sha256")
        .joinpath(fixture_image.digest.removeprefix("sha256:"))
        .read_bytes()
    )
    assert arm64["Architecture"] == "arm64"
    assert arm64["Digest"] == fixture_image.digest


async def test_skopeo_copies_every_platform_out_of_a_layout_we_wrote(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    ours = tmp_path / "ours"
    await copy_image(
        LayoutStore(fixture_image.layout), fixture_image.ref, LayoutStore(ours), tags=["v1"]
    )

    skopeo("copy", "--all", f"oci:{ours}:v1", f"oci:{tmp_path / 'theirs'}:v1")

    theirs = json.loads((tmp_path / "theirs" / "index.json").read_text())
    assert theirs["manifests"][0]["digest"] == fixture_image.digest


async def test_tags_are_scoped_to_the_namespace(tmp_path: Path) -> None:
    app, db = LayoutStore(tmp_path, "app"), LayoutStore(tmp_path, "db")
    await store_image(app, "1.0")
    await store_image(app, "1.1")
    await store_image(db, "15")

    assert await app.list_tags() == ["1.0", "1.1"]
    assert await db.list_tags() == ["15"]
    assert await LayoutStore(tmp_path).list_tags() == ["app:1.0", "app:1.1", "db:15"]


async def test_retagging_moves_the_tag_instead_of_adding_an_entry(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path, "app")
    await store_image(store, "latest")
    second = await store_image(store, "latest", config=CONFIG.replace(b"arm64", b"amd64"))

    index = json.loads((tmp_path / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [second.digest]
    resolved = await store.resolve("latest")
    assert resolved is not None and resolved.digest == second.digest


async def test_concurrent_tag_writes_from_two_stores_all_land(tmp_path: Path) -> None:
    app, db = LayoutStore(tmp_path, "app"), LayoutStore(tmp_path, "db")
    await store_image(app, None)
    data = manifest_bytes()

    await asyncio.gather(
        *(app.put_manifest(data, MediaType.OCI_MANIFEST, tag=f"a{i}") for i in range(15)),
        *(db.put_manifest(data, MediaType.OCI_MANIFEST, tag=f"d{i}") for i in range(15)),
    )

    assert sorted(await app.list_tags()) == sorted(f"a{i}" for i in range(15))
    assert sorted(await db.list_tags()) == sorted(f"d{i}" for i in range(15))


async def test_untagged_manifest_is_stored_by_digest_only(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path, "app")
    desc = await store_image(store, None)

    assert await store.list_tags() == []
    got, data = await store.get_manifest(desc.digest)
    assert got.digest == desc.digest
    assert data == manifest_bytes()


async def test_delete_tag_removes_only_that_ref(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path, "app")
    desc = await store_image(store, "1.0")
    await store_image(store, "1.1")

    await store.delete_tag("1.0")

    assert await store.list_tags() == ["1.1"]
    assert await store.resolve("1.0") is None
    assert await store.blob_exists(desc.digest)


async def test_write_blob_refuses_bytes_that_do_not_match_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    store = LayoutStore(tmp_path)
    desc = Descriptor.of(b"expected bytes", "application/octet-stream")

    with pytest.raises(LayoutError, match="refused blob"):
        await store.write_blob(desc, chunks_of(b"tampered bytes"))

    assert not await store.blob_exists(desc.digest)
    assert list((tmp_path / "blobs").rglob("*")) == [tmp_path / "blobs" / "sha256"]


async def test_write_blob_refuses_more_bytes_than_the_descriptor_says(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    desc = Descriptor.of(b"short", "application/octet-stream")

    with pytest.raises(LayoutError, match="more than"):
        await store.write_blob(desc, chunks_of(b"short and then some more", size=5))

    assert not await store.blob_exists(desc.digest)


async def test_reading_a_corrupted_blob_fails_naming_the_digest(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    data = b"x" * 3_000_000
    desc = Descriptor.of(data, "application/octet-stream")
    await store.write_blob(desc, chunks_of(data, size=1 << 20))
    path = tmp_path / "blobs" / "sha256" / desc.digest.removeprefix("sha256:")
    path.write_bytes(b"y" + data[1:])

    with pytest.raises(LayoutError, match=f"blob {desc.digest} is corrupt"):
        async with store.read_blob(desc) as stream:
            async for _ in stream:
                pass


async def test_missing_tag_resolves_to_none_and_get_lists_known_tags(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path, "app")
    await store_image(store, "1.0")

    assert await store.resolve("2.0") is None
    with pytest.raises(LayoutError, match=r"no manifest '2.0' \(tags here: 1.0\)"):
        await store.get_manifest("2.0")


async def test_invalid_tag_is_a_usage_error_quoting_it(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'-bad tag'"):
        await store_image(LayoutStore(tmp_path, "app"), "-bad tag")


async def test_mount_from_another_layout_links_the_blob_without_copying(tmp_path: Path) -> None:
    source, dest = LayoutStore(tmp_path / "a"), LayoutStore(tmp_path / "b")
    data = b"layer bytes"
    desc = Descriptor.of(data, MediaType.OCI_LAYER)
    await source.write_blob(desc, chunks_of(data))

    assert await dest.mount_blob(desc, source)

    hex_digest = desc.digest.removeprefix("sha256:")
    src_path = tmp_path / "a" / "blobs" / "sha256" / hex_digest
    dst_path = tmp_path / "b" / "blobs" / "sha256" / hex_digest
    assert dst_path.read_bytes() == data
    assert dst_path.stat().st_ino == src_path.stat().st_ino


async def test_mount_of_an_absent_blob_declines(tmp_path: Path) -> None:
    source, dest = LayoutStore(tmp_path / "a"), LayoutStore(tmp_path / "b")
    desc = Descriptor.of(b"nowhere", MediaType.OCI_LAYER)

    assert not await dest.mount_blob(desc, source)


async def test_a_layer_digest_does_not_resolve_as_a_manifest(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    data = b"\x1f\x8b not json"
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
    await store.write_blob(desc, chunks_of(data))

    assert await store.resolve(desc.digest) is None
    with pytest.raises(LayoutError, match=f"no manifest '{desc.digest}'"):
        await store.get_manifest(desc.digest)


async def test_a_malformed_index_json_is_reported_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"digest": 1}]}')

    with pytest.raises(LayoutError, match=r"index\.json holds a malformed descriptor"):
        await LayoutStore(tmp_path).list_tags()
