"""`sync` refuses to race, previews without touching anything, and fails with a message that
says what to fix when QEMU, the git ref or a patch don't fit; dependent images use their base."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from multiarch_mirror.sync import sync_lock
from tests.support.cli import run_cli
from tests.support.dockerfile_app import (
    ArtifactServer,
    add_release,
    make_upstream_repo,
    pull_platform,
    read_from_layer,
    top_layer,
    write_catalog,
)
from tests.support.registry import Registry
from tests.support.upstream import Upstream, github_release, running_upstream

_targets = itertools.count()


@pytest.fixture(scope="module")
def upstream_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_upstream_repo(tmp_path_factory.mktemp("upstream") / "repo", ["1.0.0"])


@pytest.fixture(scope="module")
def releases(artifacts: ArtifactServer, busybox: dict[str, Path]) -> Iterator[Upstream]:
    artifacts.publish("1.0.0", busybox)
    with running_upstream() as upstream:
        upstream.json("/repos/acme/hello/releases", [github_release("v1.0.0")])
        yield upstream


@pytest.fixture
def catalog(
    tmp_path: Path,
    registry: Registry,
    upstream_repo: Path,
    releases: Upstream,
    artifacts: ArtifactServer,
    busybox_base: str,
) -> Iterator[tuple[Path, str, dict[str, str]]]:
    """(mirror.yaml, a fresh target repository, the catalog's other settings)."""
    target = f"{registry.host}/failures{next(_targets)}"
    settings = {
        "repo": str(upstream_repo),
        "upstream": releases.url,
        "artifacts": artifacts.url,
        "base": busybox_base,
    }
    write_catalog(tmp_path, target, state=tmp_path / "state", **settings)
    yield tmp_path / "mirror.yaml", f"{target}/hello", settings


def tags(repository: str) -> list[str]:
    result = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", f"docker://{repository}"],
        capture_output=True,
        text=True,
    )
    return sorted(json.loads(result.stdout)["Tags"]) if result.returncode == 0 else []


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_a_second_sync_says_who_holds_the_lock(
    catalog: tuple[Path, str, dict[str, str]],
) -> None:
    config, _, _ = catalog
    with sync_lock(config.parent / "state"):
        result = run_cli("--config", str(config), "sync")
    assert result.returncode == 1
    message = one_line(result.stderr)
    assert f"another sync is running (pid {os.getpid()} on {socket.gethostname()}" in message
    assert "wait for it to finish" in message


