"""Release artifacts over HTTP, verified against a pinned sha256 or the upstream's checksums file.

An artifact is read straight from the response by whoever unpacks it: its bytes are
hashed on the way, and they are verified when the reader reaches their end (or leaves them
early), so a mismatch, a short body or an HTTP error stops the job before anything is pushed.
Runs in a worker thread: nothing here touches the event loop.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from types import TracebackType
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import httpx

from multiarch_mirror.errors import MirrorError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

_MAX_CHECKSUMS_FILE = 1 << 20
_BUFFER_SIZE = 1 << 20
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
#: `sha256sum` lines (`HEX  name`, `HEX *name`) and BSD `shasum --tag` lines.
_GNU_LINE = re.compile(r"^(?P<hex>[0-9a-fA-F]{64}) [ *](?P<name>.+)$")
_BSD_LINE = re.compile(r"^SHA256 \((?P<name>.+)\) = (?P<hex>[0-9a-fA-F]{64})$")
#: Artifacts are streamed, so a stalled server must not hold a job forever.
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class ArtifactError(MirrorError):
    """An artifact could not be downloaded, or its checksum is unknown."""


class ChecksumMismatchError(ArtifactError):
    """The downloaded bytes are not the ones the recipe or upstream vouches for."""


class DownloadInterruptedError(ArtifactError):
    """The connection broke or the body ended early: running the download again may work."""


class Verification(StrEnum):
    PINNED = "pinned sha256"
    CHECKSUMS_FILE = "checksums file"
    #: `insecure_skip_checksum: true`: the report must say so.
    NONE = "none"


@dataclass(frozen=True)
class ArtifactRequest:
    """One artifact of one job, its templates already rendered."""

    url: str
    sha256: str | None = None
    checksums_url: str | None = None
    insecure_skip_checksum: bool = False

    @property
    def file_name(self) -> str:
        """The last path segment of the URL, as checksums files name it."""
        return PurePosixPath(unquote(urlsplit(self.url).path)).name


@dataclass(frozen=True)
class Expected:
    """The sha256 an artifact must have (None: not checked) and who vouches for it."""

    sha256: str | None
    verification: Verification


@dataclass(frozen=True)
class FetchedArtifact:
    """A downloaded artifact, every byte of it hashed (and verified unless `Verification.NONE`)."""

    url: str
    sha256: str
    size: int
    verification: Verification


def parse_checksums(text: str) -> dict[str, str]:
    """File name → lowercase hex from a `sha256sum` (or BSD `--tag`) checksums file."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        match = _GNU_LINE.match(line) or _BSD_LINE.match(line)
        if match:
            name = match["name"].removeprefix("./")
            sums[name] = match["hex"].lower()
    return sums


def expected_sha256(http: httpx.Client, request: ArtifactRequest, attempts: int = 3) -> Expected:
    """The checksum `request` must match: pinned, or read from the upstream's checksums file."""
    if request.sha256 is not None:
        if not _HEX64.match(request.sha256):
            raise ArtifactError(f"{request.url}: pinned sha256 {request.sha256!r} is not 64 hex")
        return Expected(request.sha256.lower(), Verification.PINNED)
    if request.checksums_url is not None:
        sums = parse_checksums(_small_text(http, request.checksums_url, attempts))
        name = request.file_name
        if name not in sums:
            listed = ", ".join(sorted(sums)[:10]) or "no sha256 lines"
            raise ArtifactError(
                f"{request.checksums_url} has no sha256 for {name!r} (it lists: {listed}); "
                "check the recipe's checksums_url and artifact url"
            )
        return Expected(sums[name], Verification.CHECKSUMS_FILE)
    if request.insecure_skip_checksum:
        return Expected(None, Verification.NONE)
    raise ArtifactError(
        f"{request.url}: no checksum to verify against; set `sha256` or `checksums_url`, or "
        "`insecure_skip_checksum: true` if upstream publishes none"
    )


class ArtifactDownload:
    """An artifact's bytes as a forward-only binary stream, verified at their end.

    A context manager, entered once per read: entering sends the request (retrying statuses
    that may pass) and gives the stream; reading it hashes the bytes and checks the digest on
    reaching the end; leaving drains what the reader left unread and checks it then. When the
    reader gave up with an error of its own (say, an archive it refused), the digest is still
    checked and a mismatch is raised instead: corrupt bytes explain a bad archive better than
    the archive does.
    """

    def __init__(
        self, http: httpx.Client, request: ArtifactRequest, expected: Expected, attempts: int = 3
    ) -> None:
        self.http = http
        self.request = request
        self.expected = expected
        self.attempts = attempts
        self._response: httpx.Response | None = None
        self._reader: _VerifyingReader | None = None
        self._stream: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return self.request.url

    @property
    def result(self) -> FetchedArtifact:
        """What was downloaded; only once every byte has been read and verified."""
        if self._reader is None or self._reader.result is None:
            raise RuntimeError(f"{self.url} has not been read to its end")
        return self._reader.result

    def __enter__(self) -> IO[bytes]:
        self._response = _open_stream(self.http, self.url, self.attempts)
        self._reader = _VerifyingReader(self.url, self._response.iter_raw(), self.expected)
        self._stream = io.BufferedReader(self._reader, _BUFFER_SIZE)
        return self._stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            unread = isinstance(exc, Exception) and not isinstance(exc, ArtifactError)
            if self._stream is not None and (exc is None or unread):
                while self._stream.read(_BUFFER_SIZE):
                    pass
        finally:
            if self._response is not None:
                self._response.close()


