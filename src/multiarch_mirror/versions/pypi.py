"""`pypi`: releases of a Python package from a package index's JSON API."""

from __future__ import annotations

from datetime import datetime

from multiarch_mirror.config import PypiSource
from multiarch_mirror.versions.policy import Release
from multiarch_mirror.versions.source import SourceContext


async def versions(upstream: PypiSource, ctx: SourceContext) -> list[Release]:
    """Releases with at least one file that is not yanked (with the first upload time)."""
    page = await ctx.http.get(f"{upstream.base_url}/pypi/{upstream.package}/json")
    found: list[Release] = []
    for version, files in (page.json().get("releases") or {}).items():
        live = [f for f in files if not f.get("yanked")]
        if not live:
            continue
        uploads = sorted(f["upload_time_iso_8601"] for f in live if f.get("upload_time_iso_8601"))
        published = datetime.fromisoformat(uploads[0].replace("Z", "+00:00")) if uploads else None
        found.append(Release(tag=version, published=published))
    return found
