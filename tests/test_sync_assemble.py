"""End to end: `sync` with the `assemble` builder, from per-arch release tarballs to a tagged index.

The upstream (a local GitHub-shaped API) lists releases and serves `hello-<v>-linux-<arch>.tar.gz`
holding Debian's busybox-static, with a SHA256SUMS file. The target registry sits behind a
recording proxy, so tests can count uploads. Tests share one mirror and run in order.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.dockerd import DockerEngine
from tests.support.faultproxy import FaultProxy
from tests.support.registry import Registry
from tests.support.upstream import Upstream, github_release, running_upstream

VERSION = "2.1.0"
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
BLOB_UPLOADS = r"^POST /v2/.+/blobs/uploads/"


@dataclass
class Mirror:
    """A catalog with one app, `hello`, built by `assemble` into `target`."""

    root: Path
    target: str
    upstream: Upstream
    proxy: FaultProxy

    def sync(self, *args: str, state: str = "state", extra: str = "") -> tuple[str, dict[str, Any]]:
        """Run `sync` with a mirror.yaml of its own (state dir `root/<state>`, plus `extra`)."""
        config = self.root / f"mirror-{state}.yaml"
        config.write_text(f"target: {self.target}\nstate_dir: {self.root / state}\n{extra}")
        report = self.root / "report.json"
        report.unlink(missing_ok=True)
        result = run_cli(
            "--config", str(config), "sync", "--report", str(report), *args, timeout=900
        )
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr, json.loads(report.read_text())


def release_tarball(version: str, busybox: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [
            (f"hello-{version}/bin/busybox", busybox.read_bytes()),
            (f"hello-{version}/VERSION", f"{version}\n".encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def publish_release(upstream: Upstream, version: str, busybox: dict[str, Path]) -> None:
    sums = []
    for arch in ("amd64", "arm64"):
        name = f"hello-{version}-linux-{arch}.tar.gz"
        data = release_tarball(version, busybox[arch])
        upstream.file(f"/download/v{version}/{name}", data, content_type="application/gzip")
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    upstream.file(f"/download/v{version}/SHA256SUMS", "".join(sums).encode())
    upstream.json("/repos/acme/hello/releases", [github_release(f"v{version}", days=30)])


def write_app(
    root: Path, upstream: str, *, checksum: str | None = None, as_alternative: bool = False
) -> None:
    """The app's catalog entry; `checksum` replaces the artifact's checksums_url line. With
    `as_alternative`, the default recipe is a Dockerfile one that cannot build (its repository
    does not exist) and `assemble` is the alternative of that name."""
    checksum = checksum or f"checksums_url: '{upstream}/download/v{{version}}/SHA256SUMS'"
    assemble = textwrap.dedent(
        f"""        kind: assemble
        base: scratch
        artifacts:
          - url: '{upstream}/download/v{{version}}/hello-{{version}}-linux-{{arch}}.tar.gz'
            format: tar.gz
            {checksum}
            strip_components: 1
            dest: /app
        uid: 1000
        gid: 1000
        config:
          entrypoint: [/app/bin/busybox]
          cmd: [uname, -m]
          user: '1000:1000'
        """
    )
    if as_alternative:
        recipes = (
            f"    recipe: {{kind: dockerfile, git: {root / 'no-such-repo'}, ref: v1}}\n"
            "    alternatives:\n      assemble:\n" + textwrap.indent(assemble, " " * 8)
        )
    else:
        recipes = "    recipe:\n" + textwrap.indent(assemble, " " * 6)
    (root / "apps" / "hello").mkdir(parents=True)
    (root / "apps" / "hello" / "app.yaml").write_text(
        textwrap.dedent(
            f"""            name: hello
            upstream:
              source: github-releases
              repo: acme/hello
              base_url: {upstream}
            images:
              - name: hello
                smoke:
                  command: [/app/bin/busybox, cat, /app/VERSION]
                  expect: '^{{version}}$'
            """
        )
        + recipes
    )


@pytest.fixture(scope="module")
def mirror(
    tmp_path_factory: pytest.TempPathFactory, registry: Registry, busybox: dict[str, Path]
) -> Iterator[Mirror]:
    root = tmp_path_factory.mktemp("assemble-mirror")
    with running_upstream() as upstream, FaultProxy(registry.host) as proxy:
        write_app(root, upstream.url)
        publish_release(upstream, VERSION, busybox)
        yield Mirror(root, f"{proxy.host}/assembled", upstream, proxy)


@pytest.fixture(scope="module")
def first_sync(mirror: Mirror) -> dict[str, Any]:
    return mirror.sync()[1]


def skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def index_digest(reference: str) -> str:
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"],
        capture_output=True,
        check=True,
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_sync_publishes_an_index_of_amd64_and_arm64(
    mirror: Mirror, first_sync: dict[str, Any]
) -> None:
    (app,) = first_sync["apps"]
    assert (app["status"], app["errors"]) == ("updated", [])
    assert {b["platform"] for b in app["built"]} == set(PLATFORMS)
    (published,) = app["published"]
    assert published["tags"] == [VERSION, "latest"]
    index = json.loads(
        skopeo(
            "inspect", "--raw", "--tls-verify=false", f"docker://{mirror.target}/hello:{VERSION}"
        )
    )
    assert {
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]
    } == set(PLATFORMS)
    assert index["annotations"]["org.opencontainers.image.created"] == "2026-01-31T00:00:00Z"


@pytest.mark.parametrize(("platform", "machine"), PLATFORMS.items())
def test_each_platform_binary_runs_natively_or_under_qemu(
    mirror: Mirror, first_sync: dict[str, Any], tmp_path: Path, platform: str, machine: str
) -> None:
    arch = platform.split("/")[1]
    layout = tmp_path / "layout"
    skopeo(
        "copy", "--src-tls-verify=false", "--override-arch", arch,
        f"docker://{mirror.target}/hello:{VERSION}", f"oci:{layout}:{arch}",
    )  # fmt: skip
    manifest = json.loads(skopeo("inspect", "--raw", f"oci:{layout}:{arch}"))
    (layer,) = manifest["layers"]
    with tarfile.open(layout / "blobs" / "sha256" / layer["digest"][7:]) as tar:
        tar.extractall(tmp_path / "rootfs", filter="tar")
    ran = subprocess.run(
        [str(tmp_path / "rootfs" / "app" / "bin" / "busybox"), "uname", "-m"],
        capture_output=True,
        text=True,
    )
    assert ran.stdout.strip() == machine


@pytest.mark.parametrize(("platform", "machine"), PLATFORMS.items())
def test_docker_runs_the_tag_on_each_platform(
    mirror: Mirror,
    first_sync: dict[str, Any],
    docker_engine: DockerEngine,
    platform: str,
    machine: str,
) -> None:
    reference = f"{mirror.target}/hello:{VERSION}"
    pulled = docker_engine.run("pull", "--platform", platform, reference)
    assert pulled.returncode == 0, pulled.stderr
    ran = docker_engine.run("run", "--rm", "--network", "none", "--platform", platform, reference)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == machine


def test_a_forced_rebuild_from_a_clean_state_dir_gives_the_same_index_and_uploads_no_blob(
    mirror: Mirror, first_sync: dict[str, Any]
) -> None:
    before_digest = index_digest(f"{mirror.target}/hello:{VERSION}")
    before_uploads = len(mirror.proxy.requests(BLOB_UPLOADS))
    _, report = mirror.sync("--force", state="state-clean")
    (app,) = report["apps"]
    assert {b["platform"] for b in app["built"]} == set(PLATFORMS)
    assert index_digest(f"{mirror.target}/hello:{VERSION}") == before_digest
    assert mirror.proxy.requests(BLOB_UPLOADS)[before_uploads:] == []


def test_another_target_from_a_clean_state_dir_gets_identical_digests(
    mirror: Mirror, first_sync: dict[str, Any]
) -> None:
    first = index_digest(f"{mirror.target}/hello:{VERSION}")
    twin = Mirror(mirror.root, f"{mirror.proxy.host}/twin", mirror.upstream, mirror.proxy)
    twin.sync(state="state-twin")
    assert index_digest(f"{twin.target}/hello:{VERSION}") == first


def test_an_artifact_without_checksum_is_published_and_the_report_says_so(
    mirror: Mirror, first_sync: dict[str, Any], tmp_path: Path
) -> None:
    write_app(tmp_path, mirror.upstream.url, checksum="insecure_skip_checksum: true")
    insecure = Mirror(tmp_path, f"{mirror.proxy.host}/insecure", mirror.upstream, mirror.proxy)
    console, report = insecure.sync()
    (app,) = report["apps"]
    notes = {b["platform"]: b["notes"] for b in app["built"]}
    url = f"{mirror.upstream.url}/download/v{VERSION}/hello-{VERSION}-linux-arm64.tar.gz"
    assert notes["linux/arm64"] == [
        f"artifact not checksum-verified (insecure_skip_checksum): {url}"
    ]
    assert f"note: hello/hello {VERSION} linux/arm64: artifact not checksum-verified" in console


def test_mirror_yaml_picks_the_assemble_alternative_over_the_default_recipe(
    mirror: Mirror, first_sync: dict[str, Any], tmp_path: Path
) -> None:
    write_app(tmp_path, mirror.upstream.url, as_alternative=True)
    chosen = Mirror(tmp_path, f"{mirror.proxy.host}/chosen", mirror.upstream, mirror.proxy)
    _, report = chosen.sync(extra="recipes: {hello: assemble}\n")
    (app,) = report["apps"]
    assert (app["status"], app["errors"]) == ("updated", [])
    # The same inputs through the same builder: the very index the assemble-only app got.
    assert index_digest(f"{chosen.target}/hello:{VERSION}") == index_digest(
        f"{mirror.target}/hello:{VERSION}"
    )
