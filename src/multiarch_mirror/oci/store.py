"""One interface over "a repository in a registry" and "an OCI image layout directory".

Every later stage (copy, build, publish, verify) writes through a `Store`, so it works the
same against `ghcr.io/acme/mirror/app` and `oci:./mirror-out`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from multiarch_mirror.oci.client import BlobSource, RegistryClient
from multiarch_mirror.oci.layout import LayoutStore
from multiarch_mirror.oci.media import Descriptor, sha256_digest
from multiarch_mirror.oci.reference import (
    ImageLocation,
    LayoutReference,
    Reference,
    parse_location,
    validate_tag,
)


class Store(Protocol):
    """A content-addressed place for one image repository's blobs, manifests and tags.

    Every read is verified against its digest; every write is verified before it becomes
    visible, so a failed or interrupted transfer never leaves a wrong blob or a tag behind.
    """

    @property
    def display(self) -> str:
        """A human-readable location, e.g. `localhost:5000/acme/app` or `oci:out:demo`."""
        ...

    async def blob_exists(self, digest: str) -> bool: ...

    def read_blob(self, desc: Descriptor) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream a blob's bytes; raises if they don't hash to `desc.digest` / `desc.size`."""
        ...

    async def write_blob(self, desc: Descriptor, chunks: AsyncIterable[bytes] | BlobSource) -> None:
        """Store a blob, hashing while writing; refuses (and discards) bytes that don't match.

        Given a callable that opens the bytes from the start, a store may restart an
        interrupted transfer; a one-shot iterable is consumed once.
        """
        ...

    async def mount_blob(self, desc: Descriptor, source: Store) -> bool:
        """Make `desc` present by a cross-repository mount from `source`, without moving bytes.

        Returns False when not possible (different registry, layout, or the registry declined);
        the caller then copies the bytes.
        """
        ...

    async def resolve(self, reference: str) -> Descriptor | None:
        """Descriptor of the manifest a tag or digest names, or None if absent (HEAD only)."""
        ...

    async def get_manifest(self, reference: str) -> tuple[Descriptor, bytes]:
        """Raw manifest bytes for a tag or digest, verified against their digest."""
        ...

    async def put_manifest(
        self, data: bytes, media_type: str, *, tag: str | None = None
    ) -> Descriptor:
        """Store a manifest by digest, and point `tag` at it when given."""
        ...

    async def list_tags(self) -> list[str]:
        """Every tag, across all pages."""
        ...

    async def delete_tag(self, tag: str) -> None: ...

    async def aclose(self) -> None: ...


class RegistryStore:
    """A repository in a registry (`Reference` minus tag and digest), over a `RegistryClient`."""

    def __init__(self, client: RegistryClient, reference: Reference) -> None:
        self.client = client
        self.reference = reference.repository_ref()

    @property
    def display(self) -> str:
        return self.reference.name

    @property
    def registry(self) -> str:
        return self.reference.registry

    @property
    def repository(self) -> str:
        return self.reference.repository

    def __repr__(self) -> str:
        return f"RegistryStore({self.display!r})"

    async def blob_exists(self, digest: str) -> bool:
        return await self.client.blob_exists(self.registry, self.repository, digest)

    def read_blob(self, desc: Descriptor) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self.client.read_blob(self.registry, self.repository, desc)

    async def write_blob(self, desc: Descriptor, chunks: AsyncIterable[bytes] | BlobSource) -> None:
        """Upload verified by digest; pass a callable opening the bytes to allow restarts."""
        await self.client.upload_blob(self.registry, self.repository, desc, chunks)

    async def mount_blob(self, desc: Descriptor, source: Store) -> bool:
        if not isinstance(source, RegistryStore) or source.registry != self.registry:
            return False
        if source.repository == self.repository:
            return await self.blob_exists(desc.digest)
        return await self.client.mount_blob(
            self.registry, self.repository, desc.digest, source.repository
        )

    async def resolve(self, reference: str) -> Descriptor | None:
        return await self.client.resolve(self.registry, self.repository, reference)

    async def get_manifest(self, reference: str) -> tuple[Descriptor, bytes]:
        return await self.client.get_manifest(self.registry, self.repository, reference)

    async def put_manifest(
        self, data: bytes, media_type: str, *, tag: str | None = None
    ) -> Descriptor:
        """PUT under `tag` when given (one request creates both), else by digest."""
        reference = validate_tag(tag) if tag is not None else sha256_digest(data)
        return await self.client.put_manifest(
            self.registry, self.repository, data, media_type, reference
        )

    async def list_tags(self) -> list[str]:
        return await self.client.list_tags(self.registry, self.repository)

    async def delete_tag(self, tag: str) -> None:
        await self.client.delete_manifest(self.registry, self.repository, validate_tag(tag))

    async def referrers(self, digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        """Manifests whose `subject` is `digest` (referrers API, or the tag-schema fallback)."""
        return await self.client.referrers(self.registry, self.repository, digest, artifact_type)

    async def aclose(self) -> None:
        """Nothing to release: the client is shared by every store of a run; its owner closes it."""


def open_store(
    location: ImageLocation | str, client: RegistryClient, *, namespace: str | None = None
) -> Store:
    """The store a location names: a registry repository, or an `oci:` layout directory.

    `namespace` names one image under a target: `<registry>/<path>/<namespace>` for a
    registry, the `NAME:` ref-name prefix inside a layout.
    """
    if isinstance(location, str):
        location = parse_location(location, default_tag=None)
    if isinstance(location, LayoutReference):
        return LayoutStore(location.path, namespace=namespace)
    if namespace:
        location = Reference.parse(f"{location.name}/{namespace}", default_tag=None)
    return RegistryStore(client, location)