class _VerifyingReader(io.RawIOBase):
    """The response body, hashed as it is read; its end raises unless the digest matches."""

    def __init__(self, url: str, chunks: Iterator[bytes], expected: Expected) -> None:
        super().__init__()
        self.url = url
        self.chunks = chunks
        self.expected = expected
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.pending = memoryview(b"")
        self.result: FetchedArtifact | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if not self.pending:
            if self.result is not None:
                return 0
            try:
                chunk = next(self.chunks, b"")
            except httpx.TransportError as exc:
                raise _interrupted(self.url, exc, self.size) from None
            if not chunk:
                self.result = self._verify()
                return 0
            self.sha256.update(chunk)
            self.size += len(chunk)
            self.pending = memoryview(chunk)
        with memoryview(buffer) as target:
            count = min(len(target), len(self.pending))
            target[:count] = self.pending[:count]
        self.pending = self.pending[count:]
        return count

    def _verify(self) -> FetchedArtifact:
        actual = self.sha256.hexdigest()
        expected = self.expected
        if expected.sha256 is not None and actual != expected.sha256:
            raise ChecksumMismatchError(
                f"checksum mismatch for {self.url}: expected sha256 {expected.sha256} "
                f"({expected.verification.value}), got {actual} over {self.size} bytes; the "
                "download is corrupt or the release was replaced upstream. Nothing was pushed; "
                "check the URL and the recipe's checksum"
            )
        if expected.sha256 is None:
            log.warning("%s: no checksum verified (insecure_skip_checksum: true)", self.url)
        return FetchedArtifact(self.url, actual, self.size, expected.verification)


def _open_stream(http: httpx.Client, url: str, attempts: int) -> httpx.Response:
    """A streamed 200 response for `url`; the caller closes it."""
    for attempt in range(attempts):
        # Identity: the checksum covers the file as published, whatever a server claims
        # about `Content-Encoding` (some label .tar.gz files as gzip-encoded).
        request = http.build_request("GET", url, headers={"Accept-Encoding": "identity"})
        try:
            response = http.send(request, stream=True, follow_redirects=True)
        except httpx.TransportError as exc:
            if attempt + 1 >= attempts:
                raise _interrupted(url, exc) from None
            pause(attempt)
            continue
        if _retryable(response.status_code) and attempt + 1 < attempts:
            response.close()
            pause(attempt)
            continue
        if response.status_code != 200:
            response.close()
            raise _status_error(response, url)
        return response
    raise AssertionError("unreachable: the last attempt returns or raises")


def _small_text(http: httpx.Client, url: str, attempts: int) -> str:
    for attempt in range(attempts):
        try:
            with http.stream("GET", url, follow_redirects=True) as response:
                if _retryable(response.status_code) and attempt + 1 < attempts:
                    pause(attempt)
                    continue
                if response.status_code != 200:
                    raise _status_error(response, url)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_CHECKSUMS_FILE:
                        raise ArtifactError(
                            f"{url} is larger than {_MAX_CHECKSUMS_FILE} bytes; "
                            "is it really a checksums file?"
                        )
                return body.decode("utf-8", "replace")
        except httpx.TransportError as exc:
            if attempt + 1 >= attempts:
                raise _interrupted(url, exc) from None
            pause(attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _retryable(status: int) -> bool:
    return status in _RETRY_STATUS


def _status_error(response: httpx.Response, url: str) -> ArtifactError:
    return ArtifactError(
        f"GET {url} answered {response.status_code} {response.reason_phrase}; check that "
        "the release exists and the recipe's URL template"
    )


def _interrupted(
    url: str, exc: httpx.TransportError, received: int = 0
) -> DownloadInterruptedError:
    what = f" after {received} bytes" if received else ""
    return DownloadInterruptedError(
        f"download of {url} failed{what}: {exc or type(exc).__name__} (truncated or "
        "interrupted); nothing was pushed, run the job again"
    )


def pause(attempt: int) -> None:
    """The wait before attempt `attempt + 1` of a download."""
    time.sleep(0.2 * 2**attempt)
