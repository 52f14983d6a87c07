"""Artifact downloads: streamed, verified against pinned or published checksums at their end."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from multiarch_mirror.build.artifacts import (
    ArtifactDownload,
    ArtifactError,
    ArtifactRequest,
    ChecksumMismatchError,
    DownloadInterruptedError,
    Expected,
    Verification,
    expected_sha256,
    parse_checksums,
)
from tests.support.files import FileServer, start_file_server

PAYLOAD = b"release bytes " * 100_000
SHA = hashlib.sha256(PAYLOAD).hexdigest()
PATH = "/v1/app-linux-arm64.tar.gz"


@pytest.fixture
def server() -> Iterator[FileServer]:
    files = start_file_server()
    files.files[PATH] = PAYLOAD
    yield files
    files.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def url(server: FileServer, path: str = PATH) -> str:
    return server.url + path


def download(
    http: httpx.Client, request: ArtifactRequest, attempts: int = 3
) -> tuple[bytes, ArtifactDownload]:
    """Read an artifact to its end, as a layer does; returns its bytes and the download."""
    artifact = ArtifactDownload(http, request, expected_sha256(http, request), attempts)
    with artifact as stream:
        data = stream.read()
    return data, artifact


def test_pinned_checksum_is_verified(server: FileServer, http: httpx.Client) -> None:
    data, artifact = download(http, ArtifactRequest(url(server), sha256=SHA))
    assert data == PAYLOAD
    assert (artifact.result.sha256, artifact.result.size) == (SHA, len(PAYLOAD))
    assert artifact.result.verification is Verification.PINNED


def test_checksums_file_entry_for_the_file_name_is_used(
    server: FileServer, http: httpx.Client
) -> None:
    server.files["/v1/SHA256SUMS"] = (
        f"{'0' * 64}  app-linux-amd64.tar.gz\n{SHA} *app-linux-arm64.tar.gz\n".encode()
    )
    request = ArtifactRequest(
        url(server) + "?src=docker", checksums_url=url(server, "/v1/SHA256SUMS")
    )
    assert expected_sha256(http, request) == Expected(SHA, Verification.CHECKSUMS_FILE)
    _, artifact = download(http, request)
    assert artifact.result.sha256 == SHA


def test_checksum_mismatch_is_raised_at_the_end_of_the_bytes(
    server: FileServer, http: httpx.Client
) -> None:
    wrong = "ab" * 32
    artifact = ArtifactDownload(
        http, ArtifactRequest(url(server)), Expected(wrong, Verification.PINNED)
    )
    with pytest.raises(ChecksumMismatchError) as caught, artifact as stream:
        first = stream.read(1000)
        assert first == PAYLOAD[:1000]
        stream.read()
    message = str(caught.value)
    assert url(server) in message and wrong in message and SHA in message
    assert "Nothing was pushed" in message


def test_bytes_left_unread_are_still_downloaded_and_verified(
    server: FileServer, http: httpx.Client
) -> None:
    artifact = ArtifactDownload(
        http, ArtifactRequest(url(server)), Expected(SHA, Verification.PINNED)
    )
    with artifact as stream:
        stream.read(10)
    assert (artifact.result.sha256, artifact.result.size) == (SHA, len(PAYLOAD))
    wrong = ArtifactDownload(
        http, ArtifactRequest(url(server)), Expected("0" * 64, Verification.PINNED)
    )
    with pytest.raises(ChecksumMismatchError), wrong as stream:
        stream.read(10)


def test_a_mismatch_wins_over_the_readers_own_error(server: FileServer, http: httpx.Client) -> None:
    artifact = ArtifactDownload(
        http, ArtifactRequest(url(server)), Expected("0" * 64, Verification.PINNED)
    )
    with pytest.raises(ChecksumMismatchError) as caught, artifact as stream:
        stream.read(10)
        raise ValueError("not a tar archive")
    assert isinstance(caught.value.__context__, ValueError)


def test_result_is_unknown_until_the_end_is_read(server: FileServer, http: httpx.Client) -> None:
    artifact = ArtifactDownload(
        http, ArtifactRequest(url(server)), Expected(SHA, Verification.PINNED)
    )
    with pytest.raises(RuntimeError, match="has not been read to its end"):
        _ = artifact.result


def test_truncated_download_is_an_interruption_naming_the_url(
    server: FileServer, http: httpx.Client
) -> None:
    server.truncate(PATH)
    with pytest.raises(DownloadInterruptedError) as caught:
        download(http, ArtifactRequest(url(server), sha256=SHA))
    assert "truncated" in str(caught.value)
    assert url(server) in str(caught.value)
    assert server.requests.count(PATH) == 1


def test_missing_release_names_the_status(server: FileServer, http: httpx.Client) -> None:
    with pytest.raises(ArtifactError, match="answered 404"):
        download(http, ArtifactRequest(url(server, "/v9/x"), sha256=SHA))


def test_checksums_file_without_the_artifact_is_refused(
    server: FileServer, http: httpx.Client
) -> None:
    server.files["/v1/SHA256SUMS"] = f"{SHA}  other.tar.gz\n".encode()
    request = ArtifactRequest(url(server), checksums_url=url(server, "/v1/SHA256SUMS"))
    with pytest.raises(
        ArtifactError, match=r"no sha256 for 'app-linux-arm64.tar.gz' \(it lists: other.tar.gz\)"
    ):
        expected_sha256(http, request)


def test_artifact_without_checksum_is_refused_unless_explicitly_insecure(
    server: FileServer, http: httpx.Client
) -> None:
    with pytest.raises(ArtifactError, match="insecure_skip_checksum"):
        expected_sha256(http, ArtifactRequest(url(server)))
    _, artifact = download(http, ArtifactRequest(url(server), insecure_skip_checksum=True))
    assert artifact.result.verification is Verification.NONE
    assert artifact.result.sha256 == SHA


def test_checksums_files_in_gnu_and_bsd_formats_are_parsed() -> None:
    text = f"{SHA}  ./a.tar.gz\n{SHA.upper()} *b.zip\nSHA256 (c bin) = {SHA}\n# comment\n"
    assert parse_checksums(text) == {"a.tar.gz": SHA, "b.zip": SHA, "c bin": SHA}
