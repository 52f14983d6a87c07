"""Copy images between stores (registry repositories and layouts), moving only missing bytes.

Order is what keeps readers safe: blobs, then manifests, then indexes, and tags last, so a
failure at any point leaves no tag on a partial image. Raw manifest bytes are copied as-is,
so digests are preserved unless a platform filter asks for a new index.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from multiarch_mirror.errors import MirrorError, UsageError
from multiarch_mirror.oci.media import (
    Descriptor,
    ImageIndex,
    MediaType,
    Platform,
    parse_config,
    parse_manifest,
)
from multiarch_mirror.oci.store import Store

DEFAULT_CONCURRENCY = 4
IMAGE_CONFIG_TYPES = frozenset({MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG})

T = TypeVar("T")


class CopyError(MirrorError):
    """An image could not be copied as asked (e.g. a requested platform is absent)."""


class PlatformNotFoundError(MirrorError):
    """The image has no manifest for a platform asked for; the message lists what it has."""


class BlobOutcome(enum.Enum):
    COPIED = "copied"
    SKIPPED = "skipped"
    MOUNTED = "mounted"


class CopyProgress(Protocol):
    """What a copy reports as it goes; the CLI renders it as a progress bar."""

    def blob_started(self, desc: Descriptor) -> None: ...

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None: ...

    def blob_finished(self, desc: Descriptor, outcome: BlobOutcome) -> None: ...


class _Silent:
    def blob_started(self, desc: Descriptor) -> None:
        pass

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None:
        pass

    def blob_finished(self, desc: Descriptor, outcome: BlobOutcome) -> None:
        pass


@dataclass
class _Tally:
    """What a copy cost so far."""

    bytes_moved: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    manifests_written: int = 0
    manifests_skipped: int = 0


@dataclass(frozen=True)
class CopyResult:
    """What a copy wrote at the destination (`descriptor`, by digest) and what it cost.

    `platforms` maps each platform (`linux/arm64`) to its manifest digest; `tags` are the
    tags written, last.
    """

    descriptor: Descriptor
    platforms: dict[str, str]
    tags: list[str]
    bytes_moved: int
    blobs_copied: int
    blobs_skipped: int
    blobs_mounted: int
    manifests_written: int
    manifests_skipped: int

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.descriptor.digest,
            "mediaType": self.descriptor.media_type,
            "size": self.descriptor.size,
            "platforms": self.platforms,
            "tags": self.tags,
            "bytesMoved": self.bytes_moved,
            "blobsCopied": self.blobs_copied,
            "blobsSkipped": self.blobs_skipped,
            "blobsMounted": self.blobs_mounted,
            "manifestsWritten": self.manifests_written,
            "manifestsSkipped": self.manifests_skipped,
        }


@dataclass
class _Node:
    """One manifest or index to write at the destination, children listed before it."""

    desc: Descriptor
    data: bytes
    present: bool


class _Copier:
    def __init__(
        self, source: Store, dest: Store, concurrency: int, progress: CopyProgress | None
    ) -> None:
        if concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency}")
        self.source = source
        self.dest = dest
        self.progress: CopyProgress = progress or _Silent()
        self.slots = asyncio.Semaphore(concurrency)
        self.nodes: list[_Node] = []
        self.blobs: dict[str, Descriptor] = {}
        self.present_blobs: set[str] = set()
        self.tally = _Tally()

    async def run(self, desc: Descriptor, data: bytes | None, tags: Sequence[str]) -> CopyResult:
        """Copy `desc`'s tree (blobs, then manifests, children first), then write `tags`."""
        await self.walk(desc, data, None)
        await self.transfer()
        top = self.nodes[-1]
        for tag in tags:
            await self.dest.put_manifest(top.data, desc.media_type, tag=tag)
        return CopyResult(
            descriptor=desc,
            platforms=await _platforms(self.source, top),
            tags=list(tags),
            **dataclasses.asdict(self.tally),
        )

    async def walk(self, desc: Descriptor, data: bytes | None, present: bool | None) -> None:
        """Collect manifests (post-order) and the blobs under them; nothing is written yet.

        A manifest already at the destination has its whole tree there (registries refuse a
        manifest whose blobs are missing, and we write children first), so its blobs count as
        skipped without asking for each.
        """
        if present is None:
            present = await self.dest.resolve(desc.digest) is not None
        if data is None:
            _, data = await self.source.get_manifest(desc.digest)
        parsed = parse_manifest(data, desc.media_type)
        if isinstance(parsed, ImageIndex):
            await _all(
                self.walk(child, None, True if present else None) for child in parsed.manifests
            )
        else:
            for blob in parsed.blobs():
                if present:
                    self.present_blobs.add(blob.digest)
                else:
                    self.blobs.setdefault(blob.digest, blob)
        self.nodes.append(_Node(desc=desc, data=data, present=present))

    async def transfer(self) -> None:
        self.tally.blobs_skipped += len(self.present_blobs - self.blobs.keys())
        await _all(self.blob(desc) for desc in self.blobs.values())
        for node in self.nodes:
            if node.present:
                self.tally.manifests_skipped += 1
            else:
                await self.dest.put_manifest(node.data, node.desc.media_type)
                self.tally.manifests_written += 1

    async def blob(self, desc: Descriptor) -> None:
        async with self.slots:
            self.progress.blob_started(desc)
            if await self.dest.blob_exists(desc.digest):
                outcome = BlobOutcome.SKIPPED
                self.tally.blobs_skipped += 1
            elif await self.dest.mount_blob(desc, self.source):
                outcome = BlobOutcome.MOUNTED
                self.tally.blobs_mounted += 1
            else:
                await self._stream(desc)
                outcome = BlobOutcome.COPIED
                self.tally.blobs_copied += 1
            self.progress.blob_finished(desc, outcome)

    async def _stream(self, desc: Descriptor) -> None:
        """Pipe the blob from source to destination, a chunk at a time.

        The destination gets a callable so it can restart an interrupted upload by reading
        the source again from the first byte; every stream opened is closed here.
        """
        opened: list[AsyncGenerator[bytes, None]] = []

        def open_source() -> AsyncIterator[bytes]:
            stream = self._read(desc)
            opened.append(stream)
            return stream

        try:
            await self.dest.write_blob(desc, open_source)
        finally:
            for stream in opened:
                await stream.aclose()

    async def _read(self, desc: Descriptor) -> AsyncGenerator[bytes, None]:
        async with self.source.read_blob(desc) as chunks:
            async for chunk in chunks:
                self.tally.bytes_moved += len(chunk)
                self.progress.blob_advanced(desc, len(chunk))
                yield chunk


