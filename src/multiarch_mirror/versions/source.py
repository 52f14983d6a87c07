"""The `Source` protocol: one async function per source kind that lists an upstream's releases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from multiarch_mirror.oci.client import RegistryClient
from multiarch_mirror.oci.reference import ImageLocation
from multiarch_mirror.oci.store import Store, open_store
from multiarch_mirror.versions.http import UpstreamHttp
from multiarch_mirror.versions.policy import Release

StoreOpener = Callable[[ImageLocation, str | None], AbstractAsyncContextManager[Store]]
"""Opens the `Store` of a location (and layout namespace) for the duration of a `with`."""


def stores_of(client: RegistryClient) -> StoreOpener:
    """A `StoreOpener` over one shared registry client (registries) or layout directories."""

    @asynccontextmanager
    async def open_(location: ImageLocation, namespace: str | None) -> AsyncIterator[Store]:
        store = open_store(location, client, namespace=namespace)
        try:
            yield store
        finally:
            await store.aclose()

    return open_


@dataclass(frozen=True)
class SourceContext:
    """What a source may use: the shared HTTP client, registry access, and when to stop paging."""

    http: UpstreamHttp
    open_store: StoreOpener
    enough: Callable[[Sequence[Release]], bool]
    """True once the releases listed so far fill the version window: sources that list newest
    first stop paginating there, so a cached steady state costs one request."""


class Source(Protocol):
    """List the upstream's releases (tags with optional metadata), newest first when it can."""

    async def __call__(self, upstream: Any, ctx: SourceContext, /) -> list[Release]: ...
