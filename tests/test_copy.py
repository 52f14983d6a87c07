"""The copy engine: digests preserved, children before parents, tags last, no needless bytes."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multiarch_mirror.errors import UsageError
from multiarch_mirror.oci.copy import (
    BlobOutcome,
    PlatformNotFoundError,
    copy_image,
    copy_manifest,
)
from multiarch_mirror.oci.layout import LayoutError, LayoutStore
from multiarch_mirror.oci.media import Descriptor, ManifestError, MediaType, Platform
from tests.support.fixture_images import FixtureImage, skopeo

ARM64 = Platform.parse("linux/arm64")


class Recorder:
    """A CopyProgress that remembers what it was told."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.advanced = 0
        self.finished: dict[str, BlobOutcome] = {}

    def blob_started(self, desc: Descriptor) -> None:
        self.started.append(desc.digest)

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None:
        self.advanced += nbytes

    def blob_finished(self, desc: Descriptor, outcome: BlobOutcome) -> None:
        self.finished[desc.digest] = outcome


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def fixture_bytes(image: FixtureImage) -> int:
    return sum(blob_path(image.layout, d).stat().st_size for d in image.blobs)


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class StreamingOnly:
    """A layout seen as just any `Store`, so a copy from it must stream rather than link."""

    def __init__(self, store: LayoutStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def private_copy(image: FixtureImage, where: Path) -> FixtureImage:
    """A copy of the fixture layout the test may damage (and that can't be hard-linked)."""
    shutil.copytree(image.layout, where)
    return FixtureImage(where, image.ref, image.digest, image.platforms, image.blobs)


async def test_copying_an_index_keeps_its_digest_and_every_platform(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    dest = LayoutStore(tmp_path, "busybox")

    result = await copy_image(
        LayoutStore(fixture_image.layout), fixture_image.ref, dest, tags=["1.0"]
    )

    assert result.digest == fixture_image.digest
    assert result.platforms == fixture_image.platforms
    assert result.tags == ["1.0"]
    assert result.manifests_written == 3
    resolved = await dest.resolve("1.0")
    assert resolved is not None and resolved.digest == fixture_image.digest
    for digest in [*fixture_image.blobs, *fixture_image.platforms.values()]:
        assert await dest.blob_exists(digest)


async def test_streamed_copy_reports_every_blob_and_every_byte_to_progress(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    recorder = Recorder()

    result = await copy_image(
        StreamingOnly(LayoutStore(fixture_image.layout)),
        fixture_image.ref,
        LayoutStore(tmp_path),
        tags=["x"],
        progress=recorder,
    )

    assert sorted(recorder.started) == sorted(fixture_image.blobs)
    assert recorder.finished == {d: BlobOutcome.COPIED for d in fixture_image.blobs}
    assert result.blobs_copied == len(fixture_image.blobs)
    assert result.bytes_moved == fixture_bytes(fixture_image) == recorder.advanced
    for digest in fixture_image.blobs:
        assert (
            blob_path(tmp_path, digest).read_bytes()
            == blob_path(fixture_image.layout, digest).read_bytes()
        )


async def test_a_second_copy_moves_zero_bytes(tmp_path: Path, fixture_image: FixtureImage) -> None:
    source = LayoutStore(fixture_image.layout)
    dest = LayoutStore(tmp_path, "busybox")
    await copy_image(source, fixture_image.ref, dest, tags=["1.0"])

    again = await copy_image(source, fixture_image.ref, dest, tags=["1.0", "latest"])

    assert again.bytes_moved == 0
    assert again.blobs_copied == 0 and again.blobs_mounted == 0
    assert again.blobs_skipped == len(fixture_image.blobs)
    assert again.manifests_written == 0
    assert sorted(await dest.list_tags()) == ["1.0", "latest"]


async def test_blobs_already_present_are_skipped_not_copied(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    """A shared blob store: a namespace's first copy skips what another image brought."""
    source = LayoutStore(fixture_image.layout)
    await copy_image(source, fixture_image.ref, LayoutStore(tmp_path, "one"), tags=["1"])

    result = await copy_image(source, fixture_image.ref, LayoutStore(tmp_path, "two"), tags=["1"])

    assert result.bytes_moved == 0
    assert await LayoutStore(tmp_path, "two").list_tags() == ["1"]


async def test_copy_between_layouts_on_one_filesystem_links_instead_of_moving_bytes(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    source = private_copy(fixture_image, tmp_path / "src")

    result = await copy_image(
        LayoutStore(source.layout), source.ref, LayoutStore(tmp_path / "dst"), tags=["v"]
    )

    assert result.blobs_mounted == len(fixture_image.blobs)
    assert result.bytes_moved == 0


async def test_platform_filter_writes_a_new_index_holding_only_those_platforms(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    dest = LayoutStore(tmp_path, "busybox")

    result = await copy_image(
        LayoutStore(fixture_image.layout),
        fixture_image.ref,
        dest,
        tags=["arm"],
        platforms=[Platform.parse("linux/arm64/v8")],
    )

    _, data = await dest.get_manifest("arm")
    index = json.loads(data)
    assert result.digest != fixture_image.digest
    assert index["mediaType"] == MediaType.OCI_INDEX
    assert [(m["platform"]["architecture"], m["digest"]) for m in index["manifests"]] == [
        ("arm64", fixture_image.platforms["linux/arm64"])
    ]
    assert result.platforms == {"linux/arm64": fixture_image.platforms["linux/arm64"]}
    assert not await dest.blob_exists(fixture_image.platforms["linux/amd64"])
    raw = skopeo("inspect", "--raw", f"oci:{tmp_path}:busybox:arm")
    assert json.loads(raw) == index


async def test_platform_filter_naming_every_platform_keeps_the_original_digest(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    result = await copy_image(
        LayoutStore(fixture_image.layout),
        fixture_image.ref,
        LayoutStore(tmp_path),
        tags=["all"],
        platforms=[Platform.parse("linux/arm64"), Platform.parse("linux/amd64")],
    )

    assert result.digest == fixture_image.digest


async def test_asking_for_an_absent_platform_fails_naming_what_exists(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    with pytest.raises(
        PlatformNotFoundError, match="has no linux/s390x; it has linux/amd64, linux/arm64"
    ):
        await copy_image(
            LayoutStore(fixture_image.layout),
            fixture_image.ref,
            LayoutStore(tmp_path),
            tags=["x"],
            platforms=[Platform.parse("linux/s390x")],
        )

    assert not (tmp_path / "index.json").exists()


async def test_copy_by_descriptor_writes_the_manifest_tree_without_a_tag(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    source = LayoutStore(fixture_image.layout)
    arm64 = await source.resolve(fixture_image.platforms["linux/arm64"])
    assert arm64 is not None
    dest = LayoutStore(tmp_path, "app")

    result = await copy_manifest(source, arm64, dest)

    assert result.digest == fixture_image.platforms["linux/arm64"]
    assert result.platforms == {"linux/arm64": arm64.digest}
    assert result.tags == []
    assert await dest.list_tags() == []
    got, _ = await dest.get_manifest(arm64.digest)
    assert got.media_type == MediaType.OCI_MANIFEST


async def test_a_missing_source_blob_fails_the_copy_and_writes_no_tag(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    source = private_copy(fixture_image, tmp_path / "src")
    layer = next(d for d in fixture_image.blobs if blob_path(source.layout, d).stat().st_size > 1e5)
    blob_path(source.layout, layer).unlink()
    dest = LayoutStore(tmp_path / "dst", "busybox")

    with pytest.raises(LayoutError, match=f"blob {layer} not found"):
        await copy_image(LayoutStore(source.layout), source.ref, dest, tags=["1.0"])

    assert await dest.list_tags() == []
    assert await dest.resolve(fixture_image.digest) is None


async def test_a_corrupt_source_blob_fails_the_copy_and_writes_nothing_wrong(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    source = private_copy(fixture_image, tmp_path / "src")
    layer = next(d for d in fixture_image.blobs if blob_path(source.layout, d).stat().st_size > 1e5)
    path = blob_path(source.layout, layer)
    data = path.read_bytes()
    path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    dest = LayoutStore(tmp_path / "dst", "busybox")

    with pytest.raises(LayoutError, match=f"blob {layer} is corrupt"):
        await copy_image(LayoutStore(source.layout), source.ref, dest, tags=["1.0"])

    assert await dest.list_tags() == []
    assert not await dest.blob_exists(layer)


async def test_an_unknown_manifest_media_type_is_refused_with_its_name(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path)
    data = b'{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json"}'
    desc = Descriptor.of(data, "application/vnd.example.thing+json")
    await store.put_manifest(data, MediaType.OCI_MANIFEST)
    (tmp_path / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {**desc.to_dict(), "annotations": {"org.opencontainers.image.ref.name": "x"}}
                ],
            }
        )
    )

    with pytest.raises(
        ManifestError, match=r"unknown manifest media type 'application/vnd\.example"
    ):
        await copy_image(store, "x", LayoutStore(tmp_path / "dst"), tags=["x"])


async def test_concurrency_below_one_is_refused(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    with pytest.raises(UsageError, match="concurrency must be at least 1"):
        await copy_image(
            LayoutStore(fixture_image.layout),
            fixture_image.ref,
            LayoutStore(tmp_path),
            concurrency=0,
        )


async def test_an_artifact_manifest_is_copied_and_has_no_platform(tmp_path: Path) -> None:
    source = LayoutStore(tmp_path / "src")
    empty = b"{}"
    empty_desc = Descriptor.of(empty, MediaType.OCI_EMPTY)
    await source.write_blob(empty_desc, once(empty))
    payload = b"signature bytes"
    payload_desc = Descriptor.of(payload, "application/vnd.example.signature")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": empty_desc.to_dict(),
            "layers": [payload_desc.to_dict()],
        }
    ).encode()
    await source.write_blob(payload_desc, once(payload))
    desc = await source.put_manifest(manifest, MediaType.OCI_MANIFEST)

    result = await copy_manifest(StreamingOnly(source), desc, LayoutStore(tmp_path / "dst"))

    assert result.digest == desc.digest
    assert result.platforms == {}
    assert result.blobs_copied == 2
