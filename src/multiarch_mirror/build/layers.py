"""Deterministic layer writer: release artifacts in, a byte-for-byte reproducible tar+gzip out.

Archives are read defensively (no escaping paths or links, no devices, bounded size and entry
count); the layer is written in one streaming pass that hashes the tar (diff ID) and the gzip
(digest) while spooling the compressed bytes to disk.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import posixpath
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, BinaryIO, Literal, cast

from isal import igzip, igzip_threaded, isal_zlib

from multiarch_mirror.errors import MirrorError
from multiarch_mirror.oci.media import Descriptor, MediaType

#: The pinned compressor settings. isal's threaded writer compresses fixed-size blocks, each
#: primed with the previous block's last 32 KiB, so its output depends on the level and the block
#: size but not on the thread count. Level 2 is as fast as level 1 here and compresses better.
#: ISA-L picks SIMD kernels by CPU (AVX2, AVX-512, NEON); that they emit the same bytes is
#: tested only on one x86-64 machine so far — compare digests across runners before relying
#: on cross-machine identity.
COMPRESS_LEVEL = 2
BLOCK_SIZE = 1 << 20
_RECORD_SIZE = tarfile.RECORDSIZE
#: How much tarfile asks the decompressor for at a time (its default, 10 KiB, costs calls).
_TAR_READ_SIZE = 1 << 16
_MAX_SYMLINK_TARGET = 4096

#: isal's stubs declare its error class as an instance; it is a class at runtime.
_ISAL_ERROR = cast("type[Exception]", isal_zlib.error)

_DEFAULT_MAX_BYTES = 8 << 30
_DEFAULT_MAX_ENTRIES = 200_000


class ArchiveFormat(StrEnum):
    TAR_GZ = "tar.gz"
    TAR_XZ = "tar.xz"
    TAR_BZ2 = "tar.bz2"
    ZIP = "zip"
    FILE = "file"


class SetuidPolicy(StrEnum):
    """What to do with setuid/setgid bits found in an artifact or set by the recipe."""

    #: Refuse the entry (the default): an upstream archive rarely means to ship them.
    REFUSE = "refuse"
    #: Strip the bits and report each entry.
    DROP = "drop"
    #: Keep them: the recipe vouches for them.
    KEEP = "keep"


class ArchiveError(MirrorError):
    """An artifact is unsafe or unreadable; the message names the artifact and the entry."""

    def __init__(self, artifact: str, entry: str | None, reason: str) -> None:
        self.artifact = artifact
        self.entry = entry
        where = f"entry {entry!r} of {artifact}" if entry is not None else artifact
        super().__init__(
            f"refusing {where}: {reason}; nothing was pushed. Check the artifact URL, its "
            "checksum and the recipe's format/strip_components/dest"
        )


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one layer may extract: guards against zip and tar bombs."""

    max_bytes: int = _DEFAULT_MAX_BYTES
    max_entries: int = _DEFAULT_MAX_ENTRIES


@dataclass(frozen=True)
class Artifact:
    """A release artifact and where its contents go in the image.

    `source` is entered each time a layer reads the artifact, from start to end; its stream
    need not be seekable, and leaving it may raise (a download checks its digest there), which
    then wins over any error the reading raised. `name` identifies the artifact in errors (its
    URL or file name). For `ArchiveFormat.FILE`, `dest` is the file's path in the image (a
    trailing `/` means "into this directory") and `mode` its mode.
    """

    source: AbstractContextManager[IO[bytes]]
    name: str
    format: ArchiveFormat
    dest: str = "/"
    strip_components: int = 0
    mode: int = 0o755

    @classmethod
    def from_path(
        cls,
        path: Path,
        format: ArchiveFormat,
        *,
        name: str | None = None,
        dest: str = "/",
        strip_components: int = 0,
        mode: int = 0o755,
    ) -> Artifact:
        """An artifact already on disk, named by its file name unless `name` is given."""
        return cls(
            source=_FileSource(path),
            name=name or path.name,
            format=format,
            dest=dest,
            strip_components=strip_components,
            mode=mode,
        )


@dataclass(frozen=True)
class InlineFile:
    """A small file given inline in a recipe, such as an entrypoint script."""

    path: str
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class LayerOptions:
    epoch: int = 0
    uid: int = 0
    gid: int = 0
    setuid: SetuidPolicy = SetuidPolicy.REFUSE
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    #: Compression threads; any value gives the same bytes. None: one per CPU.
    threads: int | None = None