def test_dry_run_prints_the_plan_and_touches_nothing(
    catalog: tuple[Path, str, dict[str, str]],
) -> None:
    config, repository, _ = catalog
    result = run_cli("--config", str(config), "sync", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would build hello/hello 1.0.0 linux/amd64 (latest)" in result.stdout
    assert "would build hello/hello 1.0.0 linux/arm64 (latest)" in result.stdout
    assert tags(repository) == []
    assert not (config.parent / "state" / "buildah").exists()


def test_a_missing_qemu_handler_fails_arm64_says_how_to_register_it_and_tags_nothing(
    catalog: tuple[Path, str, dict[str, str]], tmp_path: Path
) -> None:
    config, repository, _ = catalog
    no_handlers = tmp_path / "binfmt"
    no_handlers.mkdir()
    result = run_cli("--config", str(config), "sync", "--binfmt-dir", str(no_handlers), timeout=600)
    assert result.returncode == 1
    message = one_line(result.stderr)
    assert "cannot build hello/hello 1.0.0 linux/arm64" in message
    assert "no enabled qemu-aarch64 handler" in message
    assert "multiarch-mirror doctor --setup-qemu" in message
    assert tags(repository) == []


def test_an_unreachable_git_ref_names_the_ref_and_the_recipe_key(
    catalog: tuple[Path, str, dict[str, str]],
) -> None:
    config, repository, settings = catalog
    target = repository.rsplit("/", 1)[0]
    state = config.parent / "state"
    write_catalog(config.parent, target, state=state, ref="release-{version}", **settings)
    result = run_cli("--config", str(config), "sync")
    assert result.returncode == 1
    message = one_line(result.stderr)
    assert "cannot fetch ref 'release-1.0.0'" in message
    assert "`recipe.ref`" in message
    assert tags(repository) == []


def test_a_patch_that_no_longer_matches_names_app_file_and_regex(
    catalog: tuple[Path, str, dict[str, str]],
) -> None:
    config, repository, settings = catalog
    target = repository.rsplit("/", 1)[0]
    state = config.parent / "state"
    write_catalog(config.parent, target, state=state, from_line="(?m)^FROM alpine$", **settings)
    result = run_cli("--config", str(config), "sync")
    assert result.returncode == 1
    message = one_line(result.stderr)
    assert (
        "hello/hello: patch regex '(?m)^FROM alpine$' matches nothing in docker/Dockerfile"
        in message
    )
    assert "update or remove this patch" in message
    assert tags(repository) == []


BASE_DOCKERFILE = """FROM upstream.invalid/busybox:stable
RUN ["/bin/busybox", "sh", "-c", "echo made-by-base > /etc/base-marker"]
"""
APP_DOCKERFILE = """FROM upstream.invalid/acme/app-base:1
RUN ["/bin/busybox", "sh", "-c", "cp /etc/base-marker /etc/seen-base"]
"""


def duo_catalog(root: Path, target: str, releases: Upstream, busybox_base: str) -> Path:
    """An app of two images: `app` builds FROM this app's mirrored `app-base`, same version."""
    repo = make_upstream_repo(root / "repo", [])
    (repo / "Dockerfile.base").write_text(BASE_DOCKERFILE)
    (repo / "Dockerfile").write_text(APP_DOCKERFILE)
    add_release(repo, "1.0.0")
    (root / "apps" / "duo").mkdir(parents=True)
    (root / "mirror.yaml").write_text(f"target: {target}\nstate_dir: {root / 'state'}\n")
    (root / "apps" / "duo" / "app.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: duo
            upstream: {{source: github-releases, repo: acme/hello, base_url: '{releases.url}'}}
            images:
              - name: app
                depends_on: [app-base]
                recipe:
                  kind: dockerfile
                  git: {repo}
                  ref: 'v{{version}}'
                  dockerfile: Dockerfile
                  patches:
                    - {{file: Dockerfile, regex: 'upstream.invalid/acme/app-base:1', replace: '{{image:app-base}}'}}
              - name: app-base
                recipe:
                  kind: dockerfile
                  git: {repo}
                  ref: 'v{{version}}'
                  dockerfile: Dockerfile.base
                  patches:
                    - {{file: Dockerfile.base, regex: 'upstream.invalid/busybox:stable', replace: '{busybox_base}'}}
            """
        )
    )
    return root / "mirror.yaml"


def saw_the_base(target: str, workdir: Path) -> bytes:
    """What the arm64 `app` image's RUN copied from its base."""
    pull_platform(f"{target}/app:1.0.0", "arm64", workdir)
    return read_from_layer(top_layer(workdir, "arm64"), "etc/seen-base")


def test_a_dependent_image_builds_on_its_mirrored_base_of_the_same_version(
    tmp_path: Path, registry: Registry, releases: Upstream, busybox_base: str
) -> None:
    target = f"{registry.host}/dependent{next(_targets)}"
    config = duo_catalog(tmp_path, target, releases, busybox_base)
    result = run_cli("--config", str(config), "-v", "sync", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "duo/app-base 1.0.0 linux/arm64 | STEP 1/" in result.stderr  # build output, by job
    assert tags(f"{target}/app-base") == ["1.0.0", "latest"]
    assert tags(f"{target}/app") == ["1.0.0", "latest"]
    assert saw_the_base(target, tmp_path / "layout") == b"made-by-base\n"


def test_ci_waves_of_stage_commands_publish_the_base_before_building_its_dependent(
    tmp_path: Path, registry: Registry, releases: Upstream, busybox_base: str
) -> None:
    target = f"{registry.host}/waves{next(_targets)}"
    config = duo_catalog(tmp_path, target, releases, busybox_base)
    plan_file, digests = tmp_path / "plan.json", tmp_path / "digests"

    def stage(*args: str) -> None:
        result = run_cli("--config", str(config), *args, timeout=600)
        assert result.returncode == 0, result.stderr

    stage("plan", "-o", str(plan_file))
    jobs = json.loads(plan_file.read_text())["jobs"]
    for image in ("app-base", "app"):
        for job in (job for job in jobs if job["image"] == image):
            stage("build", "--plan", str(plan_file), "--job", job["id"], "--digests", str(digests))
        stage("publish", "--plan", str(plan_file), "--digests", str(digests), "--image", image)
    assert tags(f"{target}/app-base") == ["1.0.0", "latest"]
    assert tags(f"{target}/app") == ["1.0.0", "latest"]
    assert saw_the_base(target, tmp_path / "layout") == b"made-by-base\n"


def test_one_apps_failure_does_not_stop_the_others_and_the_summary_names_it(
    catalog: tuple[Path, str, dict[str, str]],
) -> None:
    config, repository, _ = catalog
    broken = config.parent / "apps" / "broken"
    broken.mkdir()
    (broken / "app.yaml").write_text(
        (config.parent / "apps" / "hello" / "app.yaml")
        .read_text()
        .replace("name: hello", "name: broken")
        .replace("ref: 'v{version}'", "ref: 'gone-{version}'")
    )
    report = config.parent / "report.json"
    result = run_cli("--config", str(config), "sync", "--report", str(report), timeout=600)
    assert result.returncode == 1
    assert tags(repository) == ["1.0.0", "latest"]
    statuses = {app["app"]: app["status"] for app in json.loads(report.read_text())["apps"]}
    assert statuses == {"broken": "failed", "hello": "updated"}
    assert "building hello/hello 1.0.0 linux/arm64" in result.stderr  # progress, without -v
    assert "published hello/hello 1.0.0 as sha256:" in result.stderr
    assert "failed: broken: " in result.stderr
    assert "cannot fetch ref 'gone-1.0.0'" in one_line(result.stderr)
