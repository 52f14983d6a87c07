"""The assemble builder against a real registry and OCI layouts, with artifacts over loopback."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from multiarch_mirror.build import BuildError, BuildJob
from multiarch_mirror.build.artifacts import ChecksumMismatchError
from multiarch_mirror.build.assemble import (
    AssembleBuilder,
    AssembleSettings,
    source_date_epoch,
)
from multiarch_mirror.build.layers import ArchiveLimits
from multiarch_mirror.config import AssembleRecipe, load_app
from multiarch_mirror.oci.client import RegistryClient
from multiarch_mirror.oci.layout import LayoutStore
from multiarch_mirror.oci.media import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    Manifest,
    MediaType,
    Platform,
    parse_config,
    parse_manifest,
)
from multiarch_mirror.oci.reference import Reference
from multiarch_mirror.oci.store import RegistryStore, Store
from multiarch_mirror.template import TemplateContext
from tests.support.archives import make_tar, member
from tests.support.dockerd import DockerEngine
from tests.support.files import FileServer, start_file_server
from tests.support.fixture_images import FixtureImage, skopeo, skopeo_push
from tests.support.registry import Registry

VERSION = "1.4.2"
AMD64, ARM64 = Platform.parse("linux/amd64"), Platform.parse("linux/arm64")
EPOCH = 1_733_000_000
ENTRYPOINT = b'#!/app/bin/busybox sh\nexec "$@"\n'


def tarball(version: str, busybox: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [
            (f"fixture-{version}/bin/busybox", busybox.read_bytes()),
            (f"fixture-{version}/VERSION", version.encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def upstream(busybox: dict[str, Path]) -> Iterator[FileServer]:
    """Per-arch release tarballs with a SHA256SUMS file, as projects publish them."""
    server = start_file_server()
    sums = []
    for arch in ("amd64", "arm64"):
        name = f"fixture-{VERSION}-linux-{arch}.tar.gz"
        data = tarball(VERSION, busybox[arch])
        server.files[f"/releases/{VERSION}/{name}"] = data
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    server.files[f"/releases/{VERSION}/SHA256SUMS"] = "".join(sums).encode()
    yield server
    server.stop()


def recipe(upstream: FileServer, **changes: Any) -> AssembleRecipe:
    document: dict[str, Any] = {
        "kind": "assemble",
        "base": "scratch",
        "artifacts": [
            {
                "url": upstream.url + "/releases/{version}/fixture-{version}-linux-{arch}.tar.gz",
                "format": "tar.gz",
                "checksums_url": upstream.url + "/releases/{version}/SHA256SUMS",
                "strip_components": 1,
                "dest": "/app",
            }
        ],
        "files": [{"path": "/entrypoint.sh", "content": ENTRYPOINT.decode(), "mode": 0o755}],
        "directories": ["/app/data"],
        "uid": 2000,
        "gid": 2000,
        "config": {
            "entrypoint": ["/entrypoint.sh"],
            "cmd": ["/app/bin/busybox", "sh"],
            "env": {"APP_VERSION": "{version}", "PATH": "/app/bin:/bin"},
            "workdir": "/app",
            "user": "2000:2000",
            "exposed_ports": [8065, "8067/udp"],
            "volumes": ["/app/data"],
            "labels": {"org.example.arch": "{arch}"},
            "stop_signal": "SIGTERM",
            "healthcheck": {"test": ["CMD", "/app/bin/busybox", "true"], "interval": "30s"},
        },
    }
    document.update(changes)
    return AssembleRecipe.model_validate(document)


def render(template: str, job: BuildJob) -> str:
    return TemplateContext.for_(job.version, job.platform).render(template)


def job(platform: Platform = ARM64, version: str = VERSION) -> BuildJob:
    return BuildJob(
        id=f"fixture-{version}-{platform.architecture}",
        app="fixture",
        image="fixture",
        version=version,
        platform=platform,
    )


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient() as registry_client:
        yield registry_client


def builder(
    recipe_: AssembleRecipe, client: RegistryClient, state: Path, **settings: Any
) -> AssembleBuilder:
    settings.setdefault("release_times", {VERSION: datetime.fromtimestamp(EPOCH, UTC)})
    return AssembleBuilder(recipe_, render, AssembleSettings(client, state, **settings))


def store(registry: Registry, client: RegistryClient, repository: str) -> RegistryStore:
    return RegistryStore(client, Reference.parse(f"{registry.host}/{repository}"))


def repository_exists(registry: Registry, repository: str) -> bool:
    return (registry.root / "data/docker/registry/v2/repositories" / repository).exists()


async def read_blob(target: Store, desc: Descriptor) -> bytes:
    async with target.read_blob(desc) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def manifest_of(target: Store, desc: Descriptor) -> Manifest:
    _, data = await target.get_manifest(desc.digest)
    parsed = parse_manifest(data, desc.media_type)
    assert isinstance(parsed, Manifest)
    return parsed


async def config_of(target: Store, desc: Descriptor) -> ImageConfig:
    return parse_config(await read_blob(target, (await manifest_of(target, desc)).config))


async def unpack(target: Store, desc: Descriptor, root: Path) -> Path:
    """The image's layers unpacked (in order) under `root`, with GNU tar."""
    root.mkdir()
    for layer in (await manifest_of(target, desc)).layers:
        blob = root.parent / f"{root.name}.layer"
        blob.write_bytes(await read_blob(target, layer))
        subprocess.run(["tar", "-xzf", str(blob), "-C", str(root)], check=True)
    return root