@dataclass(frozen=True)
class Layer:
    """A written layer blob: `digest` of the gzip bytes, `diff_id` of the tar inside."""

    path: Path
    digest: str
    size: int
    diff_id: str
    uncompressed_size: int
    #: What was changed on the way (e.g. setuid bits dropped), one line per entry.
    warnings: tuple[str, ...] = ()

    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=MediaType.OCI_LAYER_GZIP, digest=self.digest, size=self.size)


Kind = Literal["file", "dir", "symlink"]


@dataclass
class _Entry:
    kind: Kind
    mode: int
    offset: int = 0
    size: int = 0
    linkname: str = ""
    #: Entries sharing a link group are one inode (tar hard links).
    link_group: int | None = None
    #: Implicit directories above every destination belong to root, as `ADD` makes them.
    root_owned: bool = False


def write_layer(
    path: Path,
    *,
    artifacts: Sequence[Artifact] = (),
    files: Sequence[InlineFile] = (),
    directories: Sequence[str] = (),
    options: LayerOptions | None = None,
) -> Layer:
    """Write one layer holding `artifacts`, `files` and `directories` to `path`.

    Later entries replace earlier ones with the same path, as unpacking them in order would.

    Raises `ArchiveError` naming the artifact and entry when an input is unsafe or corrupt.
    """
    options = options or LayerOptions()
    with tempfile.TemporaryFile(dir=path.parent, prefix=".spool-") as spool:
        collector = _Collector(spool, path.parent, options)
        for artifact in artifacts:
            collector.add_artifact(artifact)
        for inline in files:
            collector.add_inline(inline)
        for directory in directories:
            collector.add_directory(directory)
        entries = collector.finish()
        return _write_tar_gz(path, entries, spool, options, tuple(collector.warnings))


