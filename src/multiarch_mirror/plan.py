"""Compare upstream candidates with the target's tags: the `check` report and the `plan` jobs.

Each image's target repository is listed once (all pages). A version tag is immutable: present
means done, unless forced. `latest` is the newest version among candidates and mirrored tags, so
a backfill of an older version never moves it backwards.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from multiarch_mirror.config import AppConfig, Catalog, ImageSpec, TargetRepository
from multiarch_mirror.errors import MirrorError, UsageError
from multiarch_mirror.oci.client import RegistryClient
from multiarch_mirror.versions.detect import Detection, Detector, HeldBack
from multiarch_mirror.versions.http import UpstreamHttp
from multiarch_mirror.versions.policy import Candidate, Version
from multiarch_mirror.versions.source import StoreOpener, stores_of

Status = Literal["up-to-date", "outdated", "error"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeldBackVersion(_Model):
    version: str
    reason: str


class ImageStatus(_Model):
    """One image in `check --json`."""

    app: str
    image: str
    repository: str
    upstream: list[str]
    """The newest N stable upstream versions that passed the gates, newest first."""
    mirrored: list[str]
    """Versions whose tag is in the target, newest first."""
    missing: list[str]
    latest: str | None
    """The version `latest` should point to."""
    status: Status
    error: str | None
    held_back: list[HeldBackVersion] = []
    """Versions a gate keeps out for now, with the reason."""


class PlanJob(_Model):
    """One (image, version, platform) to build and push by digest."""

    id: str
    app: str
    image: str
    version: str
    """The version; its image tag is `Version.parse(version).tag`."""
    platform: str
    is_latest: bool
    repository: str
    depends_on: list[str]
    """Ids of the jobs (of this app's other images, same version) to publish first."""
    published: datetime | None = None
    """The upstream release's timestamp, when the source tells it."""
    revision: str | None = None
    """The upstream commit, when the source tells it."""


class Plan(_Model):
    """`plan -o plan.json`: every job, dependencies before their dependents."""

    jobs: list[PlanJob]

    def job(self, job_id: str) -> PlanJob:
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise UsageError(f"no job {job_id!r} in the plan ({len(self.jobs)} jobs)")

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Plan:
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"{path}: no such plan file; write one with `plan -o {path}`"
            ) from None
        except ValidationError as exc:
            raise UsageError(f"{path}: not a plan file: {exc.errors()[0]['msg']}") from None


@dataclass(frozen=True)
class ImageState:
    """What upstream offers and what the target holds, for one image."""

    app: AppConfig
    image: ImageSpec
    repository: TargetRepository
    candidates: list[Candidate] = field(default_factory=list)
    held_back: list[HeldBack] = field(default_factory=list)
    tags: frozenset[str] = frozenset()
    error: str | None = None

    @property
    def mirrored(self) -> list[Version]:
        """Stable versions present as tags, newest first."""
        found = [v for tag in self.tags if (v := Version.maybe(tag)) and not v.is_prerelease]
        return sorted(found, reverse=True)

    @property
    def missing(self) -> list[Candidate]:
        return [c for c in self.candidates if c.version.tag not in self.tags]

    @property
    def latest(self) -> Version | None:
        """The newest of candidates and mirrored versions: never behind what is mirrored."""
        return max([c.version for c in self.candidates] + self.mirrored, default=None)

    def status(self) -> ImageStatus:
        # After an error, one side of the comparison is unknown: claim nothing is missing
        # and name no `latest` rather than guess.
        latest = None if self.error else self.latest
        missing = [] if self.error else self.missing
        state: Status = "error" if self.error else "outdated" if missing else "up-to-date"
        return ImageStatus(
            app=self.app.name,
            image=self.image.name,
            repository=str(self.repository),
            upstream=[c.version.text for c in self.candidates],
            mirrored=[v.text for v in self.mirrored],
            missing=[c.version.text for c in missing],
            latest=latest.text if latest else None,
            status=state,
            error=self.error,
            held_back=[
                HeldBackVersion(version=h.version.text, reason=h.reason) for h in self.held_back
            ],
        )


