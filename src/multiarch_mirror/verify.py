"""Verify a published image: every expected platform is there, configs match their
descriptors, every blob exists, and optionally a smoke command answers on each platform.

The smoke run unpacks the platform's layers (whiteouts honoured) into a temp root filesystem
and runs the command in a chroot; a foreign architecture runs under QEMU user emulation.
"""

from __future__ import annotations

import asyncio
import os
import platform as host_platform
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from multiarch_mirror.config import AppConfig, Catalog, ImageSpec
from multiarch_mirror.errors import MirrorError, UsageError
from multiarch_mirror.oci.media import (
    Descriptor,
    ImageIndex,
    Manifest,
    Platform,
    parse_config,
    parse_manifest,
)
from multiarch_mirror.oci.reference import (
    ImageLocation,
    LayoutReference,
    Reference,
    parse_location,
)
from multiarch_mirror.oci.store import Store

#: Opens the store of a location (and image namespace) for the duration of a run.
StoreOpener = Callable[[ImageLocation, str | None], Store]
DEFAULT_PLATFORMS = (Platform.parse("linux/amd64"), Platform.parse("linux/arm64"))

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
#: binfmt_misc handler (and `/usr/lib/binfmt.d` file) name per OCI architecture.
QEMU_HANDLERS = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64", "arm": "qemu-arm"}
_MACHINE_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class VerifyError(MirrorError):
    """Verification could not run at all (as opposed to an image that failed a check)."""


class SmokeTest(BaseModel):
    """A command run inside each platform's root filesystem; its output must match `expect`."""

    command: list[str]
    expect: str | None = None
    timeout: float = 120.0


class PlatformReport(BaseModel):
    platform: str
    digest: str | None = None
    ok: bool = True
    problems: list[str] = Field(default_factory=list)
    smoke_output: str | None = None


class VerifyReport(BaseModel):
    """What `verify` found; `ok` only when every platform passed every check."""

    reference: str
    digest: str | None = None
    ok: bool = True
    problems: list[str] = Field(default_factory=list)
    platforms: list[PlatformReport] = Field(default_factory=list)

    def failures(self) -> list[str]:
        """One line per problem, each naming the platform it concerns."""
        lines = list(self.problems)
        for entry in self.platforms:
            lines.extend(f"{entry.platform}: {problem}" for problem in entry.problems)
        return lines


def host_architecture() -> str:
    machine = host_platform.machine().lower()
    return _MACHINE_ARCH.get(machine, machine)


def emulation_problem(platform: Platform, binfmt_dir: Path = BINFMT_DIR) -> str | None:
    """Why binaries of `platform` can't run here, or None when they can (natively or via QEMU)."""
    if platform.architecture == host_architecture():
        return None
    handler = QEMU_HANDLERS.get(platform.architecture)
    if handler is None:
        return f"no known QEMU emulator for architecture {platform.architecture!r}"
    entry = binfmt_dir / handler
    if not entry.exists() or "enabled" not in entry.read_text(errors="replace"):
        return (
            f"running {platform} binaries needs QEMU user emulation, but binfmt_misc has no "
            f"enabled {handler} handler in {binfmt_dir}; install qemu-user-static and run "
            "`multiarch-mirror doctor --setup-qemu` (as root)"
        )
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def _inside(root: Path, name: str) -> Path:
    target = (root / name.lstrip("/")).resolve()
    if target != root and root not in target.parents:
        raise VerifyError(f"layer entry {name!r} escapes the root filesystem")
    return target