class _Collector:
    """Reads inputs into a path → entry map, spooling file contents to one temp file.

    `artifact` and `entry` track what is being read, so every refusal names both.
    """

    def __init__(self, spool: IO[bytes], spool_dir: Path, options: LayerOptions) -> None:
        self.spool = spool
        self.spool_dir = spool_dir
        self.options = options
        self.entries: dict[str, _Entry] = {}
        #: Missing parents at or below this path are the recipe's uid/gid (like `chown -R` over
        #: an unpacked archive); None, or above it: root's, as `ADD` makes them.
        self.owned_root: str | None = None
        self.warnings: list[str] = []
        self.total_bytes = 0
        self.total_entries = 0
        self.next_group = 0
        self.artifact = ""
        self.entry: str | None = None

    def refuse(self, reason: str) -> ArchiveError:
        return ArchiveError(self.artifact, self.entry, reason)

    # -- inputs ---------------------------------------------------------------------------

    def add_artifact(self, artifact: Artifact) -> None:
        self.artifact, self.entry = artifact.name, None
        dest = "/".join(self._parts(artifact.dest, allow_absolute=True))
        self.owned_root = None if artifact.format is ArchiveFormat.FILE else dest
        try:
            with artifact.source as stream:
                if artifact.format is ArchiveFormat.FILE:
                    self._add_single_file(artifact, dest, stream)
                elif artifact.format is ArchiveFormat.ZIP:
                    self._add_zip(artifact, dest, stream)
                else:
                    self._add_tar(artifact, dest, stream)
        except (
            tarfile.TarError,
            zipfile.BadZipFile,
            EOFError,
            OSError,
            zlib.error,
            _ISAL_ERROR,
            lzma.LZMAError,
            ValueError,
        ) as exc:
            raise self.refuse(
                f"cannot read it as {artifact.format.value} ({exc}); the download may be "
                "truncated or the format wrong"
            ) from None

    def add_inline(self, inline: InlineFile) -> None:
        self.artifact, self.entry, self.owned_root = "the recipe's inline files", inline.path, None
        parts = self._parts(inline.path, allow_absolute=True)
        if not parts:
            raise self.refuse("is not a file path")
        self._count_entry()
        offset = self._spool_bytes(inline.content)
        mode = self._mode(inline.mode)
        self._put("/".join(parts), _Entry("file", mode, offset, len(inline.content)))

    def _add_single_file(self, artifact: Artifact, dest: str, source: IO[bytes]) -> None:
        target = dest
        if artifact.dest.endswith("/") or not dest:
            base = posixpath.basename(artifact.name.split("?", 1)[0])
            target = posixpath.join(dest, base) if dest else base
        self.entry = target
        self._count_entry()
        offset, size = self._spool_stream(source)
        self._put(target, _Entry("file", self._mode(artifact.mode), offset, size))

    def _add_tar(self, artifact: Artifact, dest: str, source: IO[bytes]) -> None:
        with (
            _decompressed(source, artifact.format) as stream,
            tarfile.open(fileobj=stream, mode="r|", bufsize=_TAR_READ_SIZE) as tar,
        ):
            for member in tar:
                self.entry = member.name
                self._add_tar_member(artifact, dest, tar, member)

    def _add_tar_member(
        self, artifact: Artifact, dest: str, tar: tarfile.TarFile, member: tarfile.TarInfo
    ) -> None:
        self._count_entry()
        if member.ischr() or member.isblk() or member.isfifo():
            raise self.refuse("is a device node or FIFO")
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise self.refuse(f"has unsupported tar type {member.type!r}")
        target = self._place(member.name, dest, artifact.strip_components)
        if target is None:
            return
        if member.isdir():
            self._put(target, _Entry("dir", self._mode(member.mode)))
        elif member.issym():
            self._check_symlink(target, member.linkname, dest)
            self._put(target, _Entry("symlink", 0o777, linkname=member.linkname))
        elif member.islnk():
            self._add_hard_link(target, member.linkname, dest, artifact.strip_components)
        else:
            source = tar.extractfile(member)
            if source is None:
                raise self.refuse("has no readable data")
            offset, size = self._spool_stream(source)
            self._put(target, _Entry("file", self._mode(member.mode), offset, size))

    def _add_hard_link(self, target: str, linkname: str, dest: str, strip: int) -> None:
        outside = self.refuse(f"is a hard link to {linkname!r}, outside the destination /{dest}")
        if linkname.startswith("/") or ".." in linkname.split("/"):
            raise outside
        parts = [part for part in linkname.split("/") if part not in ("", ".")][strip:]
        if not parts:
            raise outside
        original = self.entries.get(posixpath.join(dest, *parts) if dest else "/".join(parts))
        if original is None or original.kind != "file":
            raise self.refuse(
                f"is a hard link to {linkname!r}, which is not an earlier regular file"
            )
        if original.link_group is None:
            original.link_group = self.next_group
            self.next_group += 1
        linked = _Entry(
            "file", original.mode, original.offset, original.size, link_group=original.link_group
        )
        self._put(target, linked)

    def _add_zip(self, artifact: Artifact, dest: str, source: IO[bytes]) -> None:
        if source.seekable():
            self._add_zip_file(artifact, dest, source)
            return
        # A zip is read from its end (the central directory): keep the bytes first. Reading
        # them to their end also verifies a download before any of it is parsed.
        with tempfile.TemporaryFile(dir=self.spool_dir, prefix=".zip-") as copy:
            while chunk := source.read(BLOCK_SIZE):
                copy.write(chunk)
            self._add_zip_file(artifact, dest, copy)

    def _add_zip_file(self, artifact: Artifact, dest: str, source: IO[bytes]) -> None:
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                self.entry = info.filename
                self._count_entry()
                unix_mode = info.external_attr >> 16 if info.create_system == 3 else 0
                file_type = stat.S_IFMT(unix_mode)
                if file_type in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
                    raise self.refuse("is a device node, FIFO or socket")
                target = self._place(info.filename, dest, artifact.strip_components)
                if target is None:
                    continue
                perms = stat.S_IMODE(unix_mode)
                if info.is_dir():
                    self._put(target, _Entry("dir", self._mode(perms or 0o755)))
                elif file_type == stat.S_IFLNK:
                    if info.file_size > _MAX_SYMLINK_TARGET:
                        raise self.refuse("is a symlink with an oversized target")
                    linkname = archive.read(info).decode("utf-8", "surrogateescape")
                    self._check_symlink(target, linkname, dest)
                    self._put(target, _Entry("symlink", 0o777, linkname=linkname))
                else:
                    with archive.open(info) as member:
                        offset, size = self._spool_stream(member)
                    self._put(target, _Entry("file", self._mode(perms or 0o644), offset, size))

    # -- rules ------------------------------------------------------------------------------

    def _parts(self, name: str, *, allow_absolute: bool = False) -> list[str]:
        """Path components of a name; refuses absolute names (unless allowed) and `..`."""
        if "\x00" in name:
            raise self.refuse("has a NUL byte in its name")
        if name.startswith("/") and not allow_absolute:
            raise self.refuse("has an absolute path")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise self.refuse("has a '..' component and would escape the destination")
        return parts

    def _place(self, name: str, dest: str, strip: int) -> str | None:
        """The entry's path in the image, or None when `strip_components` removes it."""
        parts = self._parts(name)[strip:]
        if not parts:
            return None
        if parts[-1].startswith(".wh."):
            raise self.refuse("is an OCI whiteout name; it would delete files of the base image")
        return posixpath.join(dest, *parts) if dest else "/".join(parts)

    def _check_symlink(self, path: str, linkname: str, dest: str) -> None:
        if not linkname:
            raise self.refuse("is a symlink with an empty target")
        base = [] if linkname.startswith("/") else path.split("/")[:-1]
        resolved = _resolve(base, linkname)
        if resolved is None or not _within(resolved, dest):
            raise self.refuse(f"is a symlink to {linkname!r}, outside the destination /{dest}")

    def _mode(self, mode: int) -> int:
        mode = stat.S_IMODE(mode)
        special = mode & (stat.S_ISUID | stat.S_ISGID)
        if not special or self.options.setuid is SetuidPolicy.KEEP:
            return mode
        if self.options.setuid is SetuidPolicy.REFUSE:
            raise self.refuse(
                f"has setuid/setgid bits (mode {mode:04o}); set the recipe's `setuid: drop` to "
                "strip them, or `setuid: keep` if the image needs them"
            )
        self.warnings.append(f"{self.artifact}: dropped setuid/setgid bits from {self.entry!r}")
        return mode & ~special

    def _count_entry(self) -> None:
        self.total_entries += 1
        if self.total_entries > self.options.limits.max_entries:
            raise self.refuse(
                f"exceeds the limit of {self.options.limits.max_entries} entries per layer "
                "(an archive bomb?)"
            )

    def _spool_stream(self, source: IO[bytes]) -> tuple[int, int]:
        offset = self.spool.seek(0, os.SEEK_END)
        size = 0
        while chunk := source.read(BLOCK_SIZE):
            size += len(chunk)
            self._count_bytes(len(chunk))
            self.spool.write(chunk)
        return offset, size

    def _spool_bytes(self, data: bytes) -> int:
        offset = self.spool.seek(0, os.SEEK_END)
        self._count_bytes(len(data))
        self.spool.write(data)
        return offset

    def _count_bytes(self, count: int) -> None:
        self.total_bytes += count
        if self.total_bytes > self.options.limits.max_bytes:
            raise self.refuse(
                f"extracts to more than {self.options.limits.max_bytes} bytes (an archive bomb?)"
            )

    def _put(self, path: str, entry: _Entry) -> None:
        """Later entries replace earlier ones, as extracting them in order would."""
        previous = self.entries.get(path)
        self.entries[path] = entry
        if previous is not None and previous.kind == "dir":
            return
        parent = posixpath.dirname(path)
        while parent:
            existing = self.entries.get(parent)
            if existing is not None:
                if existing.kind != "dir":
                    raise self.refuse(f"lies under /{parent}, which is a {existing.kind}")
                return
            owned = self.owned_root is not None and _within(parent, self.owned_root)
            self.entries[parent] = _Entry("dir", 0o755, root_owned=not owned)
            parent = posixpath.dirname(parent)

    def add_directory(self, path: str) -> None:
        """An empty directory owned by the recipe's uid/gid, such as a volume mount point."""
        self.artifact, self.entry, self.owned_root = "the recipe's directories", path, None
        parts = self._parts(path, allow_absolute=True)
        if not parts:
            raise self.refuse("is not a directory path")
        self._count_entry()
        self._put("/".join(parts), _Entry("dir", 0o755))

    def finish(self) -> dict[str, _Entry]:
        """Refuse paths that a later entry turned into a non-directory."""
        self.artifact = "the layer"
        for path in self.entries:
            parent = posixpath.dirname(path)
            if parent and self.entries[parent].kind != "dir":
                self.entry = path
                raise self.refuse(f"lies under /{parent}, which is a {self.entries[parent].kind}")
        self.spool.flush()
        return self.entries


