"""`regex`: versions matched by a regular expression in the body of a URL."""

from __future__ import annotations

from multiarch_mirror.config import RegexSource
from multiarch_mirror.versions.policy import Release
from multiarch_mirror.versions.source import SourceContext


async def versions(upstream: RegexSource, ctx: SourceContext) -> list[Release]:
    """Each match is a tag: the `version` group, else group 1, else the whole match."""
    body = (await ctx.http.get(upstream.url)).body
    pattern = upstream.regex
    group: int | str = "version" if "version" in pattern.groupindex else min(pattern.groups, 1)
    return [Release(tag=match.group(group)) for match in pattern.finditer(body)]
