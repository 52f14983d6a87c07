"""Every upstream source against a local server speaking the real APIs' shapes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from multiarch_mirror.config import AppConfig
from multiarch_mirror.oci.media import Platform
from multiarch_mirror.oci.reference import ImageLocation
from multiarch_mirror.oci.store import Store
from multiarch_mirror.versions.detect import Detection, Detector
from multiarch_mirror.versions.http import RateLimitError, UpstreamError, UpstreamHttp
from tests.support.upstream import (
    Upstream,
    github_release,
    github_tag,
    gitlab_tag,
    npm_document,
    pypi_document,
    running_upstream,
)

PLATFORMS = [Platform.parse("linux/amd64"), Platform.parse("linux/arm64")]
RELEASES = "/repos/acme/app/releases"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as server:
        yield server


@asynccontextmanager
async def no_registry(location: ImageLocation, namespace: str | None) -> AsyncIterator[Store]:
    raise AssertionError(f"this source must not open a registry store ({location})")
    yield  # pragma: no cover


def make_app(upstream: dict[str, Any]) -> AppConfig:
    return AppConfig.model_validate(
        {
            "name": "app",
            "upstream": upstream,
            "images": [
                {"name": "app", "recipe": {"kind": "dockerfile", "git": "/x", "ref": "main"}}
            ],
        }
    )


async def detect(
    app: AppConfig,
    state_dir: Path,
    *,
    max_versions: int = 10,
    env: dict[str, str] | None = None,
    max_wait: float = 60.0,
) -> Detection:
    async with UpstreamHttp.for_state_dir(state_dir, env=env or {}, max_wait=max_wait) as http:
        detector = Detector(http, no_registry, state_dir)
        detection = await detector.detect(app, app.upstream.policy(max_versions), PLATFORMS)
        detector.save()
        return detection


def versions(detection: Detection) -> list[str]:
    return [c.version.text for c in detection.candidates]


def github_app(upstream: Upstream, **extra: Any) -> AppConfig:
    return make_app(
        {"source": "github-releases", "repo": "acme/app", "base_url": upstream.url, **extra}
    )


MIXED_RELEASES = [
    github_release("v3.0.0", days=30, draft=True),
    github_release("v2.2.0-rc.1", days=29),  # pre-release nobody flagged
    github_release("v2.1.0", days=28, prerelease=True),  # flagged
    github_release("nightly", days=27),
    github_release("v2.0.1", days=26),
    github_release("v1.10.0", days=25),  # backport, published after 2.0.0
    github_release("v2.0.0", days=24),
    github_release("v1.9.0", days=20),
    github_release("1.8.0", days=10),
    github_release("v1.7.0", days=5),
]


async def test_github_releases_drop_drafts_prereleases_and_non_versions(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(RELEASES, MIXED_RELEASES, page_size=3)
    detection = await detect(github_app(upstream), tmp_path)
    assert versions(detection) == ["2.0.1", "2.0.0", "1.10.0", "1.9.0", "1.8.0", "1.7.0"]


async def test_github_releases_follow_link_pages_until_the_window_is_full(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(RELEASES, MIXED_RELEASES, page_size=3)
    detection = await detect(github_app(upstream), tmp_path, max_versions=2)
    assert versions(detection) == ["2.0.1", "1.10.0"]
    pages = [r.query.get("page", ["1"])[0] for r in upstream.requests_to(RELEASES)]
    # page 1 holds only a draft and pre-releases: the window is counted after filtering
    assert pages == ["1", "2"]


async def test_github_releases_carry_publish_time(upstream: Upstream, tmp_path: Path) -> None:
    upstream.json(RELEASES, [github_release("v1.0.0", days=3)])
    (candidate,) = (await detect(github_app(upstream), tmp_path)).candidates
    assert candidate.release.published is not None
    assert candidate.release.published.isoformat() == "2026-01-04T00:00:00+00:00"


async def test_second_detection_is_a_conditional_request_answered_304(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(RELEASES, MIXED_RELEASES)
    first = await detect(github_app(upstream), tmp_path)
    second = await detect(github_app(upstream), tmp_path)
    assert versions(second) == versions(first)
    one, two = upstream.requests_to(RELEASES)
    assert "if-none-match" not in one.headers
    assert two.headers["if-none-match"].startswith('W/"')
    assert (one.status, two.status) == (200, 304)


async def test_changed_document_is_fetched_again_despite_the_cache(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(RELEASES, [github_release("v1.0.0")])
    await detect(github_app(upstream), tmp_path)
    upstream.json(RELEASES, [github_release("v1.1.0", days=1), github_release("v1.0.0")])
    assert versions(await detect(github_app(upstream), tmp_path)) == ["1.1.0", "1.0.0"]
    assert [r.status for r in upstream.requests_to(RELEASES)] == [200, 200]


async def test_github_token_is_sent_as_bearer(upstream: Upstream, tmp_path: Path) -> None:
    upstream.json(RELEASES, [github_release("v1.0.0")])
    await detect(github_app(upstream), tmp_path, env={"GH_TOKEN": "ghp_secret"})
    (request,) = upstream.requests_to(RELEASES)
    assert request.headers["authorization"] == "Bearer ghp_secret"
    assert request.headers["accept"] == "application/vnd.github+json"


def test_token_never_appears_in_the_client_repr(tmp_path: Path) -> None:
    http = UpstreamHttp(tmp_path, env={"GITHUB_TOKEN": "ghp_secret"})
    assert "ghp_secret" not in repr(http)


async def test_short_rate_limit_is_waited_out(upstream: Upstream, tmp_path: Path) -> None:
    upstream.json(RELEASES, [github_release("v1.0.0")])
    reset = int(time.time()) + 2
    upstream.fault(
        RELEASES,
        403,
        {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
    )
    detection = await detect(github_app(upstream), tmp_path)
    assert versions(detection) == ["1.0.0"]
    first, second = upstream.requests_to(RELEASES)
    assert (first.status, second.status) == (403, 200)
    assert time.time() >= reset


async def test_429_retry_after_is_honoured(upstream: Upstream, tmp_path: Path) -> None:
    upstream.json(RELEASES, [github_release("v1.0.0")])
    upstream.fault(RELEASES, 429, {"Retry-After": "1"})
    started = time.monotonic()
    assert versions(await detect(github_app(upstream), tmp_path)) == ["1.0.0"]
    assert time.monotonic() - started >= 0.9


async def test_long_rate_limit_is_a_clear_error(upstream: Upstream, tmp_path: Path) -> None:
    upstream.json(RELEASES, [github_release("v1.0.0")])
    upstream.fault(
        RELEASES,
        403,
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 3600)},
    )
    with pytest.raises(RateLimitError) as info:
        await detect(github_app(upstream), tmp_path, max_wait=30)
    message = str(info.value)
    assert "rate limit of 127.0.0.1" in message
    assert "set GITHUB_TOKEN or GH_TOKEN" in message
    assert len(upstream.requests_to(RELEASES)) == 1


async def test_unknown_repository_says_what_to_check(upstream: Upstream, tmp_path: Path) -> None:
    with pytest.raises(UpstreamError, match=r"404 Not Found; check the repository"):
        await detect(github_app(upstream), tmp_path)


async def test_github_tags_read_every_page_and_keep_commits(
    upstream: Upstream, tmp_path: Path
) -> None:
    tags = [github_tag(f"v1.{i}.0", sha=f"{i:040x}") for i in range(7)] + [
        github_tag("latest", "f" * 40)
    ]
    upstream.json("/repos/acme/app/tags", tags, page_size=3)
    app = make_app({"source": "github-tags", "repo": "acme/app", "base_url": upstream.url})
    detection = await detect(app, tmp_path, max_versions=2)
    assert versions(detection) == ["1.6.0", "1.5.0"]
    assert detection.candidates[0].release.commit == f"{6:040x}"
    assert len(upstream.requests_to("/repos/acme/app/tags")) == 3


async def test_gitlab_tags_url_encode_the_project_path(upstream: Upstream, tmp_path: Path) -> None:
    path = "/api/v4/projects/group%2Fsub%2Fproj/repository/tags"
    upstream.json(
        path,
        [gitlab_tag("v2.0.0-limitless", "b" * 40, days=2), gitlab_tag("v1.0.0", "a" * 40)],
    )
    app = make_app({"source": "gitlab-tags", "project": "group/sub/proj", "base_url": upstream.url})
    detection = await detect(app, tmp_path, env={"GITLAB_TOKEN": "glpat-x"})
    assert versions(detection) == ["1.0.0"]  # `-limitless` is a pre-release suffix by default
    assert detection.candidates[0].release.commit == "a" * 40
    assert upstream.requests_to(path)[0].headers["authorization"] == "Bearer glpat-x"


async def test_gitlab_tag_pattern_can_strip_a_suffix(upstream: Upstream, tmp_path: Path) -> None:
    path = "/api/v4/projects/group%2Fproj/repository/tags"
    upstream.json(path, [gitlab_tag("v2.0.0-limitless", "b" * 40), gitlab_tag("v1.0.0", "a" * 40)])
    app = make_app(
        {
            "source": "gitlab-tags",
            "project": "group/proj",
            "base_url": upstream.url,
            "tag_pattern": r"^v(?P<version>\d+\.\d+\.\d+)-limitless$",
        }
    )
    assert versions(await detect(app, tmp_path)) == ["2.0.0"]


async def test_npm_skips_deprecated_and_prerelease_versions(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(
        "/@acme%2Fwidget",
        npm_document(
            "@acme/widget",
            {"1.0.0": None, "1.1.0": "security issue", "1.2.0": None, "2.0.0-beta.1": None},
        ),
    )
    app = make_app({"source": "npm", "package": "@acme/widget", "base_url": upstream.url})
    detection = await detect(app, tmp_path)
    assert versions(detection) == ["1.2.0", "1.0.0"]
    assert detection.candidates[0].release.published is not None


async def test_pypi_skips_yanked_and_prerelease_versions(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(
        "/pypi/widget/json",
        pypi_document("widget", {"0.9": False, "1.0": True, "1.1rc1": False, "1.1": False}),
    )
    app = make_app({"source": "pypi", "package": "widget", "base_url": upstream.url})
    assert versions(await detect(app, tmp_path)) == ["1.1", "0.9"]


async def test_regex_source_reads_versions_from_a_page(upstream: Upstream, tmp_path: Path) -> None:
    upstream.file(
        "/downloads.html",
        b'<a href="app-1.2.3.tar.gz">1.2.3</a> <a href="app-1.10.0.tar.gz">1.10.0</a>'
        b' <a href="app-2.0.0-rc1.tar.gz">rc</a>',
        content_type="text/html",
    )
    app = make_app(
        {
            "source": "regex",
            "url": f"{upstream.url}/downloads.html",
            "regex": r'href="app-(?P<version>[^"]+)\.tar\.gz"',
        }
    )
    assert versions(await detect(app, tmp_path)) == ["1.10.0", "1.2.3"]


def gated_app(upstream: Upstream) -> AppConfig:
    return github_app(
        upstream,
        gates=[
            {"url_exists": upstream.url + "/files/thing-{arch}-v{version}"},
            {
                "gitlab_tag": {
                    "base_url": upstream.url,
                    "project": "fork/thing",
                    "tag": "v{version}-limitless",
                }
            },
        ],
    )


def publish_version(upstream: Upstream, version: str, arches: tuple[str, ...]) -> None:
    for arch in arches:
        upstream.file(f"/files/thing-{arch}-v{version}")
    upstream.json(
        f"/api/v4/projects/fork%2Fthing/repository/tags/v{version}-limitless",
        gitlab_tag(f"v{version}-limitless", "c" * 40),
    )


async def test_gate_holds_a_version_back_until_arm64_artifact_exists(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(RELEASES, [github_release("v1.1.0", days=1), github_release("v1.0.0")])
    publish_version(upstream, "1.0.0", ("amd64", "arm64"))
    publish_version(upstream, "1.1.0", ("amd64",))
    detection = await detect(gated_app(upstream), tmp_path)
    assert versions(detection) == ["1.0.0"]
    (held,) = detection.held_back
    assert held.version.text == "1.1.0"
    assert held.reason == f"{upstream.url}/files/thing-arm64-v1.1.0 is not there yet"

    publish_version(upstream, "1.1.0", ("arm64",))
    assert versions(await detect(gated_app(upstream), tmp_path)) == ["1.1.0", "1.0.0"]


async def test_gitlab_tag_gate_holds_a_version_back(upstream: Upstream, tmp_path: Path) -> None:
    upstream.json(RELEASES, [github_release("v1.1.0", days=1)])
    publish_version(upstream, "1.1.0", ("amd64", "arm64"))
    upstream.remove("/api/v4/projects/fork%2Fthing/repository/tags/v1.1.0-limitless")
    detection = await detect(gated_app(upstream), tmp_path)
    assert versions(detection) == []
    assert detection.held_back[0].reason == (
        f"tag v1.1.0-limitless is not in fork/thing on {upstream.url} yet"
    )


async def test_gates_that_passed_are_not_checked_again(upstream: Upstream, tmp_path: Path) -> None:
    upstream.json(RELEASES, [github_release("v1.0.0")])
    publish_version(upstream, "1.0.0", ("amd64", "arm64"))
    await detect(gated_app(upstream), tmp_path)
    assert len(upstream.requests) == 4  # releases, two artifacts, one GitLab tag
    upstream.clear_requests()
    assert versions(await detect(gated_app(upstream), tmp_path)) == ["1.0.0"]
    assert [(r.path, r.status) for r in upstream.requests] == [(RELEASES, 304)]


async def test_gates_are_checked_only_for_candidate_versions(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(RELEASES, [github_release(f"v1.{i}.0", days=i) for i in range(5)])
    for i in range(5):
        publish_version(upstream, f"1.{i}.0", ("amd64", "arm64"))
    await detect(gated_app(upstream), tmp_path, max_versions=2)
    gate_paths = {r.path for r in upstream.requests if r.path != RELEASES}
    assert gate_paths == {
        "/files/thing-amd64-v1.4.0",
        "/files/thing-arm64-v1.4.0",
        "/files/thing-amd64-v1.3.0",
        "/files/thing-arm64-v1.3.0",
        "/api/v4/projects/fork%2Fthing/repository/tags/v1.4.0-limitless",
        "/api/v4/projects/fork%2Fthing/repository/tags/v1.3.0-limitless",
    }


async def test_gitlab_tags_follow_link_pages(upstream: Upstream, tmp_path: Path) -> None:
    path = "/api/v4/projects/group%2Fproj/repository/tags"
    upstream.json(
        path,
        [gitlab_tag("v2.0.0-rc1", "0" * 40), gitlab_tag("v1.9.0-beta", "0" * 40)]
        + [gitlab_tag(f"v1.{i}.0", f"{i:040x}") for i in reversed(range(4))],
        page_size=2,
    )
    app = make_app({"source": "gitlab-tags", "project": "group/proj", "base_url": upstream.url})
    assert versions(await detect(app, tmp_path, max_versions=3)) == ["1.3.0", "1.2.0", "1.1.0"]
    assert [r.query.get("page", ["1"])[0] for r in upstream.requests_to(path)] == ["1", "2", "3"]


async def test_tokens_go_only_to_their_api_never_to_gate_urls(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(RELEASES, [github_release("v1.0.0")])
    publish_version(upstream, "1.0.0", ("amd64", "arm64"))
    await detect(
        gated_app(upstream), tmp_path, env={"GITHUB_TOKEN": "ghp_x", "GITLAB_TOKEN": "gl_y"}
    )
    sent = {r.path: r.headers.get("authorization") for r in upstream.requests}
    assert sent[RELEASES] == "Bearer ghp_x"
    assert sent["/files/thing-arm64-v1.0.0"] is None
    assert sent["/api/v4/projects/fork%2Fthing/repository/tags/v1.0.0-limitless"] == "Bearer gl_y"


async def test_next_page_on_another_host_is_refused(upstream: Upstream, tmp_path: Path) -> None:
    elsewhere = upstream.url.replace("127.0.0.1", "localhost")
    upstream.json(
        RELEASES,
        [github_release("v1.0.0-rc.1")],
        headers={"Link": f'<{elsewhere}{RELEASES}?page=2>; rel="next"'},
    )
    with pytest.raises(UpstreamError, match=r"the next page is on another host \(localhost:"):
        await detect(github_app(upstream), tmp_path, env={"GITHUB_TOKEN": "ghp_x"})
    assert len(upstream.requests) == 1


async def test_apps_are_detected_concurrently_within_the_bound(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.delay = 0.2
    apps = []
    for i in range(5):
        upstream.json(f"/repos/acme/app{i}/releases", [github_release("v1.0.0")])
        apps.append(
            make_app(
                {"source": "github-releases", "repo": f"acme/app{i}", "base_url": upstream.url}
            )
        )
    async with UpstreamHttp.for_state_dir(tmp_path, env={}) as http:
        detector = Detector(http, no_registry, tmp_path, concurrency=2)
        results = await asyncio.gather(
            *(detector.detect(app, app.upstream.policy(10), PLATFORMS) for app in apps)
        )
    assert [versions(r) for r in results] == [["1.0.0"]] * 5
    assert upstream.max_in_flight == 2


async def test_an_api_answering_another_shape_is_an_upstream_error(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.json(RELEASES, {"message": "this is not a list of releases"})
    with pytest.raises(UpstreamError, match="github-releases answered in an unexpected shape"):
        await detect(github_app(upstream), tmp_path)
