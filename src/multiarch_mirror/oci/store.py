"""One interface over "a repository in a registry" and "an OCI image layout directory".

Every later stage (copy, build, publish, verify) writes through a `Store`, so it works the
same against `ghcr.io/acme/mirror/app` and `oci:./mirror-out`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from multiarch_mirror.oci.media import Descriptor


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

    async def write_blob(self, desc: Descriptor, chunks: AsyncIterable[bytes]) -> None:
        """Store a blob, hashing while writing; refuses (and discards) bytes that don't match."""
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
