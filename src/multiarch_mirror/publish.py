"""Publish one (image, version): join its per-platform images into an OCI image index, push the
index by digest, then tag it `<version>` and, when it is the newest version, `latest`.

Tags move last and only when every expected platform is there and checks out, so a failure
never leaves a tag on a partial image. A version tag is immutable unless forced.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from multiarch_mirror.build import LABEL_CREATED, LABEL_REVISION, LABEL_SOURCE
from multiarch_mirror.errors import MirrorError
from multiarch_mirror.oci.copy import read_small_blob
from multiarch_mirror.oci.media import (
    Descriptor,
    ImageIndex,
    Manifest,
    MediaType,
    Platform,
    parse_config,
    parse_manifest,
)
from multiarch_mirror.oci.store import Store

log = logging.getLogger(__name__)

ANNOTATION_VERSION = "org.opencontainers.image.version"
ANNOTATION_SOURCE = LABEL_SOURCE
ANNOTATION_REVISION = LABEL_REVISION
ANNOTATION_CREATED = LABEL_CREATED
ANNOTATION_TITLE = "org.opencontainers.image.title"
#: The upstream the versions come from, e.g. `github-releases mattermost/mattermost`.
ANNOTATION_UPSTREAM = "io.github.multiarch-mirror.upstream"
LATEST = "latest"

#: Runs on the pushed, still untagged index; raising stops the tags from moving.
IndexCheck = Callable[[Descriptor], Awaitable[None]]


class PublishError(MirrorError):
    """An index could not be published; nothing was tagged."""


@dataclass(frozen=True)
class Release:
    """One (image, version) to publish, and what its index must hold and say."""

    app: str
    image: str
    version: str
    #: The version's tag (OCI tags allow no '+').
    tag: str
    platforms: tuple[Platform, ...]
    #: Whether this is the newest version known, so `latest` should point at it.
    is_latest: bool
    upstream: str | None = None

    @property
    def name(self) -> str:
        return f"{self.app}/{self.image} {self.version}"


@dataclass
class Publication:
    """What publishing wrote: the index and the tags pointing at it now."""

    release: Release
    index: Descriptor
    tags: list[str] = field(default_factory=list)


def _pick(release: Release, built: Sequence[Descriptor]) -> list[tuple[Platform, Descriptor]]:
    chosen = []
    for platform in release.platforms:
        found = [d for d in built if d.platform is not None and d.platform.matches(platform)]
        if not found:
            have = ", ".join(str(d.platform) for d in built if d.platform) or "none"
            raise PublishError(
                f"not publishing {release.name}: no image for {platform} (built: {have}); "
                "nothing was tagged — fix that platform's build and run again"
            )
        chosen.append((platform, found[0]))
    return chosen


async def _confirmed(
    store: Store, release: Release, platform: Platform, desc: Descriptor
) -> tuple[Descriptor, dict[str, str]]:
    """The index entry for `desc` with its config's platform, after checking that the config
    says `platform`; and the config's labels."""
    entry, raw = await store.get_manifest(desc.digest)
    manifest = parse_manifest(raw, entry.media_type)
    if not isinstance(manifest, Manifest):
        raise PublishError(
            f"not publishing {release.name}: {desc.digest} for {platform} is an index, "
            "not a single-platform image"
        )
    config = parse_config(await read_small_blob(store, manifest.config))
    if not config.platform.matches(platform):
        raise PublishError(
            f"not publishing {release.name}: the image built for {platform} ({desc.digest}) "
            f"has a config that says {config.platform}; the build produced the wrong platform"
        )
    labels = dict(config.config.labels or {}) if config.config else {}
    child = Descriptor(
        media_type=entry.media_type,
        digest=entry.digest,
        size=entry.size,
        platform=Platform(os=config.os, architecture=config.architecture, variant=config.variant),
    )
    return child, labels


async def build_index(store: Store, release: Release, built: Sequence[Descriptor]) -> bytes:
    """The index for `release` over the `built` per-platform images (already in `store`)."""
    children = []
    labels: dict[str, str] = {}
    for platform, desc in _pick(release, built):
        child, child_labels = await _confirmed(store, release, platform, desc)
        children.append(child)
        labels = labels or child_labels
    annotations = {
        ANNOTATION_VERSION: release.version,
        ANNOTATION_TITLE: release.image,
    }
    for key in (ANNOTATION_SOURCE, ANNOTATION_REVISION, ANNOTATION_CREATED):
        if key in labels:
            annotations[key] = labels[key]
    if release.upstream:
        annotations[ANNOTATION_UPSTREAM] = release.upstream
    return ImageIndex(manifests=children, annotations=annotations).to_json()


async def publish(
    store: Store,
    release: Release,
    built: Sequence[Descriptor],
    *,
    force: bool = False,
    check: IndexCheck | None = None,
) -> Publication:
    """Write the index by digest, run `check` on it, then tag `<version>` (and `latest`).

    An existing version tag on another digest is left alone unless `force`; the same digest
    is already published, and publishing it again only settles `latest`.
    """
    data = await build_index(store, release, built)
    existing = await store.resolve(release.tag)
    index = Descriptor.of(data, MediaType.OCI_INDEX)
    if existing is not None and existing.digest != index.digest and not force:
        raise PublishError(
            f"{store.display}:{release.tag} already exists ({existing.digest}) and differs "
            f"from the new index ({index.digest}); version tags are immutable: pass --force "
            "to replace it"
        )
    index = await store.put_manifest(data, MediaType.OCI_INDEX)
    if check is not None:
        await check(index)
    publication = Publication(release=release, index=index)
    for tag in [release.tag, *([LATEST] if release.is_latest else [])]:
        await store.put_manifest(data, MediaType.OCI_INDEX, tag=tag)
        publication.tags.append(tag)
    log.info("published %s as %s (%s)", release.name, index.digest, ", ".join(publication.tags))
    return publication
