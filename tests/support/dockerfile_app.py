"""A fixture upstream for Dockerfile builds: a local git repository tagged per release, a
per-arch artifact server on loopback, and a multi-arch busybox base image in a registry."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import tarfile
import textwrap
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from multiarch_mirror.build import BuildJob
from multiarch_mirror.config import DockerfileRecipe
from multiarch_mirror.oci.media import Platform
from multiarch_mirror.template import TemplateContext

from .net import free_port

#: The upstream pins its base by digest; the recipe's patch swaps in the fixture base.
PINNED_FROM = "FROM upstream.invalid/library/busybox@sha256:" + "0" * 64
DOCKERFILE = f"""{PINNED_FROM}
ARG ARTIFACT_URL
ARG APP_ARCH
ARG APP_VERSION=unset
RUN ["/bin/busybox", "sh", "-c", "mkdir -p /opt/hello && wget -q -O /opt/hello/busybox \\"$ARTIFACT_URL\\" && chmod 755 /opt/hello/busybox && echo \\"$APP_VERSION $APP_ARCH $(uname -m)\\" > /etc/fixture-release"]
CMD ["/opt/hello/busybox", "uname", "-m"]
"""


def recipe(git: str, **fields: object) -> DockerfileRecipe:
    """A `kind: dockerfile` recipe for the fixture upstream, validated as an app file is."""
    return DockerfileRecipe.model_validate(
        {"kind": "dockerfile", "git": git, "ref": "v{version}", "context": "docker", **fields}
    )


def render(text: str, job: BuildJob) -> str:
    return TemplateContext.for_(job.version, job.platform).render(text)


def job(version: str = "1.0.0", platform: str = "linux/arm64") -> BuildJob:
    return BuildJob(
        id=f"demo-{version}-{platform.replace('/', '-')}",
        app="demo",
        image="demo",
        version=version,
        platform=Platform.parse(platform),
    )


def _run(cmd: list[str], **kwargs: object) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}")
    return str(result.stdout)


def pull_platform(reference: str, arch: str, layout: Path) -> None:
    """Copy the `arch` image of the (plain-HTTP) registry `reference` into `layout` as `arch`."""
    source = f"docker://{reference}"
    _run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--override-arch",
            arch,
            source,
            f"oci:{layout}:{arch}",
        ]
    )


def top_layer(layout: Path, ref: str) -> Path:
    """The blob file of the last layer of the image `ref` in `layout` (what RUN wrote)."""
    manifest = json.loads(_run(["skopeo", "inspect", "--raw", f"oci:{layout}:{ref}"]))
    return layout / "blobs" / "sha256" / manifest["layers"][-1]["digest"].split(":", 1)[1]


def read_from_layer(layer: Path, name: str) -> bytes:
    with tarfile.open(layer) as tar:
        member = tar.extractfile(name)
        assert member is not None, f"{name} is not a file in {layer}"
        return member.read()


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=Upstream", "-c", "user.email=upstream@example.invalid"]
    return _run(["git", *identity, "-C", str(repo), *args]).strip()


def make_upstream_repo(path: Path, versions: Iterable[str]) -> Path:
    """A git repository with one commit and tag `v<version>` per version, in order."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch", "main")
    for version in versions:
        add_release(path, version)
    return path


def add_release(repo: Path, version: str, dockerfile: str = DOCKERFILE) -> str:
    """Commit `dockerfile` as the release `v<version>`; returns the commit."""
    (repo / "docker").mkdir(exist_ok=True)
    (repo / "docker" / "Dockerfile").write_text(dockerfile)
    (repo / "VERSION").write_text(version + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", f"Release {version}")
    git(repo, "tag", f"v{version}")
    return git(repo, "rev-parse", "HEAD")


@dataclass
class ArtifactServer:
    """Serves `root` over HTTP on loopback: `<url>/releases/<version>/hello-<arch>`.

    The artifact is busybox for that arch: the image runs it as `/opt/hello/busybox`, since
    busybox picks its applet by the name it is called with.
    """

    root: Path
    url: str
    server: http.server.ThreadingHTTPServer

    def publish(self, version: str, binaries: dict[str, Path]) -> None:
        directory = self.root / "releases" / version
        directory.mkdir(parents=True, exist_ok=True)
        for arch, binary in binaries.items():
            shutil.copyfile(binary, directory / f"hello-{arch}")

    def withdraw(self, version: str, arch: str) -> None:
        (self.root / "releases" / version / f"hello-{arch}").unlink()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_artifacts(root: Path) -> ArtifactServer:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return ArtifactServer(root=root, url=f"http://127.0.0.1:{port}", server=server)


def _buildah(workdir: Path, *args: str) -> None:
    storage = ["--root", str(workdir / "storage"), "--runroot", str(workdir / "run")]
    _run(["buildah", *storage, "--storage-driver", "vfs", *args])


def push_base_image(registry_host: str, busybox: dict[str, Path], workdir: Path) -> str:
    """Build a linux/amd64 + linux/arm64 busybox image with buildah and push its index.

    Built by buildah rather than by hand (as `fixture_images` does) because buildah refuses
    to build on a base whose config has no history, and real bases always have one.
    """
    context = workdir / "context"
    for arch, binary in busybox.items():
        (context / f"rootfs-{arch}" / "bin").mkdir(parents=True)
        shutil.copyfile(binary, context / f"rootfs-{arch}" / "bin" / "busybox")
        (context / f"rootfs-{arch}" / "bin" / "busybox").chmod(0o755)
    (context / "Dockerfile").write_text(
        'FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\nCMD ["/bin/busybox", "sh"]\n'
    )
    reference = f"{registry_host}/fixtures/busybox:1"
    platforms = "linux/amd64,linux/arm64"
    _buildah(
        workdir, "build", "--quiet", "--platform", platforms, "--manifest", "base", str(context)
    )
    _buildah(
        workdir,
        "manifest",
        "push",
        "--all",
        "--format",
        "oci",
        "--tls-verify=false",
        "base",
        f"docker://{reference}",
    )
    return reference


def write_catalog(
    root: Path,
    target: str,
    *,
    repo: Path | str,
    upstream: str,
    artifacts: str,
    base: str,
    state: Path | str,
    ref: str = "v{version}",
    from_line: str = r"(?m)^FROM \S+@sha256:\w+$",
) -> None:
    """`mirror.yaml` and `apps/hello/app.yaml`: the fixture upstream's Dockerfile recipe, its
    digest-pinned FROM patched to `base`, and a smoke test that reads what RUN wrote."""
    (root / "apps" / "hello").mkdir(parents=True, exist_ok=True)
    (root / "mirror.yaml").write_text(f"target: {target}\nstate_dir: {state}\n")
    (root / "apps" / "hello" / "app.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: hello
            upstream:
              source: github-releases
              repo: acme/hello
              base_url: {upstream}
            images:
              - name: hello
                recipe:
                  kind: dockerfile
                  git: {repo}
                  ref: '{ref}'
                  context: docker
                  build_args:
                    ARTIFACT_URL: '{artifacts}/releases/{{version}}/hello-{{arch}}'
                    APP_ARCH: '{{arch}}'
                    APP_VERSION: '{{version}}'
                  patches:
                    - file: docker/Dockerfile
                      regex: '{from_line}'
                      replace: 'FROM {base}'
                smoke:
                  command: [/opt/hello/busybox, cat, /etc/fixture-release]
                  expect: '^{{version}} {{arch}} '
            """
        )
    )
