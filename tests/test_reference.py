"""Image references parse and normalise the way Docker users expect."""

from __future__ import annotations

import pytest

from multiarch_mirror.oci.reference import (
    LayoutReference,
    Reference,
    ReferenceError,
    is_loopback_host,
    parse_location,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("acme/app", "docker.io", "acme/app", "latest", None),
        ("index.docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("localhost:5000/a/b", "localhost:5000", "a/b", "latest", None),
        ("localhost/a", "localhost", "a", "latest", None),
        ("127.0.0.1:5000/x:v1", "127.0.0.1:5000", "x", "v1", None),
        ("ghcr.io/acme/mirror/outline:0.80.2", "ghcr.io", "acme/mirror/outline", "0.80.2", None),
        (f"ghcr.io/a/b@{DIGEST}", "ghcr.io", "a/b", None, DIGEST),
        (f"ghcr.io/a/b:1.0@{DIGEST}", "ghcr.io", "a/b", "1.0", DIGEST),
        ("[::1]:5000/a", "[::1]:5000", "a", "latest", None),
    ],
)
def test_parse_normalises(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


def test_docker_hub_api_host_differs_from_its_name() -> None:
    ref = Reference.parse("nginx")
    assert ref.api_host == "registry-1.docker.io"
    assert str(ref) == "docker.io/library/nginx:latest"


def test_identifier_prefers_digest() -> None:
    assert Reference.parse(f"a.io/b:1@{DIGEST}").identifier == DIGEST
    assert Reference.parse("a.io/b:1").identifier == "1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "UPPER/case",
        "a.io/b:",
        "a.io/b@sha256:xyz",
        "https://a.io/b",
        "a.io//b",
        "a.io/b:-x",
        " x",
    ],
)
def test_bad_references_are_rejected_quoting_the_input(text: str) -> None:
    with pytest.raises(ReferenceError) as info:
        Reference.parse(text)
    assert repr(text) in str(info.value)


def test_layout_reference_allows_colons_in_the_ref() -> None:
    ref = LayoutReference.parse("oci:out:demo:1.0")
    assert (ref.path, ref.ref) == ("out", "demo:1.0")
    assert isinstance(parse_location("oci:./x"), LayoutReference)
    assert isinstance(parse_location("a.io/b"), Reference)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost:5000", True),
        ("127.0.0.1", True),
        ("127.3.4.5:80", True),
        ("[::1]:5000", True),
        ("ghcr.io", False),
        ("10.0.0.1:5000", False),
    ],
)
def test_loopback_hosts(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected
