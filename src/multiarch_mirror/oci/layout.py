"""An OCI image layout directory (`oci:DIR`) as a `Store`: the embedded, serverless target.

One directory holds every image: blobs are shared, and each image's tags live in `index.json`
as `org.opencontainers.image.ref.name` values, `NAME:TAG` when the store has a namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import threading
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import ValidationError

from multiarch_mirror.errors import MirrorError, UsageError
from multiarch_mirror.oci.media import INDEX_TYPES, MANIFEST_TYPES, Descriptor, MediaType
from multiarch_mirror.oci.reference import validate_digest, validate_tag

if TYPE_CHECKING:
    from multiarch_mirror.oci.client import BlobSource
    from multiarch_mirror.oci.store import Store

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
CHUNK_SIZE = 1 << 20
#: Registries refuse manifests over 4 MiB; a bigger "manifest" here is not one we read whole.
MAX_MANIFEST_SIZE = 4 << 20

# index.json is rewritten as a whole, so writers in this process take a per-directory lock
# (and an flock, which also keeps other processes' writers out).
_INDEX_LOCKS: dict[Path, threading.Lock] = {}
_INDEX_LOCKS_GUARD = threading.Lock()


class LayoutError(MirrorError):
    """An image layout is missing something, or holds bytes that don't match their digest."""


def _index_lock(root: Path) -> threading.Lock:
    with _INDEX_LOCKS_GUARD:
        return _INDEX_LOCKS.setdefault(root, threading.Lock())


