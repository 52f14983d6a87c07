"""`gitlab-tags`: tags of a project on any GitLab instance (API v4)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from multiarch_mirror.config import GitlabTagsSource
from multiarch_mirror.versions.http import Api, UpstreamHttp
from multiarch_mirror.versions.policy import Release
from multiarch_mirror.versions.source import SourceContext


def project_url(base_url: str, project: str) -> str:
    """The API URL of a project: its path URL-encoded as one segment (`group%2Fsub%2Fname`)."""
    return f"{base_url}/api/v4/projects/{quote(project, safe='')}"


async def tags(upstream: GitlabTagsSource, ctx: SourceContext) -> list[Release]:
    """Tags, most recently updated first (GitLab's default order)."""
    found: list[Release] = []
    url = f"{project_url(upstream.base_url, upstream.project)}/repository/tags?per_page=100"
    async for page in ctx.http.pages(url, api=Api.GITLAB):
        for item in page:
            commit = item.get("commit") or {}
            created = commit.get("created_at")
            found.append(
                Release(
                    tag=item["name"],
                    commit=commit.get("id"),
                    published=datetime.fromisoformat(created) if created else None,
                )
            )
        if ctx.enough(found):
            break
    return found


async def tag_exists(http: UpstreamHttp, base_url: str, project: str, tag: str) -> bool:
    """The `gitlab_tag` gate: the tag exists in the project."""
    url = f"{project_url(base_url, project)}/repository/tags/{quote(tag, safe='')}"
    return await http.exists(url, api=Api.GITLAB)