class _FileSource:
    """A file opened anew on each entry, so one `Artifact` can be written many times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self.file = self.path.open("rb")
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _decompressed(source: IO[bytes], format: ArchiveFormat) -> IO[bytes]:
    if format is ArchiveFormat.TAR_GZ:
        # Not the threaded reader: its read-ahead reports a truncation one block early, against
        # the wrong entry.
        reader: IO[bytes] = igzip.open(source, "rb")  # type: ignore[no-untyped-call]
        return reader
    if format is ArchiveFormat.TAR_XZ:
        return lzma.open(source, "rb")
    return bz2.open(source, "rb")


def _resolve(base: list[str], linkname: str) -> str | None:
    """Where a link target lands inside the image, or None if it climbs above the root."""
    stack = list(base)
    for part in linkname.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return None
            stack.pop()
        else:
            stack.append(part)
    return "/".join(stack)


def _within(path: str, root: str) -> bool:
    return not root or path == root or path.startswith(root + "/")


# -- writing ------------------------------------------------------------------------------


class _HashingSink:
    """The file end of the pipeline: hashes the compressed bytes while writing them."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


class _TarSink:
    """The tar end: hashes the tar (diff ID) and feeds the compressor whole blocks only.

    Fixed-size writes make the gzip block boundaries a function of the tar bytes alone, not of
    how this module (or a future Python's tarfile) happens to chunk its writes.
    """

    def __init__(self, compressor: IO[bytes]) -> None:
        self.compressor = compressor
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.pending = bytearray()

    def write(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        self.size += len(data)
        self.pending += data
        if len(self.pending) >= BLOCK_SIZE:
            whole = len(self.pending) - len(self.pending) % BLOCK_SIZE
            view = memoryview(self.pending)
            for start in range(0, whole, BLOCK_SIZE):
                self.compressor.write(view[start : start + BLOCK_SIZE])
            view.release()
            del self.pending[:whole]

    def close(self) -> None:
        if self.pending:
            self.compressor.write(bytes(self.pending))
            self.pending.clear()


def _write_tar_gz(
    path: Path,
    entries: dict[str, _Entry],
    spool: IO[bytes],
    options: LayerOptions,
    warnings: tuple[str, ...],
) -> Layer:
    threads = options.threads if options.threads is not None else (os.cpu_count() or 1)
    with path.open("wb") as out:
        sink = _HashingSink(out)
        # threads=0 would select isal's unthreaded writer, whose bytes differ: keep >= 1.
        compressor: IO[bytes] = igzip_threaded.open(  # type: ignore[no-untyped-call]
            sink, "wb", compresslevel=COMPRESS_LEVEL, threads=max(1, threads), block_size=BLOCK_SIZE
        )
        with compressor:
            tar = _TarSink(compressor)
            for header, data in _tar_stream(entries, options):
                tar.write(header)
                if data is not None:
                    offset, size = data
                    for chunk in _read_range(spool, offset, size):
                        tar.write(chunk)
                    if size % tarfile.BLOCKSIZE:
                        tar.write(bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))
            end = 2 * tarfile.BLOCKSIZE
            total = tar.size + end
            end += -total % _RECORD_SIZE
            tar.write(bytes(end))
            tar.close()
    return Layer(
        path=path,
        digest="sha256:" + sink.sha256.hexdigest(),
        size=sink.size,
        diff_id="sha256:" + tar.sha256.hexdigest(),
        uncompressed_size=tar.size,
        warnings=warnings,
    )