async def list_target_tags(open_store: StoreOpener, repository: TargetRepository) -> list[str]:
    """Every tag of an image's target repository, all pages, in one listing."""
    async with open_store(repository.location, repository.namespace) as store:
        return await store.list_tags()


async def survey(
    catalog: Catalog,
    apps: Sequence[AppConfig],
    *,
    http: UpstreamHttp,
    client: RegistryClient,
) -> list[ImageState]:
    """Detect every app and list every image's target tags; one app's failure stays its own.

    Apps run concurrently (the detector bounds how many); images come out app by app, each
    app's images dependencies first.
    """
    open_store = stores_of(client)
    detector = Detector(http, open_store, catalog.state_dir)
    per_app = await asyncio.gather(
        *(_survey_app(catalog, app, detector, open_store) for app in apps)
    )
    detector.save()
    return [state for states in per_app for state in states]


async def _survey_app(
    catalog: Catalog, app: AppConfig, detector: Detector, open_store: StoreOpener
) -> list[ImageState]:
    images = app.ordered_images()
    platforms = list(dict.fromkeys(p for image in images for p in catalog.platforms(image)))
    repositories = [catalog.repository(image.name) for image in images]
    detection: Detection | None = None
    try:
        detection = await detector.detect(app, catalog.policy(app), platforms)
    except MirrorError as exc:
        failure = f"upstream: {exc}"
        return [
            ImageState(app, image, repo, error=failure)
            for image, repo in zip(images, repositories, strict=True)
        ]
    listings = await asyncio.gather(
        *(list_target_tags(open_store, repo) for repo in repositories), return_exceptions=True
    )
    states: dict[str, ImageState] = {}
    for image, repo, listing in zip(images, repositories, listings, strict=True):
        error: str | None = None
        tags: frozenset[str] = frozenset()
        if isinstance(listing, MirrorError):
            error = f"target {repo}: {listing}"
        elif isinstance(listing, BaseException):
            raise listing
        else:
            tags = frozenset(listing)
        failed = [dep for dep in image.depends_on if states[dep].error]
        if failed and not error:
            error = f"depends on {failed[0]!r}, which failed: {states[failed[0]].error}"
        states[image.name] = ImageState(
            app=app,
            image=image,
            repository=repo,
            candidates=detection.candidates,
            held_back=detection.held_back,
            tags=tags,
            error=error,
        )
    return list(states.values())


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def job_id(app: str, image: str, version: Version, platform: str) -> str:
    """A stable, filename-safe id: `outline-base-outline-0.80.2-linux-arm64`."""
    return _UNSAFE.sub("-", f"{app}-{image}-{version.tag}-{platform.replace('/', '-')}")


def make_plan(catalog: Catalog, states: Sequence[ImageState], *, force: bool = False) -> Plan:
    """One job per missing (image, version, platform); every version when `force`.

    `states` come from `survey`, which orders each app's images dependencies first.
    """
    jobs: list[PlanJob] = []
    ids: dict[tuple[str, str, str], list[str]] = {}
    for state in states:
        if state.error:
            continue
        latest = state.latest
        for candidate in state.candidates if force else state.missing:
            version = candidate.version
            depends_on = [
                job
                for dep in state.image.depends_on
                for job in ids.get((state.app.name, dep, version.text), [])
            ]
            key = (state.app.name, state.image.name, version.text)
            for platform in catalog.platforms(state.image):
                job = PlanJob(
                    id=job_id(state.app.name, state.image.name, version, str(platform)),
                    app=state.app.name,
                    image=state.image.name,
                    version=version.text,
                    platform=str(platform),
                    is_latest=latest is not None and version.text == latest.text,
                    repository=str(state.repository),
                    depends_on=depends_on,
                    published=candidate.release.published,
                    revision=candidate.release.commit,
                )
                jobs.append(job)
                ids.setdefault(key, []).append(job.id)
    return Plan(jobs=jobs)