def apply_layer(layer: Path, rootfs: Path) -> None:
    """Apply one (possibly compressed) layer tar onto `rootfs`, honouring OCI whiteouts.

    Whiteouts hide lower-layer files only, so they are applied before this layer's own
    entries are extracted. An entry replaces whatever lower layers had at its path, never
    writing through a symlink left there.
    """
    rootfs = rootfs.resolve()
    try:
        with tarfile.open(layer, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                parent, base = os.path.split(member.name.rstrip("/"))
                if base == OPAQUE_WHITEOUT:
                    directory = _inside(rootfs, parent)
                    if directory.is_dir() and not directory.is_symlink():
                        for child in directory.iterdir():
                            _remove(child)
                elif base.startswith(WHITEOUT_PREFIX):
                    victim = rootfs / parent.lstrip("/") / base[len(WHITEOUT_PREFIX) :]
                    _inside(rootfs, str(victim.parent.relative_to(rootfs)))
                    _remove(victim)
            for member in members:
                base = os.path.basename(member.name.rstrip("/"))
                if base.startswith(WHITEOUT_PREFIX) or member.isdev():
                    continue
                target = rootfs / member.name.lstrip("/")
                _inside(rootfs, str(target.parent.relative_to(rootfs)))
                if target.is_symlink() or (target.exists() and not member.isdir()):
                    _remove(target)
                tar.extract(member, rootfs, filter="tar")
    except (tarfile.TarError, OSError) as exc:
        raise VerifyError(f"cannot unpack layer {layer.name}: {exc}") from None


def run_smoke(
    rootfs: Path, test: SmokeTest, platform: Platform, *, binfmt_dir: Path = BINFMT_DIR
) -> tuple[str, str | None]:
    """Run the smoke command in a chroot: (output, problem); no problem means it passed."""
    problem = emulation_problem(platform, binfmt_dir)
    if problem:
        return "", problem
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"}
    try:
        result = subprocess.run(
            ["chroot", str(rootfs), *test.command],
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            timeout=test.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "", f"smoke command {test.command} timed out after {test.timeout:g}s"
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        return output, f"smoke command {test.command} exited {result.returncode}: {output}"
    if test.expect is not None and not re.search(test.expect, output):
        return output, f"smoke output {output!r} does not match {test.expect!r}"
    return output, None


async def _spool_blob(store: Store, desc: Descriptor, directory: Path) -> Path:
    path = directory / desc.digest.replace(":", "-")
    with path.open("wb") as out:
        async with store.read_blob(desc) as chunks:
            async for chunk in chunks:
                out.write(chunk)
    return path


async def _check_platform(
    store: Store,
    desc: Descriptor,
    smoke: SmokeTest | None,
    binfmt_dir: Path,
) -> PlatformReport:
    assert desc.platform is not None
    report = PlatformReport(platform=str(desc.platform), digest=desc.digest)
    _, raw = await store.get_manifest(desc.digest)
    manifest = parse_manifest(raw, desc.media_type)
    if not isinstance(manifest, Manifest):
        report.problems.append("the index entry points to another index, not an image")
        report.ok = False
        return report
    for blob in manifest.blobs():
        if not await store.blob_exists(blob.digest):
            report.problems.append(f"blob {blob.digest} ({blob.media_type}) is missing")
    if report.problems:
        report.ok = False
        return report
    async with store.read_blob(manifest.config) as chunks:
        config = parse_config(b"".join([chunk async for chunk in chunks]))
    if not config.platform.matches(desc.platform):
        report.problems.append(
            f"the image config says {config.platform} under a {desc.platform} descriptor"
        )
    if smoke and not report.problems:
        with tempfile.TemporaryDirectory(prefix="mirror-verify-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            rootfs.mkdir()
            for layer in manifest.layers:
                path = await _spool_blob(store, layer, Path(tmp))
                await asyncio.to_thread(apply_layer, path, rootfs)
                path.unlink()
            output, problem = await asyncio.to_thread(
                run_smoke, rootfs, smoke, desc.platform, binfmt_dir=binfmt_dir
            )
            report.smoke_output = output
            if problem:
                report.problems.append(problem)
    report.ok = not report.problems
    return report


async def verify_image(
    store: Store,
    reference: str,
    platforms: Sequence[Platform],
    *,
    smoke: SmokeTest | None = None,
    display: str | None = None,
    binfmt_dir: Path = BINFMT_DIR,
) -> VerifyReport:
    """Check the index that `reference` (a tag or digest in `store`) names."""
    report = VerifyReport(reference=display or f"{store.display}:{reference}")
    desc, raw = await store.get_manifest(reference)
    report.digest = desc.digest
    document = parse_manifest(raw, desc.media_type)
    if isinstance(document, Manifest):
        report.problems.append("expected a multi-platform image index, found a single manifest")
        report.ok = False
        return report
    index: ImageIndex = document
    children = [d for d in index.manifests if d.platform is not None]
    for expected in platforms:
        found = [d for d in children if d.platform and d.platform.matches(expected)]
        if not found:
            report.platforms.append(
                PlatformReport(
                    platform=str(expected), ok=False, problems=["missing from the index"]
                )
            )
            continue
        report.platforms.append(await _check_platform(store, found[0], smoke, binfmt_dir))
    report.ok = not report.problems and all(entry.ok for entry in report.platforms)
    return report


@dataclass(frozen=True)
class VerifyTarget:
    """One image to verify: where it is, which platforms it must hold, what to run in it."""

    location: ImageLocation
    namespace: str | None
    reference: str
    display: str
    platforms: tuple[Platform, ...]
    smoke: SmokeTest | None = None


def smoke_test(catalog: Catalog, app: AppConfig, image: ImageSpec, version: str) -> SmokeTest:
    """The image's `smoke:` block rendered for `version` (the host's platform context)."""
    if image.smoke is None:
        raise UsageError(f"app {app.name!r} image {image.name!r} has no smoke: block to run")
    context = catalog.template_context(app, version, f"linux/{host_architecture()}")
    return SmokeTest(
        command=[context.render(part) for part in image.smoke.command],
        expect=context.render(image.smoke.expect),
    )


def _catalog_image(
    catalog: Catalog, location: ImageLocation
) -> tuple[AppConfig, ImageSpec, str] | None:
    """The catalog image a reference points into, with the version its tag names."""
    for app in catalog.apps.values():
        for image in app.images:
            repo = catalog.repository(image.name)
            if isinstance(location, LayoutReference) and isinstance(repo.location, LayoutReference):
                ref = location.ref or ""
                name, _, tag = ref.rpartition(":")
                if Path(location.path).resolve() == Path(repo.location.path) and (
                    name == repo.namespace
                ):
                    return app, image, tag
            elif (
                isinstance(location, Reference)
                and isinstance(repo.location, Reference)
                and location.name == repo.location.name
                and location.tag
            ):
                return app, image, location.tag
    return None


def target_for_reference(
    text: str,
    *,
    catalog: Catalog | None,
    platforms: Sequence[Platform],
    smoke: bool,
    command: Sequence[str] = (),
    expect: str | None = None,
) -> VerifyTarget:
    """What `verify REF` checks: platforms and smoke command from the options or the catalog."""
    location = parse_location(text)
    if isinstance(location, LayoutReference):
        if not location.ref:
            raise UsageError(f"{text!r} names no image: write oci:DIR:REF")
        reference = location.ref
    else:
        reference = location.identifier
    found = _catalog_image(catalog, location) if catalog else None
    if not platforms:
        platforms = catalog.platforms(found[1]) if catalog and found else DEFAULT_PLATFORMS
    test = None
    if command:
        test = SmokeTest(command=list(command), expect=expect)
    elif smoke:
        if not (catalog and found):
            raise UsageError(
                f"--smoke: {text!r} is not an image of the catalog, so there is no smoke: block "
                "to run; give the command with --command (and --expect)"
            )
        test = smoke_test(catalog, found[0], found[1], found[2])
    return VerifyTarget(
        location=location,
        namespace=None,
        reference=reference,
        display=text,
        platforms=tuple(platforms),
        smoke=test,
    )


async def catalog_targets(
    catalog: Catalog, apps: Sequence[AppConfig], stores: StoreOpener, *, smoke: bool
) -> list[VerifyTarget]:
    """Every mirrored version tag of every image of `apps`, oldest first."""
    targets: list[VerifyTarget] = []
    for app in apps:
        policy = catalog.policy(app)
        for image in app.ordered_images():
            repo = catalog.repository(image.name)
            tags = await stores(repo.location, repo.namespace).list_tags()
            versions = sorted(v for v in map(policy.version_of, tags) if v is not None)
            for version in versions:
                targets.append(
                    VerifyTarget(
                        location=repo.location,
                        namespace=repo.namespace,
                        reference=version.tag,
                        display=repo.reference(version.tag),
                        platforms=tuple(catalog.platforms(image)),
                        smoke=smoke_test(catalog, app, image, version.text)
                        if smoke and image.smoke
                        else None,
                    )
                )
    return targets


async def verify_targets(
    targets: Sequence[VerifyTarget], stores: StoreOpener, *, binfmt_dir: Path = BINFMT_DIR
) -> list[VerifyReport]:
    reports = []
    for target in targets:
        store = stores(target.location, target.namespace)
        reports.append(
            await verify_image(
                store,
                target.reference,
                target.platforms,
                smoke=target.smoke,
                display=target.display,
                binfmt_dir=binfmt_dir,
            )
        )
    return reports
