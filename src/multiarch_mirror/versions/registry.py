"""`registry-tags`: the tags of an OCI repository, through our registry client."""

from __future__ import annotations

from multiarch_mirror.config import RegistryTagsSource
from multiarch_mirror.oci.reference import Reference
from multiarch_mirror.versions.policy import Release
from multiarch_mirror.versions.source import SourceContext


async def tags(upstream: RegistryTagsSource, ctx: SourceContext) -> list[Release]:
    """Every tag of the repository, across pages."""
    async with ctx.open_store(Reference.parse(upstream.image, default_tag=None), None) as store:
        return [Release(tag=tag) for tag in await store.list_tags()]
