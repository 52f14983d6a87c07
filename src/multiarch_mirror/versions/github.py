"""`github-releases` and `github-tags`: the GitHub REST API (github.com or GitHub Enterprise)."""

from __future__ import annotations

from datetime import datetime

from multiarch_mirror.config import GithubReleasesSource, GithubTagsSource
from multiarch_mirror.versions.http import Api
from multiarch_mirror.versions.policy import Release
from multiarch_mirror.versions.source import SourceContext

ACCEPT = "application/vnd.github+json"


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


async def releases(upstream: GithubReleasesSource, ctx: SourceContext) -> list[Release]:
    """Published releases, newest first; drafts are dropped, `prerelease: true` is kept flagged."""
    found: list[Release] = []
    url = f"{upstream.base_url}/repos/{upstream.repo}/releases?per_page=100"
    async for page in ctx.http.pages(url, api=Api.GITHUB, accept=ACCEPT):
        for item in page:
            if item.get("draft"):
                continue
            found.append(
                Release(
                    tag=item["tag_name"],
                    published=_time(item.get("published_at") or item.get("created_at")),
                    commit=None,
                    flagged_prerelease=bool(item.get("prerelease")),
                )
            )
        if ctx.enough(found):
            break
    return found


async def tags(upstream: GithubTagsSource, ctx: SourceContext) -> list[Release]:
    """Every tag (GitHub lists tags in no version order, so all pages are read)."""
    found: list[Release] = []
    url = f"{upstream.base_url}/repos/{upstream.repo}/tags?per_page=100"
    async for page in ctx.http.pages(url, api=Api.GITHUB, accept=ACCEPT):
        found += [
            Release(tag=item["name"], commit=(item.get("commit") or {}).get("sha")) for item in page
        ]
    return found
