"""Dockerfile builds with buildah: one platform per job, layers cached between runs.

buildah only builds: the image is exported as an OCI layout and pushed by digest through our
own `Store`, so registry auth, retries and cross-repository mounts are ours. Builds are
reproducible: every timestamp is the upstream commit's time (`--timestamp`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from multiarch_mirror.build import (
    LABEL_CREATED,
    LABEL_FINGERPRINT,
    LABEL_REVISION,
    LABEL_SOURCE,
    LABEL_VERSION,
    BuildError,
    BuildJob,
    Renderer,
)
from multiarch_mirror.build.recipe import DockerfileSpec, PreparedRecipe, SourceCache, prepare
from multiarch_mirror.errors import MirrorError
from multiarch_mirror.oci.copy import copy_manifest
from multiarch_mirror.oci.layout import LayoutStore
from multiarch_mirror.oci.media import Descriptor, Platform
from multiarch_mirror.oci.reference import Reference, is_loopback_host
from multiarch_mirror.oci.store import Store
from multiarch_mirror.verify import BINFMT_DIR, emulation_problem

log = logging.getLogger(__name__)

STORAGE_DRIVERS = ("overlay", "vfs")
#: How many lines of a failed build's output the error quotes.
_QUOTED_LINES = 12
_STEP = re.compile(r"^STEP \d+/\d+: ")
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)
_ARG_DEFAULT = re.compile(r"^\s*ARG\s+(\w+)=(\S+)", re.IGNORECASE | re.MULTILINE)
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-[^}]*)?\}|\$(\w+)")


def buildah_version(executable: str = "buildah") -> str | None:
    """`1.28.2`, or None when buildah is not installed."""
    path = shutil.which(executable)
    if path is None:
        return None
    result = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"version (\S+)", result.stdout)
    return match.group(1) if match else None


@dataclass(frozen=True)
class BuildahSettings:
    """Where and how buildah runs; defaults work as root in a VM or a privileged container."""

    state_dir: Path
    #: None: the driver the storage already uses, else vfs. vfs works everywhere (nested
    #: containers, any backing filesystem) and leaves no mounts behind; overlay is faster
    #: for big images where the kernel allows it.
    storage_driver: str | None = None
    #: chroot needs no runtime or user namespaces, so it works nested in containers.
    isolation: str = "chroot"
    insecure_registries: tuple[str, ...] = ()
    binfmt_dir: Path = BINFMT_DIR
    executable: str = "buildah"

    def storage(self, platform: Platform) -> Path:
        """buildah's storage for one platform's builds.

        One per platform: a tag names one image in a storage, so concurrent builds of two
        platforms from the same base tag would otherwise re-point it under each other.
        """
        return self.state_dir / "buildah" / str(platform).replace("/", "-")

    def driver(self, platform: Platform) -> str:
        if self.storage_driver:
            if self.storage_driver not in STORAGE_DRIVERS:
                raise BuildError(
                    f"unknown storage driver {self.storage_driver!r}; use one of "
                    + ", ".join(STORAGE_DRIVERS)
                )
            return self.storage_driver
        # Storage made by one driver can't be opened by another: keep what is there.
        for name in STORAGE_DRIVERS:
            if (self.storage(platform) / "storage" / f"{name}-images").is_dir():
                return name
        return "vfs"

    def command(self, platform: Platform) -> list[str]:
        """buildah with the global storage options for `platform`'s builds."""
        path = shutil.which(self.executable)
        if path is None:
            raise BuildError(
                "buildah is not installed: install it (Debian/Ubuntu: `apt-get install buildah`) "
                "or choose another builder; `multiarch-mirror doctor` lists what is available"
            )
        storage = self.storage(platform)
        return [
            path,
            "--root",
            str(storage / "storage"),
            "--runroot",
            str(storage / "run"),
            "--storage-driver",
            self.driver(platform),
        ]


class _Output:
    """What a command printed: the last build step started and the lines since."""

    def __init__(self) -> None:
        self.step: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=_QUOTED_LINES)

    def add(self, line: str) -> None:
        if _STEP.match(line):
            self.step = line
            self.tail.clear()
        else:
            self.tail.append(line)


async def _stream(cmd: list[str], *, env: dict[str, str], job: BuildJob, action: str) -> None:
    """Run `cmd`, logging each output line with the job's name; raise on failure."""
    process = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        limit=1 << 20,
    )
    assert process.stdout is not None
    output = _Output()
    async for raw in process.stdout:
        line = raw.decode(errors="replace").rstrip()
        if line:
            log.info("%s | %s", job.name, line)
            output.add(line)
    if await process.wait() != 0:
        where = f"at {output.step}" if output.step else "before its first step"
        quoted = "\n  ".join(output.tail or ["(no output)"])
        raise BuildError(
            f"buildah failed to {action} {job.name} {where}\n  {quoted}\n"
            "fix the recipe or the upstream release; `-v` streams the whole build output"
        )


