"""What an image is, for people and scripts: an index's platforms, or one image's config and layers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from multiarch_mirror.oci.copy import IMAGE_CONFIG_TYPES, PlatformNotFoundError, read_small_blob
from multiarch_mirror.oci.media import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    Manifest,
    Platform,
    parse_config,
    parse_manifest,
)
from multiarch_mirror.oci.store import Store


@dataclass(frozen=True)
class PlatformEntry:
    """One manifest of an index; `image_size` is config + layers (None for a nested index)."""

    descriptor: Descriptor
    image_size: int | None

    @property
    def platform(self) -> str:
        return str(self.descriptor.platform) if self.descriptor.platform else "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "digest": self.descriptor.digest,
            "mediaType": self.descriptor.media_type,
            "size": self.descriptor.size,
            "imageSize": self.image_size,
        }


@dataclass(frozen=True)
class ImageDetails:
    """One platform's image: its manifest, config and layers.

    `config` is None for an artifact (a signature, an SBOM…), whose config is no image config.
    """

    descriptor: Descriptor
    raw: bytes
    config: ImageConfig | None
    config_type: str
    layers: list[Descriptor]

    @property
    def platform(self) -> str:
        return str(self.config.platform) if self.config else "none (artifact)"

    def to_dict(self) -> dict[str, Any]:
        runtime = self.config.config.to_dict() if self.config and self.config.config else {}
        return {
            "digest": self.descriptor.digest,
            "mediaType": self.descriptor.media_type,
            "size": self.descriptor.size,
            "platform": str(self.config.platform) if self.config else None,
            "configMediaType": self.config_type,
            "created": self.config.created if self.config else None,
            "config": runtime,
            "layers": [
                {"digest": d.digest, "mediaType": d.media_type, "size": d.size} for d in self.layers
            ],
        }


@dataclass(frozen=True)
class ImageSummary:
    """An image or index as found at `where`; `image` is set for a manifest or a chosen platform."""

    where: str
    descriptor: Descriptor
    raw: bytes
    platforms: list[PlatformEntry] | None
    image: ImageDetails | None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "reference": self.where,
            "digest": self.descriptor.digest,
            "mediaType": self.descriptor.media_type,
            "size": self.descriptor.size,
        }
        if self.platforms is not None:
            doc["manifests"] = [entry.to_dict() for entry in self.platforms]
        if self.image is not None:
            doc["image"] = self.image.to_dict()
        return doc


async def summarize(store: Store, reference: str, platform: Platform | None = None) -> ImageSummary:
    """Read the manifest `reference` names; with `platform`, also that platform's image."""
    desc, raw = await store.get_manifest(reference)
    separator = "@" if reference.startswith("sha256:") else ":"
    where = f"{store.display}{separator}{reference}"
    parsed = parse_manifest(raw, desc.media_type)
    if isinstance(parsed, Manifest):
        details = await _details(store, desc, raw, parsed)
        if platform and not (details.config and details.config.platform.matches(platform)):
            raise PlatformNotFoundError(
                f"{where} is a single manifest for platform {details.platform}, not {platform}"
            )
        return ImageSummary(where, desc, raw, platforms=None, image=details)
    entries = await asyncio.gather(*(_entry(store, child) for child in parsed.manifests))
    image = await _platform_details(store, where, parsed, platform) if platform else None
    return ImageSummary(where, desc, raw, platforms=list(entries), image=image)


async def _entry(store: Store, child: Descriptor) -> PlatformEntry:
    _, raw = await store.get_manifest(child.digest)
    parsed = parse_manifest(raw, child.media_type)
    size = sum(blob.size for blob in parsed.blobs()) if isinstance(parsed, Manifest) else None
    return PlatformEntry(descriptor=child, image_size=size)


async def _platform_details(
    store: Store, where: str, index: ImageIndex, platform: Platform
) -> ImageDetails:
    for child in index.manifests:
        if child.platform and child.platform.matches(platform):
            desc, raw = await store.get_manifest(child.digest)
            parsed = parse_manifest(raw, desc.media_type)
            if isinstance(parsed, Manifest):
                return await _details(store, desc, raw, parsed)
    available = ", ".join(str(c.platform) for c in index.manifests if c.platform) or "none"
    raise PlatformNotFoundError(f"{where} has no {platform}; it has {available}")


async def _details(store: Store, desc: Descriptor, raw: bytes, manifest: Manifest) -> ImageDetails:
    config = (
        parse_config(await read_small_blob(store, manifest.config))
        if manifest.config.media_type in IMAGE_CONFIG_TYPES
        else None
    )
    return ImageDetails(
        descriptor=desc,
        raw=raw,
        config=config,
        config_type=manifest.config.media_type,
        layers=list(manifest.layers),
    )