def _declared_media_type(data: bytes) -> str | None:
    """The media type a manifest declares, or the one its shape implies; None if no manifest."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    declared = doc.get("mediaType")
    if isinstance(declared, str):
        return declared
    return MediaType.OCI_INDEX if "manifests" in doc else MediaType.OCI_MANIFEST


class LayoutStore:
    """`Store` over an OCI image layout directory; `namespace` scopes the tags to one image."""

    def __init__(self, path: str | os.PathLike[str], namespace: str | None = None) -> None:
        self.root = Path(path)
        self.namespace = namespace
        self._blobs = self.root / "blobs" / "sha256"

    @property
    def display(self) -> str:
        return f"oci:{self.root}" + (f":{self.namespace}" if self.namespace else "")

    def __repr__(self) -> str:
        return f"LayoutStore({str(self.root)!r}, namespace={self.namespace!r})"

    # -- paths and index.json ------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        validate_digest(digest)
        algorithm, hex_digest = digest.split(":", 1)
        if algorithm != "sha256":
            raise LayoutError(f"{self.display}: only sha256 blobs are supported, got {digest}")
        return self._blobs / hex_digest

    def _ref_name(self, tag: str) -> str:
        if self.namespace is None:
            if not tag or tag != tag.strip():
                raise UsageError(f"invalid reference name {tag!r} for {self.display}")
            return tag
        return f"{self.namespace}:{validate_tag(tag)}"

    def _tag_of(self, ref_name: str) -> str | None:
        """The tag a ref name stands for in this namespace, or None if it is another image's."""
        if self.namespace is None:
            return ref_name
        prefix = f"{self.namespace}:"
        return ref_name[len(prefix) :] if ref_name.startswith(prefix) else None

    def _read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": []}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LayoutError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("manifests", []), list):
            raise LayoutError(f"{path} is not an OCI image index")
        doc.setdefault("manifests", [])
        return doc

    def _entries(self) -> list[Descriptor]:
        try:
            return [Descriptor.model_validate(entry) for entry in self._read_index()["manifests"]]
        except ValidationError as exc:
            raise LayoutError(
                f"{self.root / 'index.json'} holds a malformed descriptor: {exc}"
            ) from None

    def _tagged(self, tag: str) -> Descriptor | None:
        ref_name = self._ref_name(tag)
        for entry in self._entries():
            if (entry.annotations or {}).get(REF_NAME) == ref_name:
                return entry
        return None

    def _ensure_layout(self) -> None:
        self._blobs.mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            self._write_atomically(marker, json.dumps(LAYOUT_VERSION).encode())

    def _write_atomically(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked_index(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write of index.json under the process and file locks."""
        self._ensure_layout()
        with _index_lock(self.root.resolve()), (self.root / ".index.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            doc = self._read_index()
            yield doc
            self._write_atomically(
                self.root / "index.json", json.dumps(doc, separators=(",", ":")).encode()
            )

    # -- blobs ----------------------------------------------------------------------------

    async def blob_exists(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    @contextlib.asynccontextmanager
    async def read_blob(self, desc: Descriptor) -> AsyncIterator[AsyncIterator[bytes]]:
        path = self._blob_path(desc.digest)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise LayoutError(f"{self.display}: blob {desc.digest} not found") from None
        try:
            yield self._verified_chunks(file, desc)
        finally:
            file.close()

    async def _verified_chunks(self, file: IO[bytes], desc: Descriptor) -> AsyncIterator[bytes]:
        hasher = hashlib.sha256()
        size = 0
        while chunk := await asyncio.to_thread(_read_and_hash, file, hasher):
            size += len(chunk)
            if size > desc.size:
                break
            yield chunk
        if size != desc.size or f"sha256:{hasher.hexdigest()}" != desc.digest:
            raise LayoutError(
                f"{self.display}: blob {desc.digest} is corrupt (expected {desc.size} bytes "
                "with that digest); remove it and copy the image again"
            )

    async def write_blob(self, desc: Descriptor, chunks: AsyncIterable[bytes] | BlobSource) -> None:
        # A local write has nothing to restart: open the source once.
        stream = chunks() if callable(chunks) else chunks
        path = self._blob_path(desc.digest)
        await asyncio.to_thread(self._ensure_layout)
        tmp = self.root / "blobs" / f".upload-{uuid.uuid4().hex}"
        hasher = hashlib.sha256()
        size = 0
        try:
            with tmp.open("wb") as file:
                async for chunk in stream:
                    size += len(chunk)
                    if size > desc.size:
                        break
                    await asyncio.to_thread(_hash_and_write, file, hasher, chunk)
                await asyncio.to_thread(os.fsync, file.fileno())
            actual = f"sha256:{hasher.hexdigest()}"
            if size != desc.size or actual != desc.digest:
                raise LayoutError(
                    f"{self.display}: refused blob {desc.digest}: received "
                    f"{'more than ' if size > desc.size else ''}{size} bytes hashing to {actual}, "
                    f"expected {desc.size} bytes"
                )
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    async def mount_blob(self, desc: Descriptor, source: Store) -> bool:
        """Present already (one layout shares its blobs), or hard-linked from another layout."""
        if await self.blob_exists(desc.digest):
            return True
        if not isinstance(source, LayoutStore) or not await source.blob_exists(desc.digest):
            return False
        await asyncio.to_thread(self._ensure_layout)
        tmp = self.root / "blobs" / f".link-{uuid.uuid4().hex}"
        try:
            # Blobs are immutable, so sharing the inode is safe; another filesystem can't link.
            os.link(source._blob_path(desc.digest), tmp)
        except OSError:
            return False
        try:
            # Linking skips the write, not the check: hashing is far cheaper than copying.
            with tmp.open("rb") as file:
                async for _ in source._verified_chunks(file, desc):
                    pass
            tmp.replace(self._blob_path(desc.digest))
        finally:
            tmp.unlink(missing_ok=True)
        return True

    # -- manifests and tags ---------------------------------------------------------------

    async def resolve(self, reference: str) -> Descriptor | None:
        if reference.startswith("sha256:"):
            path = self._blob_path(reference)
            # Like a registry's manifest endpoint: a blob that is no manifest is not found.
            if not path.is_file() or path.stat().st_size > MAX_MANIFEST_SIZE:
                return None
            for entry in self._entries():
                if entry.digest == reference:
                    return entry.model_copy(update={"annotations": None})
            data = await asyncio.to_thread(path.read_bytes)
            media_type = _declared_media_type(data)
            if media_type is None:
                return None
            return Descriptor(media_type=media_type, digest=reference, size=len(data))
        return self._tagged(reference)

    async def get_manifest(self, reference: str) -> tuple[Descriptor, bytes]:
        desc = await self.resolve(reference)
        if desc is None:
            raise LayoutError(
                f"{self.display}: no manifest {reference!r}"
                + ("" if reference.startswith("sha256:") else self._known_tags_hint())
            )
        if desc.size > MAX_MANIFEST_SIZE:
            raise LayoutError(
                f"{self.display}: {reference} is {desc.size} bytes, too large for a manifest"
            )
        chunks: list[bytes] = []
        async with self.read_blob(desc) as stream:
            async for chunk in stream:
                chunks.append(chunk)
        data = b"".join(chunks)
        media_type = _declared_media_type(data)
        if media_type is None:
            raise LayoutError(f"{self.display}: {reference} is not a JSON manifest")
        desc = Descriptor(
            media_type=media_type,
            digest=desc.digest,
            size=desc.size,
            platform=desc.platform,
        )
        return desc, data

    def _known_tags_hint(self) -> str:
        tags = self._tags()
        return f" (tags here: {', '.join(tags)})" if tags else " (no tags here)"

    async def put_manifest(
        self, data: bytes, media_type: str, *, tag: str | None = None
    ) -> Descriptor:
        if media_type not in MANIFEST_TYPES | INDEX_TYPES:
            raise LayoutError(f"{self.display}: refusing manifest of unknown type {media_type!r}")
        desc = Descriptor.of(data, media_type)
        ref_name = self._ref_name(tag) if tag is not None else None
        if not await self.blob_exists(desc.digest):
            await self.write_blob(desc, _single(data))
        if ref_name is not None:
            entry = desc.model_copy(update={"annotations": {REF_NAME: ref_name}})
            await asyncio.to_thread(self._set_ref, ref_name, entry)
        return desc

    def _set_ref(self, ref_name: str, entry: Descriptor) -> None:
        with self._locked_index() as doc:
            doc["manifests"] = [
                m
                for m in doc["manifests"]
                if (m.get("annotations") or {}).get(REF_NAME) != ref_name
            ]
            doc["manifests"].append(entry.to_dict())

    def _tags(self) -> list[str]:
        tags = []
        for entry in self._entries():
            ref_name = (entry.annotations or {}).get(REF_NAME)
            tag = self._tag_of(ref_name) if ref_name else None
            if tag is not None:
                tags.append(tag)
        return sorted(tags)

    async def list_tags(self) -> list[str]:
        return self._tags()

    async def delete_tag(self, tag: str) -> None:
        ref_name = self._ref_name(tag)

        def remove() -> None:
            with self._locked_index() as doc:
                doc["manifests"] = [
                    m
                    for m in doc["manifests"]
                    if (m.get("annotations") or {}).get(REF_NAME) != ref_name
                ]

        await asyncio.to_thread(remove)

    async def aclose(self) -> None:
        return None


def _read_and_hash(file: IO[bytes], hasher: Any) -> bytes:
    chunk = file.read(CHUNK_SIZE)
    hasher.update(chunk)
    return chunk


def _hash_and_write(file: IO[bytes], hasher: Any, chunk: bytes) -> None:
    hasher.update(chunk)
    file.write(chunk)


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data