def _tar_stream(
    entries: dict[str, _Entry], options: LayerOptions
) -> Iterator[tuple[bytes, tuple[int, int] | None]]:
    """Header bytes and the spool range of each entry's data, in sorted path order."""
    # Of each hard-link group, the first path in sorted order carries the data; the others
    # link to it, so a link always follows its target in the stream.
    primaries: dict[int, str] = {}
    for path in sorted(entries):
        entry = entries[path]
        info = tarfile.TarInfo(path)
        info.mtime = options.epoch
        info.mode = entry.mode
        info.uid, info.gid = (0, 0) if entry.root_owned else (options.uid, options.gid)
        info.uname = info.gname = ""
        data: tuple[int, int] | None = None
        if entry.kind == "dir":
            info.type = tarfile.DIRTYPE
        elif entry.kind == "symlink":
            info.type = tarfile.SYMTYPE
            info.linkname = entry.linkname
        elif entry.link_group is not None and entry.link_group in primaries:
            info.type = tarfile.LNKTYPE
            info.linkname = primaries[entry.link_group]
        else:
            if entry.link_group is not None:
                primaries[entry.link_group] = path
            info.type = tarfile.REGTYPE
            info.size = entry.size
            data = (entry.offset, entry.size)
        yield info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"), data


def _read_range(spool: IO[bytes], offset: int, size: int) -> Iterator[bytes]:
    fd = spool.fileno()
    end = offset + size
    while offset < end:
        chunk = os.pread(fd, min(BLOCK_SIZE, end - offset), offset)
        if not chunk:
            raise MirrorError(f"layer spool file ended early at byte {offset}")
        offset += len(chunk)
        yield chunk
