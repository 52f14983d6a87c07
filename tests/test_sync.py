"""End to end: `sync` (and the stage commands) against a real registry with real buildah builds.

The fixture upstream is a local git repository whose Dockerfile builds FROM a multi-arch base in
the local registry, templates an ARG per arch, RUNs a step (under QEMU for arm64) that downloads
a per-arch artifact over loopback; its releases are listed by a local GitHub-shaped API. The
target registry sits behind a recording proxy, so tests can count what was uploaded.

Tests in this module share one mirror and run in order: each one moves upstream forward.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.dockerd import DockerEngine
from tests.support.dockerfile_app import (
    ArtifactServer,
    add_release,
    git,
    make_upstream_repo,
    pull_platform,
    top_layer,
    write_catalog,
)
from tests.support.faultproxy import FaultProxy
from tests.support.registry import Registry
from tests.support.upstream import Upstream, github_release, running_upstream

PLATFORMS = {"linux/amd64", "linux/arm64"}
UPLOADS = r"^(POST|PUT|PATCH) "


@dataclass
class Mirror:
    """A catalog on disk with one app, `hello`, mirrored into `target`."""

    root: Path
    target: str
    repo: Path
    upstream: Upstream
    artifacts: ArtifactServer
    proxy: FaultProxy
    busybox: dict[str, Path]
    releases: list[str]

    @property
    def config(self) -> Path:
        return self.root / "mirror.yaml"

    def release(self, version: str, *, arches: tuple[str, ...] = ("amd64", "arm64")) -> None:
        """Upstream ships `version`: a git tag, per-arch artifacts, an API entry."""
        add_release(self.repo, version)
        self.artifacts.publish(version, {arch: self.busybox[arch] for arch in arches})
        self.releases.append(version)
        self.upstream.json(
            "/repos/acme/hello/releases",
            [github_release(f"v{v}", days=i) for i, v in enumerate(self.releases)][::-1],
        )

    def cli(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(config or self.config), *args, timeout=900)

    def sync(self, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        report = self.root / "report.json"
        report.unlink(missing_ok=True)
        result = self.cli("sync", "--report", str(report), *args)
        return result, json.loads(report.read_text()) if report.exists() else {}


def skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def inspect_raw(reference: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reference}")
    )
    return document


def digest_of(reference: str) -> str | None:
    """The digest of the manifest `reference` names (hash of its raw bytes), None if absent."""
    result = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"],
        capture_output=True,
    )
    if result.returncode != 0:
        return None
    return "sha256:" + hashlib.sha256(result.stdout).hexdigest()


def tags(repository: str) -> set[str]:
    result = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", f"docker://{repository}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return set()
    return set(json.loads(result.stdout)["Tags"])


@pytest.fixture(scope="module")
def mirror(
    tmp_path_factory: pytest.TempPathFactory,
    registry: Registry,
    busybox_base: str,
    artifacts: ArtifactServer,
    busybox: dict[str, Path],
) -> Iterator[Mirror]:
    root = tmp_path_factory.mktemp("mirror")
    repo = make_upstream_repo(root / "upstream", [])
    with running_upstream() as upstream, FaultProxy(registry.host) as proxy:
        target = f"{proxy.host}/e2e"
        write_catalog(
            root,
            target,
            repo=repo,
            upstream=upstream.url,
            artifacts=artifacts.url,
            base=busybox_base,
            state=root / "state",
        )
        mirror = Mirror(root, target, repo, upstream, artifacts, proxy, busybox, [])
        mirror.release("1.0.0")
        yield mirror


@pytest.fixture(scope="module")
def first_sync(mirror: Mirror) -> dict[str, Any]:
    result, report = mirror.sync()
    assert result.returncode == 0, result.stderr
    return report


def test_sync_publishes_an_index_of_exactly_amd64_and_arm64_whose_configs_agree(
    mirror: Mirror, first_sync: dict[str, Any]
) -> None:
    index = inspect_raw(f"{mirror.target}/hello:1.0.0")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]
    }
    assert platforms == PLATFORMS
    assert len(index["manifests"]) == 2
    for platform in PLATFORMS:
        os_name, arch = platform.split("/")
        config = json.loads(
            skopeo(
                "inspect",
                "--config",
                "--tls-verify=false",
                "--override-os",
                os_name,
                "--override-arch",
                arch,
                f"docker://{mirror.target}/hello:1.0.0",
            )
        )
        assert (config["os"], config["architecture"]) == (os_name, arch)
    annotations = index["annotations"]
    assert annotations["org.opencontainers.image.version"] == "1.0.0"
    assert annotations["org.opencontainers.image.revision"] == git(
        mirror.repo, "rev-parse", "v1.0.0"
    )
    assert annotations["org.opencontainers.image.source"] == str(mirror.repo)
    assert annotations["org.opencontainers.image.title"] == "hello"
    assert annotations["io.github.multiarch-mirror.upstream"] == "github-releases acme/hello"
    assert tags(f"{mirror.target}/hello") == {"1.0.0", "latest"}


def test_the_arm64_image_holds_an_aarch64_binary_that_runs_under_qemu(
    mirror: Mirror, first_sync: dict[str, Any], tmp_path: Path
) -> None:
    pull_platform(f"{mirror.target}/hello:1.0.0", "arm64", tmp_path / "layout")
    with tarfile.open(top_layer(tmp_path / "layout", "arm64")) as layer:
        layer.extractall(tmp_path / "rootfs", filter="tar")
    binary = tmp_path / "rootfs" / "opt" / "hello" / "busybox"
    header = binary.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == 0xB7  # e_machine: EM_AARCH64
    ran = subprocess.run([str(binary), "uname", "-m"], capture_output=True, text=True)
    assert ran.stdout.strip() == "aarch64"
    release = (tmp_path / "rootfs" / "etc" / "fixture-release").read_text()
    assert release == "1.0.0 arm64 aarch64\n"  # the RUN step itself ran as aarch64


@pytest.mark.parametrize(
    ("platform", "machine"), [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")]
)
def test_docker_pulls_the_tag_for_each_platform_and_runs_it(
    mirror: Mirror,
    first_sync: dict[str, Any],
    docker_engine: DockerEngine,
    platform: str,
    machine: str,
) -> None:
    reference = f"{mirror.target}/hello:1.0.0"
    pulled = docker_engine.run("pull", "--platform", platform, reference)
    assert pulled.returncode == 0, pulled.stderr
    ran = docker_engine.run("run", "--rm", "--network", "none", "--platform", platform, reference)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == machine


def test_the_report_lists_builds_index_digest_and_tags(
    mirror: Mirror, first_sync: dict[str, Any]
) -> None:
    (app,) = first_sync["apps"]
    assert app["app"] == "hello" and app["status"] == "updated" and app["errors"] == []
    assert {(b["version"], b["platform"]) for b in app["built"]} == {
        ("1.0.0", "linux/amd64"),
        ("1.0.0", "linux/arm64"),
    }
    assert app["versions_built"] == ["1.0.0"]
    (published,) = app["published"]
    assert published["tags"] == ["1.0.0", "latest"]
    assert published["digest"] == digest_of(f"{mirror.target}/hello:1.0.0")


def test_a_second_sync_with_nothing_new_builds_and_uploads_nothing(
    mirror: Mirror, first_sync: dict[str, Any]
) -> None:
    before = len(mirror.proxy.requests(UPLOADS))
    result, report = mirror.sync()
    assert result.returncode == 0, result.stderr
    (app,) = report["apps"]
    assert (app["status"], app["planned"], app["built"], app["published"]) == (
        "up-to-date",
        [],
        [],
        [],
    )
    assert mirror.proxy.requests(UPLOADS)[before:] == []


def test_a_new_upstream_version_builds_only_that_version_and_moves_latest(
    mirror: Mirror, first_sync: dict[str, Any]
) -> None:
    old = digest_of(f"{mirror.target}/hello:1.0.0")
    mirror.release("1.1.0")
    result, report = mirror.sync()
    assert result.returncode == 0, result.stderr
    (app,) = report["apps"]
    assert {b["version"] for b in app["built"]} == {"1.1.0"}
    new = digest_of(f"{mirror.target}/hello:1.1.0")
    assert digest_of(f"{mirror.target}/hello:latest") == new != old
    assert digest_of(f"{mirror.target}/hello:1.0.0") == old


def test_a_backfilled_older_version_leaves_latest_alone(
    mirror: Mirror, first_sync: dict[str, Any]
) -> None:
    latest = digest_of(f"{mirror.target}/hello:latest")
    mirror.release("0.9.0")
    result, report = mirror.sync()
    assert result.returncode == 0, result.stderr
    (published,) = report["apps"][0]["published"]
    assert (published["version"], published["tags"]) == ("0.9.0", ["0.9.0"])
    assert digest_of(f"{mirror.target}/hello:latest") == latest


def test_stage_commands_as_separate_processes_give_the_same_digests_and_tags(
    mirror: Mirror, first_sync: dict[str, Any], tmp_path: Path
) -> None:
    stage_target = f"{mirror.proxy.host}/stages"
    config = tmp_path / "mirror.yaml"
    config.write_text(
        mirror.config.read_text().replace(f"target: {mirror.target}", f"target: {stage_target}")
    )
    (tmp_path / "apps").symlink_to(mirror.root / "apps")
    plan_file = tmp_path / "plan.json"
    planned = mirror.cli("plan", "-o", str(plan_file), config=config)
    assert planned.returncode == 0, planned.stderr
    jobs = json.loads(plan_file.read_text())["jobs"]
    assert len(jobs) == 6
    for job in jobs:
        built = mirror.cli(
            "build",
            "--plan",
            str(plan_file),
            "--job",
            job["id"],
            "--digests",
            str(tmp_path / "digests"),
            config=config,
        )
        assert built.returncode == 0, built.stderr
        written = json.loads((tmp_path / "digests" / f"{job['id']}.json").read_text())
        assert set(written) == {"digest", "size", "mediaType", "platform"}
    published = mirror.cli(
        "publish", "--plan", str(plan_file), "--digests", str(tmp_path / "digests"), config=config
    )
    assert published.returncode == 0, published.stderr
    assert tags(f"{stage_target}/hello") == tags(f"{mirror.target}/hello")
    for tag in ("0.9.0", "1.0.0", "1.1.0", "latest"):
        assert digest_of(f"{stage_target}/hello:{tag}") == digest_of(f"{mirror.target}/hello:{tag}")


def test_an_arm64_build_failure_tags_nothing_and_leaves_amd64_an_untagged_digest(
    mirror: Mirror, first_sync: dict[str, Any]
) -> None:
    latest = digest_of(f"{mirror.target}/hello:latest")
    mirror.release("1.2.0", arches=("amd64",))
    result, report = mirror.sync()
    assert result.returncode == 1
    (app,) = report["apps"]
    assert app["status"] == "failed"
    assert any("linux/arm64" in error and "STEP" in error for error in app["errors"])
    assert "1.2.0" not in tags(f"{mirror.target}/hello")
    assert digest_of(f"{mirror.target}/hello:latest") == latest
    (amd64,) = [b for b in app["built"] if b["version"] == "1.2.0"]
    assert amd64["platform"] == "linux/amd64"
    assert digest_of(f"{mirror.target}/hello@{amd64['digest']}") == amd64["digest"]
    assert "hello: " in result.stderr and "linux/arm64" in result.stderr
