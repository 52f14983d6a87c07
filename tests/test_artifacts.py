"""Artifact downloads: verified against pinned or published checksums, refused otherwise."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from multiarch_mirror.build.artifacts import (
    ArtifactError,
    ArtifactRequest,
    ChecksumMismatchError,
    Verification,
    fetch_artifact,
    parse_checksums,
)
from tests.support.files import FileServer, start_file_server

PAYLOAD = b"release bytes " * 10_000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server() -> Iterator[FileServer]:
    files = start_file_server()
    files.files["/v1/app-linux-arm64.tar.gz"] = PAYLOAD
    yield files
    files.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def url(server: FileServer, path: str = "/v1/app-linux-arm64.tar.gz") -> str:
    return server.url + path


async def test_pinned_checksum_is_verified(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    fetched = await fetch_artifact(http, ArtifactRequest(url(server), sha256=SHA), tmp_path)
    assert fetched.path.read_bytes() == PAYLOAD
    assert (fetched.sha256, fetched.size) == (SHA, len(PAYLOAD))
    assert fetched.verification is Verification.PINNED


async def test_checksums_file_entry_for_the_file_name_is_used(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    server.files["/v1/SHA256SUMS"] = (
        f"{'0' * 64}  app-linux-amd64.tar.gz\n{SHA} *app-linux-arm64.tar.gz\n".encode()
    )
    request = ArtifactRequest(
        url(server) + "?src=docker", checksums_url=url(server, "/v1/SHA256SUMS")
    )
    fetched = await fetch_artifact(http, request, tmp_path)
    assert fetched.verification is Verification.CHECKSUMS_FILE
    assert fetched.sha256 == SHA


async def test_checksum_mismatch_is_refused_and_the_download_discarded(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    wrong = "ab" * 32
    with pytest.raises(ChecksumMismatchError) as caught:
        await fetch_artifact(http, ArtifactRequest(url(server), sha256=wrong), tmp_path)
    message = str(caught.value)
    assert url(server) in message and wrong in message and SHA in message
    assert list(tmp_path.iterdir()) == []


async def test_truncated_download_is_retried_then_refused(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    server.truncated.add("/v1/app-linux-arm64.tar.gz")
    with pytest.raises(ArtifactError) as caught:
        await fetch_artifact(http, ArtifactRequest(url(server), sha256=SHA), tmp_path)
    assert "truncated" in str(caught.value)
    assert url(server) in str(caught.value)
    assert server.requests.count("/v1/app-linux-arm64.tar.gz") == 3
    assert list(tmp_path.iterdir()) == []


async def test_missing_release_names_the_status(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError, match="answered 404"):
        await fetch_artifact(http, ArtifactRequest(url(server, "/v9/x"), sha256=SHA), tmp_path)


async def test_checksums_file_without_the_artifact_is_refused(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    server.files["/v1/SHA256SUMS"] = f"{SHA}  other.tar.gz\n".encode()
    request = ArtifactRequest(url(server), checksums_url=url(server, "/v1/SHA256SUMS"))
    with pytest.raises(
        ArtifactError, match=r"no sha256 for 'app-linux-arm64.tar.gz' \(it lists: other.tar.gz\)"
    ):
        await fetch_artifact(http, request, tmp_path)


async def test_artifact_without_checksum_is_refused_unless_explicitly_insecure(
    server: FileServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError, match="insecure_skip_checksum"):
        await fetch_artifact(http, ArtifactRequest(url(server)), tmp_path)
    insecure = ArtifactRequest(url(server), insecure_skip_checksum=True)
    fetched = await fetch_artifact(http, insecure, tmp_path)
    assert fetched.verification is Verification.NONE
    assert fetched.sha256 == SHA


def test_checksums_files_in_gnu_and_bsd_formats_are_parsed() -> None:
    text = f"{SHA}  ./a.tar.gz\n{SHA.upper()} *b.zip\nSHA256 (c bin) = {SHA}\n# comment\n"
    assert parse_checksums(text) == {"a.tar.gz": SHA, "b.zip": SHA, "c bin": SHA}