def _base_registries(dockerfile: str, build_args: dict[str, str]) -> set[str]:
    """Registries the Dockerfile's FROM lines name, with ARG values substituted."""
    values: dict[str, str] = dict(_ARG_DEFAULT.findall(dockerfile)) | build_args

    def substitute(match: re.Match[str]) -> str:
        name: str = match.group(1) or match.group(2)
        return values.get(name, "")

    registries: set[str] = set()
    for image in _FROM.findall(dockerfile):
        try:
            registries.add(Reference.parse(_VARIABLE.sub(substitute, image)).registry)
        except MirrorError:
            continue  # `scratch`, an earlier stage's name, or an unresolvable ARG
    return registries


class BuildahBuilder:
    """Builds a Dockerfile recipe with buildah, one platform per job."""

    def __init__(self, recipe: DockerfileSpec, render: Renderer, settings: BuildahSettings):
        self.recipe = recipe
        self.render = render
        self.settings = settings
        self.sources = SourceCache(settings.state_dir / "sources")

    async def build(self, job: BuildJob, target: Store) -> Descriptor:
        """Build `job`, then push it by digest into `target` with our copy engine."""
        work = self.settings.state_dir / "work"
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work, prefix="layout-") as layout:
            desc = await self.build_layout(job, Path(layout))
            await copy_manifest(LayoutStore(layout), desc, target)
        return desc

    async def build_layout(self, job: BuildJob, layout: Path) -> Descriptor:
        """Build `job` and write the image into the OCI layout directory `layout`.

        Returns the manifest's descriptor (platform set); the layout's ref name is `job.id`.
        """
        problem = emulation_problem(job.platform, self.settings.binfmt_dir)
        if problem:
            raise BuildError(f"cannot build {job.name}: {problem}")
        recipe = prepare(
            self.recipe,
            job,
            self.render,
            cache=self.sources,
            workdir=self.settings.state_dir / "work",
        )
        prepared = await asyncio.to_thread(recipe.__enter__)
        try:
            image_id = await self._build(job, prepared)
        finally:
            await asyncio.to_thread(recipe.__exit__, None, None, None)
        return await self._export(job, image_id, layout)

    def _environment(self, prepared: PreparedRecipe) -> dict[str, str]:
        env = dict(os.environ)
        dockerfile = prepared.dockerfile.read_text(errors="replace")
        insecure = sorted(
            registry
            for registry in _base_registries(dockerfile, prepared.build_args)
            if is_loopback_host(registry) or registry in self.settings.insecure_registries
        )
        if insecure:
            env["CONTAINERS_REGISTRIES_CONF"] = str(self._registries_conf(insecure))
        return env

    def _registries_conf(self, insecure: list[str]) -> Path:
        """The registries configuration in force, plus plain-HTTP entries for `insecure`."""
        current = Path(
            os.environ.get("CONTAINERS_REGISTRIES_CONF", "/etc/containers/registries.conf")
        )
        text = current.read_text() if current.is_file() else ""
        if "[registries." in text:
            text = ""  # the old v1 format can't be mixed with [[registry]] tables
        for registry in insecure:
            if f'"{registry}"' not in text:
                text += f'\n[[registry]]\nlocation = "{registry}"\ninsecure = true\n'
        path = self.settings.state_dir / "buildah" / f"registries-{'-'.join(insecure)}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Concurrent builds read this file while others rewrite it: replace it atomically.
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as staged:
            staged.write(text)
        os.replace(staged.name, path)
        return path

    async def _build(self, job: BuildJob, prepared: PreparedRecipe) -> str:
        revision = prepared.revision
        labels = {
            LABEL_SOURCE: revision.url,
            LABEL_VERSION: job.version,
            LABEL_REVISION: revision.commit,
            LABEL_CREATED: revision.committed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            LABEL_FINGERPRINT: prepared.fingerprint,
        }
        with tempfile.TemporaryDirectory(prefix="buildah-") as tmp:
            iidfile = Path(tmp) / "iid"
            cmd = [
                *self.settings.command(job.platform),
                "build",
                "--platform",
                str(job.platform),
                "--layers",
                "--isolation",
                self.settings.isolation,
                "--timestamp",
                str(int(revision.committed.timestamp())),
                "--file",
                str(prepared.dockerfile),
                "--iidfile",
                str(iidfile),
            ]
            if prepared.target:
                cmd += ["--target", prepared.target]
            for name, value in prepared.build_args.items():
                cmd += ["--build-arg", f"{name}={value}"]
            for name, value in labels.items():
                cmd += ["--label", f"{name}={value}"]
            cmd.append(str(prepared.context))
            await _stream(cmd, env=self._environment(prepared), job=job, action="build")
            return iidfile.read_text().strip()

    async def _export(self, job: BuildJob, image_id: str, layout: Path) -> Descriptor:
        with tempfile.TemporaryDirectory(prefix="buildah-") as tmp:
            digestfile = Path(tmp) / "digest"
            cmd = [
                *self.settings.command(job.platform),
                "push",
                "--quiet",
                "--digestfile",
                str(digestfile),
                image_id,
                f"oci:{layout}:{job.id}",
            ]
            await _stream(cmd, env=dict(os.environ), job=job, action="export")
            digest = digestfile.read_text().strip()
        desc = await LayoutStore(layout).resolve(job.id)
        if desc is None or desc.digest != digest:
            raise BuildError(f"buildah push of {job.name} left no manifest {digest} in {layout}")
        return desc.model_copy(update={"platform": job.platform})
