"""Builders: one plan job in, one pushed single-platform image out.

A builder is made for one recipe; `build` turns a `BuildJob` (an image, a version, a platform)
into an image pushed by digest, with no tag, into a `Store`, and returns its descriptor.
Publishing (the index and the tags) is somebody else's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from multiarch_mirror.errors import MirrorError
from multiarch_mirror.oci.media import Descriptor, Platform
from multiarch_mirror.oci.store import Store

#: Labels every builder puts on its image configs; `publish` reads them back for the index.
LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_VERSION = "org.opencontainers.image.version"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_CREATED = "org.opencontainers.image.created"
#: Hash of the resolved recipe inputs, so a change of recipe is visible on the image.
LABEL_FINGERPRINT = "io.github.multiarch-mirror.recipe.fingerprint"


class BuildError(MirrorError):
    """A job could not be built or pushed; the message names the job and what to fix."""


@dataclass(frozen=True)
class BuildJob:
    """One (image, version, platform) to build; `id` is the plan job id."""

    id: str
    app: str
    image: str
    version: str
    platform: Platform

    @property
    def name(self) -> str:
        """How logs and errors name the job, e.g. `outline/base-outline 0.80.0 linux/arm64`."""
        return f"{self.app}/{self.image} {self.version} {self.platform}"


#: Renders a recipe template (`{version}`, `{arch}`, …) for one job.
Renderer = Callable[[str, BuildJob], str]


class Builder(Protocol):
    """Turns one job into one single-platform image pushed by digest into `target`."""

    async def build(self, job: BuildJob, target: Store) -> Descriptor:
        """Build `job`, push the image's blobs and manifest by digest (no tag) into `target`.

        Returns the manifest's descriptor with `platform` set to the job's platform.
        Raises `BuildError` (or another `MirrorError`) naming the job when it fails.
        """
        ...
