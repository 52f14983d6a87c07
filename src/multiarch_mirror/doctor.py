"""`doctor`: can this machine build and push? Platforms (native or under QEMU), builders and
their versions, and the target registry's reachability and push permission.

`setup_qemu` registers QEMU user emulation with binfmt_misc, as CI setup actions do.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from multiarch_mirror.build.buildah import buildah_version
from multiarch_mirror.config import Catalog
from multiarch_mirror.errors import MirrorError
from multiarch_mirror.oci.client import RegistryClient, RegistryError, RegistryUnavailableError
from multiarch_mirror.oci.media import Platform
from multiarch_mirror.oci.reference import LayoutReference
from multiarch_mirror.verify import BINFMT_DIR, QEMU_HANDLERS, emulation_problem, host_architecture

BINFMT_CONF_DIR = Path("/usr/lib/binfmt.d")


class DoctorError(MirrorError):
    """QEMU emulation could not be set up."""


class PlatformCheck(BaseModel):
    platform: str
    buildable: bool
    #: `native`, `qemu` (emulated through binfmt_misc), or None when it can't be built.
    via: str | None
    problem: str | None = None


class BuilderCheck(BaseModel):
    name: str
    available: bool
    version: str | None = None
    problem: str | None = None


class TargetCheck(BaseModel):
    """Whether the target answers and the credentials may push to `repository`."""

    target: str
    repository: str
    reachable: bool
    push: bool
    problem: str | None = None


class DoctorReport(BaseModel):
    platforms: list[PlatformCheck]
    builders: list[BuilderCheck]
    target: TargetCheck | None = None

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        found = [f"{check.platform}: {check.problem}" for check in self.platforms if check.problem]
        if not any(builder.available for builder in self.builders):
            found += [f"{b.name}: {b.problem}" for b in self.builders if b.problem]
        if self.target is not None and self.target.problem:
            found.append(f"target {self.target.target}: {self.target.problem}")
        return found


def check_platforms(
    platforms: Sequence[Platform], binfmt_dir: Path = BINFMT_DIR
) -> list[PlatformCheck]:
    """Whether binaries of each platform run here: natively, or under a registered QEMU."""
    checks = []
    for platform in platforms:
        problem = emulation_problem(platform, binfmt_dir)
        native = platform.architecture == host_architecture()
        checks.append(
            PlatformCheck(
                platform=str(platform),
                buildable=problem is None,
                via=None if problem else ("native" if native else "qemu"),
                problem=problem,
            )
        )
    return checks


def check_builders() -> list[BuilderCheck]:
    version = buildah_version()
    return [
        BuilderCheck(
            name="buildah",
            available=version is not None,
            version=version,
            problem=None
            if version
            else "not installed: `apt-get install buildah` (needed for Dockerfile recipes)",
        )
    ]


async def check_target(catalog: Catalog, client: RegistryClient) -> TargetCheck:
    """Push permission on the first image's repository (any name will do for a layout)."""
    image = next(
        (image.name for app in catalog.apps.values() for image in app.images), "doctor-check"
    )
    repository = catalog.repository(image)
    location = repository.location
    if isinstance(location, LayoutReference):
        directory = Path(location.path)
        existing = next((p for p in (directory, *directory.parents) if p.exists()), directory)
        writable = os.access(existing, os.W_OK)
        return TargetCheck(
            target=catalog.mirror.target,
            repository=str(repository),
            reachable=True,
            push=writable,
            problem=None if writable else f"{existing} is not writable by this user",
        )
    check = TargetCheck(
        target=catalog.mirror.target, repository=str(repository), reachable=True, push=True
    )
    try:
        await client.check_push(location.registry, location.repository)
    except RegistryUnavailableError as exc:
        return check.model_copy(update={"reachable": False, "push": False, "problem": str(exc)})
    except RegistryError as exc:
        return check.model_copy(update={"push": False, "problem": str(exc)})
    return check


def diagnose(
    platforms: Sequence[Platform],
    *,
    binfmt_dir: Path = BINFMT_DIR,
    target: TargetCheck | None = None,
) -> DoctorReport:
    return DoctorReport(
        platforms=check_platforms(platforms, binfmt_dir), builders=check_builders(), target=target
    )


def _definition(conf: Path) -> str:
    """The registration line of a binfmt.d file (`:name:type:offset:magic:mask:interp:flags`)."""
    for line in conf.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            return line.strip()
    raise DoctorError(f"{conf} holds no binfmt definition; reinstall qemu-user-static")


def setup_qemu(
    platforms: Sequence[Platform],
    *,
    binfmt_dir: Path = BINFMT_DIR,
    conf_dir: Path = BINFMT_CONF_DIR,
) -> list[str]:
    """Register the QEMU handlers the foreign `platforms` need; returns the names registered.

    Mounts binfmt_misc first if it isn't. The host's own architecture is never registered:
    that would send every native binary through the emulator.
    """
    register = binfmt_dir / "register"
    if not register.exists():
        mounted = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if mounted.returncode != 0:
            raise DoctorError(
                f"cannot mount binfmt_misc on {binfmt_dir}: {mounted.stderr.strip()}; run as "
                "root, or in a container started with --privileged"
            )
    registered = []
    for architecture in sorted({p.architecture for p in platforms} - {host_architecture()}):
        handler = QEMU_HANDLERS.get(architecture)
        if handler is None:
            raise DoctorError(f"no known QEMU emulator for architecture {architecture!r}")
        if (binfmt_dir / handler).exists():
            continue
        conf = conf_dir / f"{handler}.conf"
        if not conf.is_file():
            raise DoctorError(
                f"{conf} is missing: install QEMU user emulation "
                "(Debian/Ubuntu: `apt-get install qemu-user-static`)"
            )
        try:
            register.write_text(_definition(conf))
        except OSError as exc:
            raise DoctorError(f"cannot register {handler} in {register}: {exc}") from None
        registered.append(handler)
    return registered
