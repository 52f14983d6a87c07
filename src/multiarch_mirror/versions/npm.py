"""`npm`: versions of a package from an npm registry's package document."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from multiarch_mirror.config import NpmSource
from multiarch_mirror.versions.policy import Release
from multiarch_mirror.versions.source import SourceContext


async def versions(upstream: NpmSource, ctx: SourceContext) -> list[Release]:
    """Every published, non-deprecated version (with its publish time)."""
    # a scoped name is one path segment: @scope%2Fname
    page = await ctx.http.get(f"{upstream.base_url}/{quote(upstream.package, safe='@')}")
    document = page.json()
    times = document.get("time") or {}
    return [
        Release(
            tag=version,
            published=datetime.fromisoformat(times[version].replace("Z", "+00:00"))
            if version in times
            else None,
        )
        for version, meta in (document.get("versions") or {}).items()
        if not meta.get("deprecated")
    ]
