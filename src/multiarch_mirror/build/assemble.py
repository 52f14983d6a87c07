"""The `assemble` builder: the upstream's own per-arch release files as a layer on a base image.

No daemon and no emulation: resolve the base image for the job's platform, download and verify
the artifacts, write one deterministic layer, merge the config, push by digest. The same inputs
give the same manifest digest on any machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

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
from multiarch_mirror.build.artifacts import (
    DOWNLOAD_TIMEOUT,
    ArtifactDownload,
    ArtifactRequest,
    DownloadInterruptedError,
    FetchedArtifact,
    Verification,
    expected_sha256,
    pause,
)
from multiarch_mirror.build.layers import (
    ArchiveFormat,
    ArchiveLimits,
    Artifact,
    InlineFile,
    Layer,
    LayerOptions,
    SetuidPolicy,
    write_layer,
)
from multiarch_mirror.config import Artifact as ArtifactSpec
from multiarch_mirror.config import AssembleRecipe, ConfigOverrides
from multiarch_mirror.errors import MirrorError, UsageError
from multiarch_mirror.oci.client import BlobSource, RegistryClient
from multiarch_mirror.oci.copy import BlobOutcome, copy_manifest, read_small_blob
from multiarch_mirror.oci.media import (
    ContainerConfig,
    Descriptor,
    HealthConfig,
    History,
    ImageConfig,
    ImageIndex,
    Manifest,
    MediaType,
    Platform,
    RootFS,
    parse_config,
    parse_manifest,
)
from multiarch_mirror.oci.reference import LayoutReference, parse_location
from multiarch_mirror.oci.store import Store, open_store

log = logging.getLogger(__name__)

SCRATCH = "scratch"
CREATED_BY = "multiarch-mirror assemble"
#: Standard OCI annotations naming the base image of a manifest.
ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"
ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest"
#: Labels a base image sets about itself that would be wrong on ours. The source label is
#: left to the recipe: an artifact URL is per platform, so it would mislead on an index.
_BASE_IDENTITY_LABELS = (LABEL_SOURCE, LABEL_VERSION, LABEL_REVISION, LABEL_CREATED)
#: Docker schema 2 layer types and their OCI names (same bytes, same digest).
_OCI_LAYER_TYPES = {
    MediaType.DOCKER_LAYER_GZIP: MediaType.OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": MediaType.OCI_LAYER,
}
_UPLOAD_CHUNK = 1 << 20
_NANOSECONDS = 1_000_000_000


def source_date_epoch(
    published: datetime | None = None, environ: Mapping[str, str] = os.environ
) -> int:
    """`SOURCE_DATE_EPOCH` if set, else the upstream release time, else 0 (1970-01-01)."""
    value = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if value:
        if not value.isdigit():
            raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds since 1970")
        return int(value)
    return int(published.timestamp()) if published is not None else 0


@dataclass(frozen=True)
class AssembleSettings:
    """What every assemble build of a run shares."""

    #: Reads the base images (and mounts their blobs when the target is on the same registry).
    registry: RegistryClient
    #: Downloads and layers are spooled under `<state_dir>/work` and removed after the push.
    state_dir: Path
    #: Upstream release time per version: the default `SOURCE_DATE_EPOCH`.
    release_times: Mapping[str, datetime] = field(default_factory=dict)
    #: Compression threads; the bytes are the same for any value. None: one per CPU.
    threads: int | None = None
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    download_attempts: int = 3


@dataclass(frozen=True)
class BaseImage:
    """The base resolved for one platform; `manifest` is None for `scratch`."""

    reference: str
    store: Store | None = None
    descriptor: Descriptor | None = None
    manifest: Manifest | None = None
    config: ImageConfig | None = None

    @property
    def digest(self) -> str | None:
        return self.descriptor.digest if self.descriptor else None


@dataclass(frozen=True)
class AssembleResult:
    """The pushed image and what the push cost; `unverified` lists artifacts without checksum."""

    descriptor: Descriptor
    layer: Descriptor
    blobs_uploaded: int
    blobs_mounted: int
    blobs_skipped: int
    unverified: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def notes(self) -> list[str]:
        """What a report must say about this build: unverified artifacts, dropped bits."""
        return [
            f"artifact not checksum-verified (insecure_skip_checksum): {url}"
            for url in self.unverified
        ] + list(self.warnings)


class AssembleBuilder:
    """Builds a `kind: assemble` recipe, one platform per job (see the module docstring)."""

    def __init__(self, recipe: AssembleRecipe, render: Renderer, settings: AssembleSettings):
        self.recipe = recipe
        self.render = render
        self.settings = settings

    async def build(self, job: BuildJob, target: Store) -> Descriptor:
        return (await self.assemble(job, target)).descriptor

    async def assemble(self, job: BuildJob, target: Store) -> AssembleResult:
        """Build `job` and push it by digest (no tag) into `target`."""
        try:
            return await self._assemble(job, target)
        except BuildError:
            raise
        except MirrorError as exc:
            raise BuildError(f"cannot assemble {job.name}: {exc}") from exc

    async def _assemble(self, job: BuildJob, target: Store) -> AssembleResult:
        epoch = source_date_epoch(self.settings.release_times.get(job.version))
        base = await self.resolve_base(job)
        requests = [(spec, self._request(spec, job)) for spec in self.recipe.artifacts]
        work_root = self.settings.state_dir / "work"
        work_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"assemble-{job.image}-", dir=work_root))
        try:
            # A thread of its own: downloads can take minutes, and the default executor's few
            # workers serve every other job's file I/O meanwhile.
            pool = ThreadPoolExecutor(1, thread_name_prefix=f"assemble-{job.id}")
            try:
                layer, fetched = await asyncio.get_running_loop().run_in_executor(
                    pool, self._write_layer, job, requests, epoch, work / "layer"
                )
            finally:
                pool.shutdown(wait=False)
            for warning in layer.warnings:
                log.warning("%s: %s", job.name, warning)
            config = self.image_config(job, base, layer, fetched, epoch).to_json()
            manifest = _manifest(base, layer, config).to_json()
            counts = await _push(target, base, layer, config)
            desc = await target.put_manifest(manifest, MediaType.OCI_MANIFEST)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        return AssembleResult(
            descriptor=Descriptor(
                media_type=MediaType.OCI_MANIFEST,
                digest=desc.digest,
                size=desc.size,
                platform=job.platform,
            ),
            layer=layer.descriptor(),
            blobs_uploaded=counts[BlobOutcome.COPIED],
            blobs_mounted=counts[BlobOutcome.MOUNTED],
            blobs_skipped=counts[BlobOutcome.SKIPPED],
            unverified=tuple(a.url for _, a in fetched if a.verification is Verification.NONE),
            warnings=layer.warnings,
        )

    # -- base -------------------------------------------------------------------------------

    async def resolve_base(self, job: BuildJob) -> BaseImage:
        """The base image's manifest and config for the job's platform."""
        text = self.render(self.recipe.base, job).strip()
        if text == SCRATCH:
            return BaseImage(reference=SCRATCH)
        location = parse_location(text)
        identifier = (
            (location.ref or "latest")
            if isinstance(location, LayoutReference)
            else location.identifier
        )
        store = open_store(location, self.settings.registry)
        desc, data = await store.get_manifest(identifier)
        parsed = parse_manifest(data, desc.media_type)
        if isinstance(parsed, ImageIndex):
            children = [
                c for c in parsed.manifests if c.platform and c.platform.matches(job.platform)
            ]
            if not children:
                available = ", ".join(str(c.platform) for c in parsed.manifests if c.platform)
                raise BuildError(
                    f"cannot assemble {job.name}: base image {text} has no {job.platform} image (it has: {available or 'none'}); "
                    "pick a multi-arch base or drop the platform from this image"
                )
            desc, data = await store.get_manifest(children[0].digest)
            parsed = parse_manifest(data, desc.media_type)
            if isinstance(parsed, ImageIndex):
                raise BuildError(
                    f"cannot assemble {job.name}: base image {text} nests an index for "
                    f"{job.platform}; use a reference to a plain image index"
                )
        config = parse_config(await read_small_blob(store, parsed.config))
        if not config.platform.matches(job.platform):
            raise BuildError(
                f"cannot assemble {job.name}: base image {text} is a single-platform image for {config.platform}, "
                f"not {job.platform}; use a multi-arch base"
            )
        return BaseImage(text, store, desc, parsed, config)

    # -- artifacts and layer ----------------------------------------------------------------

    def _request(self, spec: ArtifactSpec, job: BuildJob) -> ArtifactRequest:
        url = self.render(spec.url, job)
        pinned = None
        if spec.sha256 is not None:
            pinned = next(
                (
                    hex_
                    for name, hex_ in spec.sha256.items()
                    if Platform.parse(name).matches(job.platform)
                ),
                None,
            )
            if pinned is None and spec.checksums_url is None and not spec.insecure_skip_checksum:
                raise BuildError(
                    f"cannot assemble {job.name}: artifact {url} pins sha256 for {', '.join(spec.sha256)} but not for "
                    f"{job.platform}; add it to the recipe"
                )
        return ArtifactRequest(
            url=url,
            sha256=pinned,
            checksums_url=self.render(spec.checksums_url, job) if spec.checksums_url else None,
            insecure_skip_checksum=spec.insecure_skip_checksum,
        )

    def _write_layer(
        self,
        job: BuildJob,
        requests: list[tuple[ArtifactSpec, ArtifactRequest]],
        epoch: int,
        path: Path,
    ) -> tuple[Layer, list[tuple[ArtifactSpec, FetchedArtifact]]]:
        """Stream every artifact into one layer (in a worker thread); returns what was read.

        A download cut short restarts the layer from the first artifact, at most
        `download_attempts` times.
        """
        attempts = self.settings.download_attempts
        files = [InlineFile(f.path, f.content.encode(), f.mode) for f in self.recipe.files]
        options = LayerOptions(
            epoch=epoch,
            uid=self.recipe.uid,
            gid=self.recipe.gid,
            setuid=SetuidPolicy(self.recipe.setuid),
            limits=self.settings.limits,
            threads=self.settings.threads,
        )
        with httpx.Client(timeout=DOWNLOAD_TIMEOUT) as http:
            expected = [expected_sha256(http, request, attempts) for _, request in requests]
            downloads = [
                ArtifactDownload(http, request, sha256, attempts)
                for (_, request), sha256 in zip(requests, expected, strict=True)
            ]
            artifacts = [
                Artifact(
                    source=download,
                    name=download.url,
                    format=ArchiveFormat(spec.format),
                    dest=spec.dest,
                    strip_components=spec.strip_components,
                    mode=spec.mode if spec.mode is not None else 0o755,
                )
                for (spec, _), download in zip(requests, downloads, strict=True)
            ]
            for attempt in range(attempts):
                try:
                    layer = write_layer(
                        path,
                        artifacts=artifacts,
                        files=files,
                        directories=self.recipe.directories,
                        options=options,
                    )
                except DownloadInterruptedError as exc:
                    if attempt + 1 >= attempts:
                        raise
                    log.info("%s: %s; retrying", job.name, exc)
                    pause(attempt)
                    continue
                fetched = [d.result for d in downloads]
                return layer, [(spec, f) for (spec, _), f in zip(requests, fetched, strict=True)]
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- config -----------------------------------------------------------------------------

    def image_config(
        self,
        job: BuildJob,
        base: BaseImage,
        layer: Layer,
        fetched: list[tuple[ArtifactSpec, FetchedArtifact]],
        epoch: int,
    ) -> ImageConfig:
        """The base config with the recipe's overrides, our layer and its history entry."""
        created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        overrides = self.recipe.config
        env = {k: self.render(v, job) for k, v in overrides.env.items()}
        labels = {k: self.render(v, job) for k, v in overrides.labels.items()}
        identity = {
            LABEL_VERSION: job.version,
            LABEL_CREATED: created,
            LABEL_FINGERPRINT: self._fingerprint(base, fetched, env, labels, epoch),
        }
        if base.config is not None:
            start = base.config
        else:
            start = ImageConfig(
                architecture=job.platform.architecture,
                os=job.platform.os,
                variant=job.platform.variant,
            )
        container = _merge_container(
            start.config or ContainerConfig(), overrides, env, {**labels, **identity}
        )
        history = [*(start.history or [])]
        history.append(
            History(created=created, created_by=self._describe(fetched), comment=CREATED_BY)
        )
        if overrides.model_dump(exclude_defaults=True):
            history.append(
                History(
                    created=created,
                    created_by=f"{CREATED_BY}: config {_describe_overrides(overrides)}",
                    empty_layer=True,
                )
            )
        return start.model_copy(
            update={
                "created": created,
                "config": container,
                "rootfs": RootFS(diff_ids=[*start.rootfs.diff_ids, layer.diff_id]),
                "history": history,
            }
        )

    def _describe(self, fetched: list[tuple[ArtifactSpec, FetchedArtifact]]) -> str:
        steps = [
            f"ADD {download.url} {spec.dest}"
            + (f" (strip {spec.strip_components})" if spec.strip_components else "")
            + f" sha256:{download.sha256} ({_verified(download.verification)})"
            for spec, download in fetched
        ]
        if self.recipe.files:
            steps.append("COPY " + " ".join(f.path for f in self.recipe.files))
        if self.recipe.directories:
            steps.append("MKDIR " + " ".join(self.recipe.directories))
        owner = f"{self.recipe.uid}:{self.recipe.gid}"
        return f"{CREATED_BY}: " + "; ".join(steps) + f" (owner {owner})"

    def _fingerprint(
        self,
        base: BaseImage,
        fetched: list[tuple[ArtifactSpec, FetchedArtifact]],
        env: Mapping[str, str],
        labels: Mapping[str, str],
        epoch: int,
    ) -> str:
        """A hash of every resolved input, so a change of recipe shows on the image."""
        document = {
            "base": f"{base.reference}@{base.digest}" if base.digest else base.reference,
            "artifacts": [
                {**spec.model_dump(mode="json"), "url": download.url, "sha256": download.sha256}
                for spec, download in fetched
            ],
            "recipe": self.recipe.model_dump(mode="json", exclude={"artifacts", "base"}),
            "env": dict(env),
            "labels": dict(labels),
            "epoch": epoch,
        }
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _merge_container(
    base: ContainerConfig,
    overrides: ConfigOverrides,
    env: Mapping[str, str],
    labels: Mapping[str, str],
) -> ContainerConfig:
    """Dockerfile semantics: ENV and LABEL merge, EXPOSE and VOLUME add, the rest replaces.

    As in a Dockerfile, setting `entrypoint` without `cmd` clears the base's command.
    """
    merged_env = {item.partition("=")[0]: item for item in base.env or []}
    merged_env.update({key: f"{key}={value}" for key, value in env.items()})
    merged_labels = {
        k: v for k, v in (base.labels or {}).items() if k not in _BASE_IDENTITY_LABELS
    } | dict(labels)
    ports = dict(base.exposed_ports or {}) | {port: {} for port in overrides.exposed_ports}
    volumes = dict(base.volumes or {}) | {volume: {} for volume in overrides.volumes}
    cmd = base.cmd
    if overrides.entrypoint is not None:
        cmd = None
    if overrides.cmd is not None:
        cmd = overrides.cmd
    health = base.healthcheck
    if overrides.healthcheck is not None:
        check = overrides.healthcheck
        health = HealthConfig(
            test=check.test,
            interval=_ns(check.interval),
            timeout=_ns(check.timeout),
            start_period=_ns(check.start_period),
            retries=check.retries,
        )
    return base.model_copy(
        update={
            "user": overrides.user if overrides.user is not None else base.user,
            "exposed_ports": ports or None,
            "env": list(merged_env.values()) or None,
            "entrypoint": (
                overrides.entrypoint if overrides.entrypoint is not None else base.entrypoint
            ),
            "cmd": cmd,
            "volumes": volumes or None,
            "working_dir": overrides.workdir if overrides.workdir is not None else base.working_dir,
            "labels": merged_labels or None,
            "stop_signal": overrides.stop_signal or base.stop_signal,
            "healthcheck": health,
        }
    )


def _verified(verification: Verification) -> str:
    if verification is Verification.NONE:
        return "NOT VERIFIED: insecure_skip_checksum"
    return f"verified by {verification.value}"


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * _NANOSECONDS)


def _describe_overrides(overrides: ConfigOverrides) -> str:
    return json.dumps(
        overrides.model_dump(mode="json", exclude_defaults=True),
        sort_keys=True,
        separators=(",", ":"),
    )


def _manifest(base: BaseImage, layer: Layer, config: bytes) -> Manifest:
    base_layers = []
    if base.manifest is not None:
        base_layers = [
            layer_desc.model_copy(
                update={
                    "media_type": _OCI_LAYER_TYPES.get(layer_desc.media_type, layer_desc.media_type)
                }
            )
            for layer_desc in base.manifest.layers
        ]
    annotations = None
    if base.digest is not None:
        annotations = {ANNOTATION_BASE_NAME: base.reference, ANNOTATION_BASE_DIGEST: base.digest}
    return Manifest(
        media_type=MediaType.OCI_MANIFEST,
        config=Descriptor.of(config, MediaType.OCI_CONFIG),
        layers=[*base_layers, layer.descriptor()],
        annotations=annotations,
    )


async def _push(
    target: Store, base: BaseImage, layer: Layer, config: bytes
) -> dict[BlobOutcome, int]:
    """Blobs first, the manifest after (by the caller); returns blob counts per outcome.

    The base image's own manifest is copied too: its blobs are then skipped when present and
    mounted within a registry, never downloaded, and the `base.digest` annotation resolves in
    the target repository.
    """
    counts = dict.fromkeys(BlobOutcome, 0)
    if base.store is not None and base.descriptor is not None:
        copied = await copy_manifest(base.store, base.descriptor, target)
        counts[BlobOutcome.COPIED] += copied.blobs_copied
        counts[BlobOutcome.MOUNTED] += copied.blobs_mounted
        counts[BlobOutcome.SKIPPED] += copied.blobs_skipped
    uploads: list[tuple[Descriptor, BlobSource]] = [
        (layer.descriptor(), lambda: _file_chunks(layer.path)),
        (Descriptor.of(config, MediaType.OCI_CONFIG), lambda: _once(config)),
    ]
    for desc, source in uploads:
        if await target.blob_exists(desc.digest):
            counts[BlobOutcome.SKIPPED] += 1
        else:
            await target.write_blob(desc, source)
            counts[BlobOutcome.COPIED] += 1
    return counts


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, _UPLOAD_CHUNK):
            yield chunk


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
