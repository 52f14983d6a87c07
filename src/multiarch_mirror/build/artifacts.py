"""Release artifacts over HTTP, verified against a pinned sha256 or the upstream's checksums file.

A download is hashed while it is written to disk; a mismatch, a short body or an HTTP error
stops the job before anything is pushed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import httpx

from multiarch_mirror.errors import MirrorError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_MAX_CHECKSUMS_FILE = 1 << 20
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
#: `sha256sum` lines (`HEX  name`, `HEX *name`) and BSD `shasum --tag` lines.
_GNU_LINE = re.compile(r"^(?P<hex>[0-9a-fA-F]{64}) [ *](?P<name>.+)$")
_BSD_LINE = re.compile(r"^SHA256 \((?P<name>.+)\) = (?P<hex>[0-9a-fA-F]{64})$")


class ArtifactError(MirrorError):
    """An artifact could not be downloaded, or its checksum is unknown."""


class ChecksumMismatchError(ArtifactError):
    """The downloaded bytes are not the ones the recipe or upstream vouches for."""


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
class FetchedArtifact:
    url: str
    path: Path
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


async def fetch_artifact(
    client: httpx.AsyncClient,
    request: ArtifactRequest,
    directory: Path,
    *,
    attempts: int = 3,
) -> FetchedArtifact:
    """Download `request.url` into `directory`, verified before it is returned."""
    expected, verification = await _expected_sha256(client, request, attempts)
    path = directory / f"artifact-{hashlib.sha256(request.url.encode()).hexdigest()[:16]}"
    actual, size = await _download(client, request.url, path, attempts)
    if expected is not None and actual != expected:
        path.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"checksum mismatch for {request.url}: expected sha256 {expected} "
            f"({verification.value}), got {actual} over {size} bytes; the download is corrupt "
            "or the release was replaced upstream. Nothing was pushed; check the URL and the "
            "recipe's checksum"
        )
    if expected is None:
        log.warning("%s: no checksum verified (insecure_skip_checksum: true)", request.url)
    return FetchedArtifact(request.url, path, actual, size, verification)


async def _expected_sha256(
    client: httpx.AsyncClient, request: ArtifactRequest, attempts: int
) -> tuple[str | None, Verification]:
    if request.sha256 is not None:
        if not _HEX64.match(request.sha256):
            raise ArtifactError(f"{request.url}: pinned sha256 {request.sha256!r} is not 64 hex")
        return request.sha256.lower(), Verification.PINNED
    if request.checksums_url is not None:
        sums = parse_checksums(await _small_text(client, request.checksums_url, attempts))
        name = request.file_name
        if name not in sums:
            listed = ", ".join(sorted(sums)[:10]) or "no sha256 lines"
            raise ArtifactError(
                f"{request.checksums_url} has no sha256 for {name!r} (it lists: {listed}); "
                "check the recipe's checksums_url and artifact url"
            )
        return sums[name], Verification.CHECKSUMS_FILE
    if request.insecure_skip_checksum:
        return None, Verification.NONE
    raise ArtifactError(
        f"{request.url}: no checksum to verify against; set `sha256` or `checksums_url`, or "
        "`insecure_skip_checksum: true` if upstream publishes none"
    )


async def _small_text(client: httpx.AsyncClient, url: str, attempts: int) -> str:
    for attempt in range(attempts):
        try:
            async with client.stream("GET", url, follow_redirects=True) as response:
                if _retryable(response.status_code) and attempt + 1 < attempts:
                    await _pause(attempt)
                    continue
                _check_status(response, url)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_CHECKSUMS_FILE:
                        raise ArtifactError(
                            f"{url} is larger than {_MAX_CHECKSUMS_FILE} bytes; "
                            "is it really a checksums file?"
                        )
                return body.decode("utf-8", "replace")
        except httpx.TransportError as exc:
            if attempt + 1 >= attempts:
                raise _transport_error(url, exc) from None
            await _pause(attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _download(
    client: httpx.AsyncClient, url: str, path: Path, attempts: int
) -> tuple[str, int]:
    """Stream `url` to `path`, hashing on the way; returns (hex sha256, size)."""
    for attempt in range(attempts):
        digest = hashlib.sha256()
        size = 0
        try:
            # Identity: the checksum covers the file as published, whatever a server claims
            # about `Content-Encoding` (some label .tar.gz files as gzip-encoded).
            async with client.stream(
                "GET", url, follow_redirects=True, headers={"Accept-Encoding": "identity"}
            ) as response:
                if _retryable(response.status_code) and attempt + 1 < attempts:
                    await _pause(attempt)
                    continue
                _check_status(response, url)
                with path.open("wb") as out:
                    async for chunk in response.aiter_raw(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            return digest.hexdigest(), size
        except httpx.TransportError as exc:
            path.unlink(missing_ok=True)
            if attempt + 1 >= attempts:
                raise _transport_error(url, exc, size) from None
            log.info("download of %s interrupted after %d bytes (%s); retrying", url, size, exc)
            await _pause(attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _retryable(status: int) -> bool:
    return status in _RETRY_STATUS


def _check_status(response: httpx.Response, url: str) -> None:
    if response.status_code != 200:
        raise ArtifactError(
            f"GET {url} answered {response.status_code} {response.reason_phrase}; check that "
            "the release exists and the recipe's URL template"
        )


def _transport_error(url: str, exc: httpx.TransportError, received: int = 0) -> ArtifactError:
    what = f" after {received} bytes" if received else ""
    return ArtifactError(
        f"download of {url} failed{what}: {exc or type(exc).__name__} (truncated or "
        "interrupted); nothing was pushed, run the job again"
    )


async def _pause(attempt: int) -> None:
    await asyncio.sleep(0.2 * 2**attempt)