async def _all(coroutines: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(c)) for c in coroutines]
    except BaseExceptionGroup as group_error:
        raise _first_leaf(group_error) from None
    return [task.result() for task in tasks]


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def copy_manifest(
    source: Store,
    desc: Descriptor,
    dest: Store,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: CopyProgress | None = None,
) -> CopyResult:
    """Copy the manifest or index `desc` names, and everything below it, by digest; no tag.

    This is how a built image (e.g. a buildah OCI layout) reaches its target before an index
    and tags are written over it.
    """
    return await _Copier(source, dest, concurrency, progress).run(desc, None, tags=())


async def copy_image(
    source: Store,
    reference: str,
    dest: Store,
    *,
    tags: Sequence[str] = (),
    platforms: Sequence[Platform] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: CopyProgress | None = None,
) -> CopyResult:
    """Copy the image or index `reference` names in `source` to `dest`, then apply `tags`.

    With `platforms`, an index is narrowed to those platforms: a new OCI index is written
    (its children keep their digests); without, the bytes and digests are kept as they are.
    """
    desc, data = await source.get_manifest(reference)
    separator = "@" if reference.startswith("sha256:") else ":"
    where = f"{source.display}{separator}{reference}"
    if platforms:
        desc, data = await _select_platforms(source, where, desc, data, platforms)
    return await _Copier(source, dest, concurrency, progress).run(desc, data, tags=tags)


async def _select_platforms(
    source: Store, where: str, desc: Descriptor, data: bytes, platforms: Sequence[Platform]
) -> tuple[Descriptor, bytes]:
    parsed = parse_manifest(data, desc.media_type)
    if not isinstance(parsed, ImageIndex):
        platform = await _manifest_platform(source, data, desc.media_type)
        if not any(platform.matches(p) for p in platforms):
            raise PlatformNotFoundError(
                f"{where} is a single-platform image for {platform}, not "
                + ", ".join(str(p) for p in platforms)
            )
        return desc, data
    available = [child.platform for child in parsed.manifests if child.platform]
    missing = [p for p in platforms if not any(p.matches(a) for a in available)]
    if missing:
        raise PlatformNotFoundError(
            f"{where} has no {', '.join(str(p) for p in missing)}; it has "
            + (", ".join(str(a) for a in available) or "no platforms")
        )
    selected = [
        child
        for child in parsed.manifests
        if child.platform and any(child.platform.matches(p) for p in platforms)
    ]
    if selected == parsed.manifests:
        return desc, data
    index = ImageIndex(
        media_type=MediaType.OCI_INDEX, manifests=selected, annotations=parsed.annotations
    )
    new_data = index.to_json()
    return Descriptor.of(new_data, MediaType.OCI_INDEX), new_data


async def _platforms(source: Store, top: _Node) -> dict[str, str]:
    """Platform → manifest digest, from the index descriptors or a single image's config.

    An artifact (a manifest whose config is no image config, e.g. a signature) has none.
    """
    parsed = parse_manifest(top.data, top.desc.media_type)
    if isinstance(parsed, ImageIndex):
        return {str(c.platform): c.digest for c in parsed.manifests if c.platform}
    if top.desc.platform:
        return {str(top.desc.platform): top.desc.digest}
    if parsed.config.media_type not in IMAGE_CONFIG_TYPES:
        return {}
    platform = await _manifest_platform(source, top.data, top.desc.media_type)
    return {str(platform): top.desc.digest}


async def _manifest_platform(source: Store, data: bytes, media_type: str) -> Platform:
    parsed = parse_manifest(data, media_type)
    assert not isinstance(parsed, ImageIndex)
    config = await read_small_blob(source, parsed.config)
    return parse_config(config).platform


async def read_small_blob(store: Store, desc: Descriptor, limit: int = 8 << 20) -> bytes:
    """A config-sized blob's bytes (refusing anything over `limit`, which a config never is)."""
    if desc.size > limit:
        raise CopyError(f"{store.display}: blob {desc.digest} is {desc.size} bytes, too large")
    chunks: list[bytes] = []
    async with store.read_blob(desc) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    return b"".join(chunks)
