"""Image references: `registry[:port]/path[:tag][@sha256:…]`, and `oci:DIR[:REF]` layouts.

Normalisation follows the Docker / distribution rules users know: a name without a registry
is on Docker Hub (`nginx` → `docker.io/library/nginx:latest`), whose API host is
`registry-1.docker.io`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from multiarch_mirror.errors import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")
_MAX_NAME = 255


class ReferenceError(UsageError):
    """A string is not a valid image reference; the message quotes it."""


def _bad(text: str, why: str) -> ReferenceError:
    return ReferenceError(f"invalid image reference {text!r}: {why}")


def validate_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise UsageError(
            f"invalid tag {tag!r}: a tag is 1-128 characters of letters, digits, '_', '.', '-', "
            "and does not start with '.' or '-'"
        )
    return tag


def validate_digest(digest: str) -> str:
    if not _DIGEST_RE.match(digest):
        raise UsageError(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex digits>")
    return digest


def is_loopback_host(registry: str) -> bool:
    """True for `localhost` and 127.0.0.0/8 (and ::1), with or without a port."""
    host = registry
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Reference:
    """A registry image reference, normalised. `tag` and `digest` may both be set."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: str | None = "latest") -> Reference:
        """Parse and normalise `text`; `default_tag` is used when neither tag nor digest is given."""
        if not text or text != text.strip():
            raise _bad(text, "empty or surrounded by whitespace")
        if "://" in text:
            raise _bad(text, "drop the scheme; write e.g. ghcr.io/acme/app:1.0")
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST_RE.match(digest):
                raise _bad(text, "the digest must be sha256:<64 lowercase hex digits>")
        tag = None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, tag = rest.rsplit(":", 1)
            if not _TAG_RE.match(tag):
                raise _bad(text, f"{tag!r} is not a valid tag")
        first, _, remainder = rest.partition("/")
        if remainder and (
            "." in first or ":" in first or first == "localhost" or first.startswith("[")
        ):
            registry, repository = first, remainder
            if not _DOMAIN_RE.match(registry):
                raise _bad(text, f"{registry!r} is not a valid registry host")
        else:
            registry, repository = DOCKER_HUB, rest
        if registry in _DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in repository:
                repository = f"library/{repository}"
        if not repository or not _PATH_RE.match(repository):
            raise _bad(
                text,
                "the repository path must be lowercase letters, digits and separators "
                "('.', '_', '__', '-') in '/'-separated components",
            )
        if len(registry) + 1 + len(repository) > _MAX_NAME:
            raise _bad(text, f"the name is longer than {_MAX_NAME} characters")
        if tag is None and digest is None:
            tag = default_tag
        return cls(registry=registry, repository=repository, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host (and port) that serves the distribution API for this registry."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def identifier(self) -> str:
        """What goes into `/v2/<name>/manifests/<identifier>`: the digest if known, else the tag."""
        if self.digest:
            return self.digest
        if self.tag:
            return self.tag
        raise UsageError(f"{self} names no tag and no digest")

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, tag=None, digest=validate_digest(digest))

    def repository_ref(self) -> Reference:
        return replace(self, tag=None, digest=None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class LayoutReference:
    """`oci:DIR[:REF]` — an OCI image layout directory and an optional ref name or digest.

    REF is matched against `org.opencontainers.image.ref.name` in `index.json`; it may itself
    contain ':' (`oci:out:demo:1.0` is directory `out`, ref `demo:1.0`), as in skopeo.
    """

    path: str
    ref: str | None = None

    @classmethod
    def parse(cls, text: str) -> LayoutReference:
        if not text.startswith("oci:"):
            raise _bad(text, "an image layout reference starts with 'oci:'")
        body = text[len("oci:") :]
        path, sep, ref = body.partition(":")
        if not path:
            raise _bad(text, "no directory after 'oci:'")
        if sep and not ref:
            raise _bad(text, "empty reference after the directory")
        return cls(path=path, ref=ref or None)

    def __str__(self) -> str:
        return f"oci:{self.path}" + (f":{self.ref}" if self.ref else "")


ImageLocation = Reference | LayoutReference


def parse_location(text: str, *, default_tag: str | None = "latest") -> ImageLocation:
    """A registry reference or an `oci:` layout reference."""
    if text.startswith("oci:"):
        return LayoutReference.parse(text)
    return Reference.parse(text, default_tag=default_tag)
