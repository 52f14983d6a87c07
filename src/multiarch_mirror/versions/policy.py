"""Versions: parse, order (semver precedence) and select the newest stable ones.

Ordering rule, for upstreams that are not strictly semver: the numeric release parts are
compared left to right and a missing part counts as 0 (`1.2` == `1.2.0` < `1.2.0.1` <
`1.2.1`); a version with a pre-release suffix sorts before its release (`1.2.3-rc.1` <
`1.2.3`), and pre-release identifiers follow semver (numeric < alphanumeric, numbers compared
as numbers). Anything after the numbers other than `+build` metadata is a pre-release
(`-rc.1`, `-beta`, `rc1`, `.dev0`, `a1`), whether or not the upstream flagged it. Build
metadata is ignored for precedence; versions of equal precedence are ordered by their text so
the order is stable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import total_ordering

from multiarch_mirror.errors import UsageError

_VERSION_RE = re.compile(
    r"^(?P<release>\d+(?:\.\d+)*)"
    r"(?P<pre>[-.]?[0-9A-Za-z][0-9A-Za-z.-]*)?"
    r"(?:\+(?P<build>[0-9A-Za-z][0-9A-Za-z.-]*))?$"
)

DEFAULT_TAG_PATTERN = r"^v?(?P<version>\d+(?:\.\d+)*(?:[-.+]?[0-9A-Za-z][0-9A-Za-z.+-]*)?)$"
"""The default `tag_pattern`: an optional `v` prefix, then the version."""


class VersionError(UsageError):
    """A string is not a version this tool understands."""


def _identifier_key(part: str) -> tuple[int, int, str]:
    # semver: numeric identifiers sort numerically and before alphanumeric ones
    return (0, int(part), "") if part.isdigit() else (1, 0, part)


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A parsed version; `text` is what the upstream wrote (without the tag prefix)."""

    text: str
    release: tuple[int, ...]
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION_RE.match(text)
        if not match:
            raise VersionError(
                f"{text!r} is not a version: expected numbers separated by dots, e.g. 1.2.3, "
                "optionally followed by a pre-release (-rc.1) or build metadata (+build)"
            )
        pre = (match["pre"] or "").lstrip("-.")
        return cls(
            text=text,
            release=tuple(int(part) for part in match["release"].split(".")),
            prerelease=tuple(re.split(r"[.-]", pre)) if pre else (),
            build=match["build"] or "",
        )

    @classmethod
    def maybe(cls, text: str) -> Version | None:
        try:
            return cls.parse(text)
        except VersionError:
            return None

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    @property
    def major(self) -> int:
        return self.release[0]

    @property
    def minor(self) -> int:
        return self.release[1] if len(self.release) > 1 else 0

    @property
    def patch(self) -> int:
        return self.release[2] if len(self.release) > 2 else 0

    @property
    def tag(self) -> str:
        """The image tag for this version: OCI tags allow no '+', so build metadata uses '_'."""
        return self.text.replace("+", "_")

    def _key(self) -> tuple[object, ...]:
        release = list(self.release)
        while len(release) > 1 and release[-1] == 0:
            release.pop()
        pre: tuple[object, ...] = (
            (0, tuple(_identifier_key(p) for p in self.prerelease)) if self.prerelease else (1,)
        )
        return (tuple(release), pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return (self._key(), self.text) < (other._key(), other.text)

    def __str__(self) -> str:
        return self.text


def tag_order(tags: Iterable[str]) -> list[str]:
    """Tags as people read them: versions oldest to newest by precedence, then the others
    (`latest`, `nightly`, …) alphabetically."""
    parsed = [(tag, Version.maybe(tag.replace("_", "+"))) for tag in tags]
    versions = sorted((v, t) for t, v in parsed if v is not None)
    return [t for _, t in versions] + sorted(t for t, v in parsed if v is None)


@dataclass(frozen=True)
class Release:
    """One candidate from an upstream source: the tag as named there, with what else it told."""

    tag: str
    published: datetime | None = None
    commit: str | None = None
    flagged_prerelease: bool = False


@dataclass(frozen=True)
class Candidate:
    """A release that passed the policy: its version and where it came from."""

    version: Version
    release: Release


@dataclass(frozen=True)
class VersionPolicy:
    """Which upstream tags are versions we mirror, and how many."""

    tag_pattern: re.Pattern[str] = field(default_factory=lambda: re.compile(DEFAULT_TAG_PATTERN))
    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None
    min_version: Version | None = None
    max_versions: int = 10

    def version_of(self, tag: str) -> Version | None:
        """The version a tag names, or None when the tag is not a version (`latest`, `nightly`)."""
        match = self.tag_pattern.search(tag)
        if not match:
            return None
        return Version.maybe(match["version"])

    def accepts(self, release: Release) -> Version | None:
        """The release's version when it is stable and passes include/exclude/min_version."""
        if release.flagged_prerelease:
            return None
        version = self.version_of(release.tag)
        if version is None or version.is_prerelease:
            return None
        if self.include is not None and not self.include.search(version.text):
            return None
        if self.exclude is not None and self.exclude.search(version.text):
            return None
        if self.min_version is not None and version < self.min_version:
            return None
        return version

    def select(self, releases: Iterable[Release]) -> list[Candidate]:
        """The newest `max_versions` accepted releases, newest first, counted after filtering."""
        best: dict[Version, Candidate] = {}
        for release in releases:
            version = self.accepts(release)
            # two tags of one version (`v1.2.3` and `1.2.3`): the first listed wins
            if version is not None and version not in best:
                best[version] = Candidate(version, release)
        ordered = sorted(best.values(), key=lambda c: c.version, reverse=True)
        return ordered[: self.max_versions]