# -- the image ------------------------------------------------------------------------------


@pytest.mark.parametrize(("platform", "machine"), [(AMD64, "x86_64"), (ARM64, "aarch64")])
async def test_assembled_image_runs_on_its_platform(
    upstream: FileServer,
    registry: Registry,
    client: RegistryClient,
    tmp_path: Path,
    platform: Platform,
    machine: str,
) -> None:
    target = store(registry, client, f"run/{platform.architecture}")
    result = await builder(recipe(upstream), client, tmp_path / "state").assemble(
        job(platform), target
    )
    assert result.descriptor.platform == platform
    assert result.descriptor.media_type == MediaType.OCI_MANIFEST
    root = await unpack(target, result.descriptor, tmp_path / "rootfs")
    # arm64 runs under QEMU user emulation (binfmt_misc), amd64 natively.
    uname = subprocess.run(
        [str(root / "app/bin/busybox"), "uname", "-m"], capture_output=True, text=True, check=True
    )
    assert uname.stdout.strip() == machine
    assert (root / "app/VERSION").read_text() == VERSION
    assert (root / "entrypoint.sh").read_bytes() == ENTRYPOINT
    assert (root / "app/data").is_dir()


async def test_skopeo_reads_the_image_and_its_config(
    upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    target = store(registry, client, "skopeo/fixture")
    result = await builder(recipe(upstream), client, tmp_path).assemble(job(ARM64), target)
    where = f"docker://{registry.host}/skopeo/fixture@{result.descriptor.digest}"
    inspected = json.loads(skopeo("inspect", "--no-tags", "--tls-verify=false", where))
    assert (inspected["Os"], inspected["Architecture"]) == ("linux", "arm64")
    assert inspected["Created"] == "2024-11-30T20:53:20Z"
    assert inspected["Labels"]["org.opencontainers.image.version"] == VERSION


@pytest.fixture(scope="module")
def base_image(registry: Registry, fixture_image: FixtureImage) -> str:
    """The two-platform busybox fixture in the test registry, as Docker schema 2."""
    reference = f"{registry.host}/bases/busybox:1"
    skopeo_push(fixture_image, reference, docker_format=True)
    return reference


async def test_config_merges_the_recipe_onto_the_base_with_history(
    upstream: FileServer,
    registry: Registry,
    client: RegistryClient,
    base_image: str,
    tmp_path: Path,
) -> None:
    target = store(registry, client, "merge/fixture")
    result = await builder(recipe(upstream, base=base_image), client, tmp_path).assemble(
        job(AMD64), target
    )
    manifest = await manifest_of(target, result.descriptor)
    config = parse_config(await read_blob(target, manifest.config))
    container = config.config
    assert container is not None
    assert container.entrypoint == ["/entrypoint.sh"]
    assert container.cmd == ["/app/bin/busybox", "sh"]
    assert container.env == ["PATH=/app/bin:/bin", "APP_VERSION=1.4.2"]
    assert container.user == "2000:2000"
    assert container.working_dir == "/app"
    assert container.exposed_ports == {"8065/tcp": {}, "8067/udp": {}}
    assert container.volumes == {"/app/data": {}}
    assert container.stop_signal == "SIGTERM"
    assert container.labels is not None
    assert container.labels["org.example.arch"] == "amd64"
    assert container.labels["org.opencontainers.image.version"] == VERSION
    assert container.healthcheck is not None
    assert container.healthcheck.test == ["CMD", "/app/bin/busybox", "true"]
    assert container.healthcheck.interval == 30_000_000_000
    assert config.created == "2024-11-30T20:53:20Z"
    assert len(config.rootfs.diff_ids) == len(manifest.layers) == 2
    ours = gzip.decompress(await read_blob(target, manifest.layers[-1]))
    assert config.rootfs.diff_ids[-1] == "sha256:" + hashlib.sha256(ours).hexdigest()
    assert manifest.layers[-1] == result.layer


async def test_history_describes_the_added_layer_and_the_config(
    upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    target = store(registry, client, "history/fixture")
    result = await builder(recipe(upstream), client, tmp_path).assemble(job(ARM64), target)
    config = await config_of(target, result.descriptor)
    assert config.history is not None
    layer_entry, config_entry = config.history
    assert layer_entry.created == "2024-11-30T20:53:20Z"
    assert layer_entry.created_by is not None
    assert f"ADD {upstream.url}/releases/1.4.2/fixture-1.4.2-linux-arm64.tar.gz /app (strip 1)" in (
        layer_entry.created_by
    )
    assert "verified by checksums file" in layer_entry.created_by
    assert "COPY /entrypoint.sh" in layer_entry.created_by
    assert config_entry.empty_layer is True
    assert config_entry.created_by is not None and '"entrypoint":["/entrypoint.sh"]' in (
        config_entry.created_by
    )


async def test_base_env_and_command_are_kept_unless_overridden(
    upstream: FileServer,
    registry: Registry,
    client: RegistryClient,
    base_image: str,
    tmp_path: Path,
) -> None:
    plain = recipe(upstream, base=base_image, config={"env": {"APP_VERSION": "{version}"}})
    target = store(registry, client, "plain/fixture")
    result = await builder(plain, client, tmp_path).assemble(job(ARM64), target)
    config = await config_of(target, result.descriptor)
    assert config.config is not None
    assert config.config.env == ["PATH=/bin", "APP_VERSION=1.4.2"]
    assert config.config.cmd == ["/bin/busybox", "sh"]
    assert (config.architecture, config.os) == ("arm64", "linux")


async def test_base_layers_are_mounted_within_the_registry_and_converted_to_oci_types(
    upstream: FileServer,
    registry: Registry,
    client: RegistryClient,
    base_image: str,
    tmp_path: Path,
) -> None:
    target = store(registry, client, "mount/fixture")
    result = await builder(recipe(upstream, base=base_image), client, tmp_path).assemble(
        job(ARM64), target
    )
    # The base's layer and config are mounted; our layer and config are uploaded.
    assert (result.blobs_mounted, result.blobs_uploaded) == (2, 2)
    manifest = await manifest_of(target, result.descriptor)
    assert [layer.media_type for layer in manifest.layers] == [MediaType.OCI_LAYER_GZIP] * 2
    assert manifest.annotations is not None
    assert manifest.annotations["org.opencontainers.image.base.name"] == base_image
    base_digest = manifest.annotations["org.opencontainers.image.base.digest"]
    index, _ = await store(registry, client, "bases/busybox").get_manifest("1")
    assert base_digest != index.digest  # the arm64 manifest, not the index
    assert await target.resolve(base_digest) is not None


async def test_a_base_without_the_platform_is_refused(
    upstream: FileServer,
    registry: Registry,
    client: RegistryClient,
    base_image: str,
    tmp_path: Path,
) -> None:
    riscv = Platform.parse("linux/riscv64")
    target = store(registry, client, "riscv/fixture")
    with pytest.raises(BuildError) as caught:
        await builder(recipe(upstream, base=base_image), client, tmp_path).assemble(
            job(riscv), target
        )
    message = str(caught.value)
    assert "has no linux/riscv64 image (it has: linux/amd64, linux/arm64)" in message
    assert "fixture/fixture 1.4.2 linux/riscv64" in message
    assert not repository_exists(registry, "riscv/fixture")


# -- reproducibility ------------------------------------------------------------------------


async def test_same_version_twice_from_clean_state_with_other_thread_counts_is_identical(
    upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    target = store(registry, client, "repro/fixture")
    first = await builder(recipe(upstream), client, tmp_path / "a", threads=1).assemble(
        job(ARM64), target
    )
    second = await builder(recipe(upstream), client, tmp_path / "b", threads=2).assemble(
        job(ARM64), target
    )
    assert second.descriptor == first.descriptor
    assert first.blobs_uploaded == 2
    assert (second.blobs_uploaded, second.blobs_skipped) == (0, 2)


async def test_registry_and_layout_targets_get_the_same_digest(
    upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    layout = LayoutStore(tmp_path / "out", namespace="fixture")
    in_layout = await builder(recipe(upstream), client, tmp_path / "a").assemble(job(ARM64), layout)
    in_registry = await builder(recipe(upstream), client, tmp_path / "b").assemble(
        job(ARM64), store(registry, client, "layout/fixture")
    )
    assert in_layout.descriptor.digest == in_registry.descriptor.digest
    # Publishing tags it later; a tag lets skopeo address it in the layout now.
    _, data = await layout.get_manifest(in_layout.descriptor.digest)
    await layout.put_manifest(data, MediaType.OCI_MANIFEST, tag=VERSION)
    inspected = json.loads(skopeo("inspect", f"oci:{tmp_path / 'out'}:fixture:{VERSION}"))
    assert inspected["Architecture"] == "arm64"
    assert inspected["Digest"] == in_layout.descriptor.digest


async def test_work_files_are_removed_after_the_push(
    upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    await builder(recipe(upstream), client, tmp_path / "state").assemble(
        job(AMD64), store(registry, client, "clean/fixture")
    )
    assert list((tmp_path / "state" / "work").iterdir()) == []


# -- refusals: nothing is pushed ------------------------------------------------------------


async def test_checksum_mismatch_pushes_nothing(
    upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    pinned = recipe(upstream)
    spec = pinned.artifacts[0].model_copy(
        update={"checksums_url": None, "sha256": {"linux/arm64": "0" * 64}}
    )
    pinned = pinned.model_copy(update={"artifacts": [spec]})
    with pytest.raises(BuildError) as caught:
        await builder(pinned, client, tmp_path).assemble(
            job(ARM64), store(registry, client, "mismatch/fixture")
        )
    assert isinstance(caught.value.__cause__, ChecksumMismatchError)
    assert "fixture-1.4.2-linux-arm64.tar.gz" in str(caught.value)
    assert not repository_exists(registry, "mismatch/fixture")


async def test_truncated_download_pushes_nothing(
    upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    path = f"/releases/{VERSION}/fixture-{VERSION}-linux-amd64.tar.gz"
    upstream.truncate(path)
    try:
        with pytest.raises(BuildError, match="truncated"):
            await builder(recipe(upstream), client, tmp_path, download_attempts=1).assemble(
                job(AMD64), store(registry, client, "truncated/fixture")
            )
    finally:
        upstream.truncated.pop(path, None)
    assert not repository_exists(registry, "truncated/fixture")


async def test_a_download_cut_short_is_retried_and_gives_the_same_image(
    upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    path = f"/releases/{VERSION}/fixture-{VERSION}-linux-arm64.tar.gz"
    clean = await builder(recipe(upstream), client, tmp_path / "clean").assemble(
        job(ARM64), store(registry, client, "uncut/fixture")
    )
    before = upstream.requests.count(path)
    upstream.truncate(path, times=1)
    retried = await builder(recipe(upstream), client, tmp_path / "retried").assemble(
        job(ARM64), store(registry, client, "cut/fixture")
    )
    assert upstream.requests.count(path) - before == 2
    assert retried.descriptor.digest == clean.descriptor.digest


#: One unsafe archive per rule, and the entry its refusal must name.
UNSAFE_ARCHIVES = {
    "path traversal": ([member("fixture/../../etc/passwd")], "fixture/../../etc/passwd"),
    "absolute symlink": (
        [member("fixture/bin/sh", type=tarfile.SYMTYPE, linkname="/bin/busybox")],
        "fixture/bin/sh",
    ),
    "hard link outside": (
        [member("fixture/shadow", type=tarfile.LNKTYPE, linkname="../etc/shadow")],
        "fixture/shadow",
    ),
    "device node": (
        [member("fixture/dev/sda", type=tarfile.BLKTYPE, devmajor=8, devminor=0)],
        "fixture/dev/sda",
    ),
    "setuid file": ([member("fixture/bin/su", b"\x7fELF", mode=0o4755)], "fixture/bin/su"),
    "bomb": ([member("fixture/zeros", bytes(1 << 20))], "fixture/zeros"),
}


@pytest.mark.parametrize("case", list(UNSAFE_ARCHIVES))
async def test_unsafe_archive_pushes_nothing_and_names_the_entry(
    case: str, upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    members, entry = UNSAFE_ARCHIVES[case]
    archive = make_tar(tmp_path / "evil.tar.gz", members).read_bytes()
    path = f"/evil/{case.replace(' ', '-')}.tar.gz"
    upstream.files[path] = archive
    evil = recipe(
        upstream,
        artifacts=[
            {
                "url": upstream.url + path,
                "format": "tar.gz",
                "dest": "/app",
                "sha256": {"linux/arm64": hashlib.sha256(archive).hexdigest()},
            }
        ],
    )
    repository = f"evil/{case.replace(' ', '-')}"
    limits = ArchiveLimits(max_bytes=64 << 10)
    with pytest.raises(BuildError) as caught:
        await builder(evil, client, tmp_path, limits=limits).assemble(
            job(ARM64), store(registry, client, repository)
        )
    assert f"entry {entry!r}" in str(caught.value)
    assert "nothing was pushed" in str(caught.value)
    assert not repository_exists(registry, repository)


async def test_an_artifact_without_checksum_is_built_but_reported(
    upstream: FileServer, registry: Registry, client: RegistryClient, tmp_path: Path
) -> None:
    spec = (
        recipe(upstream)
        .artifacts[0]
        .model_copy(update={"checksums_url": None, "insecure_skip_checksum": True})
    )
    insecure = recipe(upstream).model_copy(update={"artifacts": [spec]})
    result = await builder(insecure, client, tmp_path).assemble(
        job(ARM64), store(registry, client, "insecure/fixture")
    )
    assert result.unverified == (
        f"{upstream.url}/releases/{VERSION}/fixture-{VERSION}-linux-arm64.tar.gz",
    )


# -- the epoch ------------------------------------------------------------------------------


def test_source_date_epoch_prefers_the_environment_then_the_release_time() -> None:
    released = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert source_date_epoch(released, {"SOURCE_DATE_EPOCH": "42"}) == 42
    assert source_date_epoch(released, {}) == int(released.timestamp())
    assert source_date_epoch(None, {}) == 0


# -- a real Docker Engine -------------------------------------------------------------------


async def test_docker_runs_both_platforms_of_an_assembled_index(
    upstream: FileServer,
    registry: Registry,
    client: RegistryClient,
    docker_engine: DockerEngine,
    tmp_path: Path,
) -> None:
    target = store(registry, client, "docker/fixture")
    assemble = builder(recipe(upstream), client, tmp_path)
    children = [(await assemble.assemble(job(p), target)).descriptor for p in (AMD64, ARM64)]
    # Publishing is another stage's job; a hand-made index stands in for it here.
    index = ImageIndex(media_type=MediaType.OCI_INDEX, manifests=children)
    await target.put_manifest(index.to_json(), MediaType.OCI_INDEX, tag=VERSION)
    image = f"{registry.host}/docker/fixture:{VERSION}"
    for platform, machine in ((AMD64, "x86_64"), (ARM64, "aarch64")):
        run = docker_engine.run(
            "run", "--rm", "--pull", "always", "--platform", str(platform), image,
            "/app/bin/busybox", "sh", "-c", 'echo "$(uname -m) $(id -u) $APP_VERSION $PWD"',
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == [machine, "2000", VERSION, "/app"]


# -- the catalog's Mattermost recipe --------------------------------------------------------


async def test_mattermost_assemble_recipe_matches_the_vendor_image(
    upstream: FileServer,
    registry: Registry,
    client: RegistryClient,
    base_image: str,
    tmp_path: Path,
) -> None:
    app = load_app(Path(__file__).parents[1] / "apps" / "mattermost" / "app.yaml")
    vendor = app.images[0].recipe_named("assemble")
    assert isinstance(vendor, AssembleRecipe)
    # The vendor's tarball layout, served locally; the base is the busybox fixture.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("mattermost/bin/mattermost", "mattermost/config/config.json"):
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
    upstream.files["/mattermost.tar.gz"] = buffer.getvalue()
    local = vendor.model_copy(
        update={
            "base": base_image,
            "artifacts": [
                vendor.artifacts[0].model_copy(update={"url": upstream.url + "/mattermost.tar.gz"})
            ],
        }
    )
    target = store(registry, client, "mattermost/assembled")
    result = await builder(local, client, tmp_path).assemble(job(ARM64), target)
    manifest = await manifest_of(target, result.descriptor)
    config = (await config_of(target, result.descriptor)).config
    assert config is not None
    assert config.user == "2000:2000"
    assert config.entrypoint == ["/entrypoint.sh"]
    assert config.cmd == ["mattermost"]
    assert config.working_dir == "/mattermost"
    assert sorted(config.exposed_ports or {}) == ["8065/tcp", "8067/tcp", "8074/tcp", "8075/tcp"]
    assert sorted(config.volumes or {}) == [
        "/mattermost/client/plugins",
        "/mattermost/config",
        "/mattermost/data",
        "/mattermost/logs",
        "/mattermost/plugins",
    ]
    assert config.healthcheck is not None
    assert config.healthcheck.test == [
        "CMD-SHELL",
        "curl -f http://localhost:8065/api/v4/system/ping || exit 1",
    ]
    assert result.unverified == (upstream.url + "/mattermost.tar.gz",)
    with tarfile.open(fileobj=io.BytesIO(await read_blob(target, manifest.layers[-1]))) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners["mattermost"] == owners["mattermost/data"] == (2000, 2000)
    assert (
        owners["mattermost/client/plugins"] == owners["mattermost/bin/mattermost"] == (2000, 2000)
    )
    assert owners["entrypoint.sh"] == (2000, 2000)
