"""publish: one index per (image, version) over its platform images, tags moved last."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from multiarch_mirror.oci.layout import LayoutStore
from multiarch_mirror.oci.media import Descriptor, ImageIndex, Platform, parse_manifest
from multiarch_mirror.publish import PublishError, Release, publish
from tests.support.fixture_images import FixtureImage

BOTH = (Platform.parse("linux/amd64"), Platform.parse("linux/arm64"))


@pytest.fixture
def store(fixture_image: FixtureImage, tmp_path: Path) -> LayoutStore:
    """A layout holding the fixture's two platform images (and no tag of ours)."""
    shutil.copytree(fixture_image.layout, tmp_path / "layout")
    return LayoutStore(tmp_path / "layout")


async def built(store: LayoutStore, fixture_image: FixtureImage) -> list[Descriptor]:
    descriptors = []
    for platform, digest in fixture_image.platforms.items():
        desc = await store.resolve(digest)
        assert desc is not None
        descriptors.append(desc.model_copy(update={"platform": Platform.parse(platform)}))
    return descriptors


def release(version: str = "1.0.0", *, is_latest: bool = True) -> Release:
    return Release(
        app="demo",
        image="demo",
        version=version,
        tag=version,
        platforms=BOTH,
        is_latest=is_latest,
        upstream="github-releases acme/demo",
    )


async def test_publish_writes_an_index_of_both_platforms_then_tags_version_and_latest(
    store: LayoutStore, fixture_image: FixtureImage
) -> None:
    publication = await publish(store, release(), await built(store, fixture_image))

    assert publication.tags == ["1.0.0", "latest"]
    _, raw = await store.get_manifest("1.0.0")
    index = parse_manifest(raw)
    assert isinstance(index, ImageIndex)
    assert {str(m.platform): m.digest for m in index.manifests} == fixture_image.platforms
    assert index.annotations == {
        "org.opencontainers.image.version": "1.0.0",
        "org.opencontainers.image.title": "demo",
        "io.github.multiarch-mirror.upstream": "github-releases acme/demo",
    }
    latest = await store.resolve("latest")
    assert latest is not None and latest.digest == publication.index.digest


async def test_an_older_version_is_tagged_without_moving_latest(
    store: LayoutStore, fixture_image: FixtureImage
) -> None:
    images = await built(store, fixture_image)
    newest = await publish(store, release("2.0.0"), images)
    older = await publish(store, release("1.0.0", is_latest=False), images)

    assert older.tags == ["1.0.0"]
    latest = await store.resolve("latest")
    assert latest is not None and latest.digest == newest.index.digest


async def test_a_missing_platform_tags_nothing(
    store: LayoutStore, fixture_image: FixtureImage
) -> None:
    amd64_only = [d for d in await built(store, fixture_image) if d.platform == BOTH[0]]
    with pytest.raises(PublishError, match=r"no image for linux/arm64 \(built: linux/amd64\)"):
        await publish(store, release(), amd64_only)
    assert await store.resolve("1.0.0") is None
    assert await store.resolve("latest") is None


async def test_a_config_that_contradicts_its_platform_tags_nothing(
    store: LayoutStore, fixture_image: FixtureImage
) -> None:
    amd64, _ = await built(store, fixture_image)
    lying = amd64.model_copy(update={"platform": BOTH[1]})
    with pytest.raises(
        PublishError, match=r"built for linux/arm64 .* config that says linux/amd64"
    ):
        await publish(store, release(), [amd64, lying])
    assert await store.resolve("1.0.0") is None


async def test_an_existing_version_tag_is_not_overwritten_without_force(
    store: LayoutStore, fixture_image: FixtureImage
) -> None:
    images = await built(store, fixture_image)
    first = await publish(store, release(), images)
    other_upstream = Release(**{**release().__dict__, "upstream": "somewhere else"})

    with pytest.raises(PublishError, match=r"1.0.0 already exists .* pass --force"):
        await publish(store, other_upstream, images)
    tagged = await store.resolve("1.0.0")
    assert tagged is not None and tagged.digest == first.index.digest

    forced = await publish(store, other_upstream, images, force=True)
    tagged = await store.resolve("1.0.0")
    assert tagged is not None and tagged.digest == forced.index.digest != first.index.digest


async def test_a_failing_check_leaves_the_index_untagged(
    store: LayoutStore, fixture_image: FixtureImage
) -> None:
    async def refuse(index: Descriptor) -> None:
        raise PublishError(f"verification of {index.digest} failed")

    with pytest.raises(PublishError, match="verification of sha256:"):
        await publish(store, release(), await built(store, fixture_image), check=refuse)
    assert await store.resolve("1.0.0") is None
