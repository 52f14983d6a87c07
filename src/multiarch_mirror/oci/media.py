"""Media types, descriptors, manifests, indexes and image configs (OCI and Docker schema 2).

We read both OCI and Docker schema 2 documents and always write OCI. Models are immutable;
field names follow the specs (camelCase on the wire via aliases).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from multiarch_mirror.errors import MirrorError, UsageError


class MediaType:
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
    DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


MANIFEST_TYPES = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})
INDEX_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST})
SCHEMA1_TYPES = frozenset({MediaType.DOCKER_SCHEMA1, MediaType.DOCKER_SCHEMA1_SIGNED})
#: What we send in `Accept` when fetching manifests: everything we can read.
ACCEPT_MANIFESTS = ", ".join(
    [
        MediaType.OCI_INDEX,
        MediaType.OCI_MANIFEST,
        MediaType.DOCKER_MANIFEST_LIST,
        MediaType.DOCKER_MANIFEST,
    ]
)


class ManifestError(MirrorError):
    """A manifest or index could not be read (unknown type, schema 1, malformed JSON)."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="allow")

    def to_json(self) -> bytes:
        """Canonical bytes: spec field names, no nulls, no whitespace, keys in model order."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Platform(_Model):
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = Field(default=None, alias="os.version")
    os_features: list[str] | None = Field(default=None, alias="os.features")

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/arm64`, `linux/arm64/v8`, `linux/arm/v7`."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(
                f"invalid platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/arm64"
            )
        return cls(
            os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else None
        )

    def normalized(self) -> Platform:
        """Equivalent spellings made equal: arm64/v8 is arm64, arm without variant is arm/v7."""
        variant = self.variant
        if self.architecture == "arm64" and variant == "v8":
            variant = None
        elif self.architecture == "arm" and variant is None:
            variant = "v7"
        return Platform(os=self.os, architecture=self.architecture, variant=variant)

    def matches(self, other: Platform) -> bool:
        a, b = self.normalized(), other.normalized()
        return (a.os, a.architecture, a.variant) == (b.os, b.architecture, b.variant)

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


class Descriptor(_Model):
    media_type: str = Field(alias="mediaType")
    digest: str
    size: int
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")

    @classmethod
    def of(cls, data: bytes, media_type: str, *, platform: Platform | None = None) -> Descriptor:
        return cls(
            media_type=media_type, digest=sha256_digest(data), size=len(data), platform=platform
        )


class Manifest(_Model):
    """An image manifest (OCI, or Docker schema 2 read as-is)."""

    schema_version: int = Field(default=2, alias="schemaVersion")
    media_type: str | None = Field(default=MediaType.OCI_MANIFEST, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    config: Descriptor
    layers: list[Descriptor] = Field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    def blobs(self) -> list[Descriptor]:
        return [self.config, *self.layers]


class ImageIndex(_Model):
    """An image index (OCI) or manifest list (Docker)."""

    schema_version: int = Field(default=2, alias="schemaVersion")
    media_type: str | None = Field(default=MediaType.OCI_INDEX, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    manifests: list[Descriptor] = Field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


class HealthConfig(_Model):
    test: list[str] | None = Field(default=None, alias="Test")
    interval: int | None = Field(default=None, alias="Interval")
    timeout: int | None = Field(default=None, alias="Timeout")
    start_period: int | None = Field(default=None, alias="StartPeriod")
    retries: int | None = Field(default=None, alias="Retries")


class ContainerConfig(_Model):
    user: str | None = Field(default=None, alias="User")
    exposed_ports: dict[str, dict[str, Any]] | None = Field(default=None, alias="ExposedPorts")
    env: list[str] | None = Field(default=None, alias="Env")
    entrypoint: list[str] | None = Field(default=None, alias="Entrypoint")
    cmd: list[str] | None = Field(default=None, alias="Cmd")
    volumes: dict[str, dict[str, Any]] | None = Field(default=None, alias="Volumes")
    working_dir: str | None = Field(default=None, alias="WorkingDir")
    labels: dict[str, str] | None = Field(default=None, alias="Labels")
    stop_signal: str | None = Field(default=None, alias="StopSignal")
    healthcheck: HealthConfig | None = Field(default=None, alias="Healthcheck")


class RootFS(_Model):
    type: str = "layers"
    diff_ids: list[str] = Field(default_factory=list)


class History(_Model):
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool | None = None


class ImageConfig(_Model):
    """The image configuration blob: platform, runtime defaults, layer diff IDs, history."""

    created: str | None = None
    author: str | None = None
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = Field(default=None, alias="os.version")
    config: ContainerConfig | None = None
    rootfs: RootFS = Field(default_factory=RootFS)
    history: list[History] | None = None

    @property
    def platform(self) -> Platform:
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant)


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest | ImageIndex:
    """Read a manifest or index; `media_type` is the Content-Type if known.

    Docker schema 1 is refused: it cannot be addressed by content digest reliably and no
    current registry needs it.
    """
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    declared = doc.get("mediaType") or media_type
    if declared in SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise ManifestError(
            "Docker schema 1 manifests are not supported; re-push the image with a current client "
            "(docker, buildah or skopeo write schema 2 / OCI)"
        )
    if declared is None:
        declared = MediaType.OCI_INDEX if "manifests" in doc else MediaType.OCI_MANIFEST
    try:
        if declared in INDEX_TYPES:
            return ImageIndex.model_validate(doc)
        if declared in MANIFEST_TYPES:
            return Manifest.model_validate(doc)
    except ValidationError as exc:
        raise ManifestError(f"malformed {declared} document: {exc}") from None
    raise ManifestError(
        f"unknown manifest media type {declared!r}; supported: "
        + ", ".join(sorted(MANIFEST_TYPES | INDEX_TYPES))
    )


def parse_config(data: bytes) -> ImageConfig:
    try:
        return ImageConfig.model_validate_json(data)
    except ValidationError as exc:
        raise ManifestError(f"malformed image config: {exc}") from None
