"""`sync`: detect → plan → build → publish → report in one process, and the stage steps
(`build --job`, `publish`) that do the same work apart, with a digest file per job in between.

Apps run concurrently within a bound and fail alone; an image's dependencies of the same
version are published before it is built. A lock under the state directory keeps two syncs
from racing on one target.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from multiarch_mirror.build import Builder, BuildJob
from multiarch_mirror.build.assemble import AssembleBuilder, AssembleSettings
from multiarch_mirror.build.buildah import BuildahBuilder, BuildahSettings
from multiarch_mirror.config import AppConfig, AssembleRecipe, Catalog, ImageSpec
from multiarch_mirror.errors import MirrorError, UsageError
from multiarch_mirror.oci.client import RegistryClient
from multiarch_mirror.oci.media import Descriptor, Platform
from multiarch_mirror.oci.store import Store, open_store
from multiarch_mirror.plan import Plan, PlanJob, make_plan, survey
from multiarch_mirror.publish import Publication, PublishError, Release, publish
from multiarch_mirror.report import AppReport, BuiltImage, PublishedIndex, SyncReport
from multiarch_mirror.verify import BINFMT_DIR, SmokeTest, verify_image
from multiarch_mirror.versions.http import UpstreamHttp
from multiarch_mirror.versions.policy import Version

log = logging.getLogger(__name__)


class SyncLockedError(MirrorError):
    """Another sync holds the state directory's lock."""


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    #: Rebuild and re-tag versions whose tag already exists.
    force: bool = False
    #: Apps in flight at once.
    apps_at_once: int = 2
    #: Builds in flight at once, across apps (each is a buildah process).
    builds_at_once: int = 2
    #: Verify each index (platforms, configs, blobs, the app's smoke test) before tagging.
    verify: bool = True
    storage_driver: str | None = None
    insecure_registries: tuple[str, ...] = ()
    binfmt_dir: Path = BINFMT_DIR


@contextmanager
def sync_lock(state_dir: Path) -> Iterator[None]:
    """Hold `state_dir/sync.lock`; if another process holds it, say who and since when.

    The kernel drops the lock when its holder exits, so a crashed sync never blocks the next.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "sync.lock"
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            try:
                holder = json.loads(lock.read())
                who = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
            except (ValueError, KeyError, TypeError):
                who = "another process"
            raise SyncLockedError(
                f"another sync is running ({who}); wait for it to finish (lock: {path})"
            ) from None
        lock.seek(0)
        lock.truncate()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        lock.write(
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started})
        )
        lock.flush()
        yield


def upstream_name(app: AppConfig) -> str:
    """`github-releases mattermost/mattermost`: where an app's versions come from."""
    upstream = app.upstream
    for key in ("repo", "project", "package", "image", "url"):
        value = getattr(upstream, key, None)
        if value is not None:
            return f"{upstream.source} {value}"
    return upstream.source


def write_digest(directory: Path, job: PlanJob, desc: Descriptor) -> Path:
    """`DIR/<job id>.json`: the built image's descriptor, for the publish stage."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{job.id}.json"
    document = {
        "digest": desc.digest,
        "size": desc.size,
        "mediaType": desc.media_type,
        "platform": job.platform,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def read_digest(directory: Path, job: PlanJob) -> Descriptor | None:
    path = directory / f"{job.id}.json"
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
        return Descriptor(
            media_type=document["mediaType"],
            digest=document["digest"],
            size=document["size"],
            platform=Platform.parse(document["platform"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a digest file: {exc}") from None


def _groups(jobs: Sequence[PlanJob]) -> dict[tuple[str, str, str], list[PlanJob]]:
    """Jobs per (app, image, version), in plan order (dependencies first)."""
    groups: dict[tuple[str, str, str], list[PlanJob]] = {}
    for job in jobs:
        groups.setdefault((job.app, job.image, job.version), []).append(job)
    return groups


class Pipeline:
    """Builds and publishes plan jobs against one catalog, with bounded concurrency."""

    def __init__(self, catalog: Catalog, client: RegistryClient, options: SyncOptions) -> None:
        self.catalog = catalog
        self.client = client
        self.options = options
        self.build_slots = asyncio.Semaphore(options.builds_at_once)

    def _image(self, job: PlanJob) -> tuple[AppConfig, ImageSpec]:
        app = self.catalog.apps.get(job.app)
        if app is None:
            raise UsageError(f"job {job.id}: no app {job.app!r} in the catalog")
        return app, app.image(job.image)

    def builder(self, app: AppConfig, image: ImageSpec, job: PlanJob) -> Builder:
        """The builder for the image's recipe kind."""

        def render(text: str, build_job: BuildJob) -> str:
            context = self.catalog.template_context(app, build_job.version, build_job.platform)
            return context.render(text)

        recipe = self.catalog.recipe(image)
        if isinstance(recipe, AssembleRecipe):
            release_times = {job.version: job.published} if job.published else {}
            assemble = AssembleSettings(
                registry=self.client, state_dir=self.catalog.state_dir, release_times=release_times
            )
            return AssembleBuilder(recipe, render, assemble)
        buildah = BuildahSettings(
            state_dir=self.catalog.state_dir,
            storage_driver=self.options.storage_driver,
            insecure_registries=self.options.insecure_registries,
            binfmt_dir=self.options.binfmt_dir,
        )
        return BuildahBuilder(recipe, render, buildah)

    @asynccontextmanager
    async def store(self, image: str) -> AsyncIterator[Store]:
        repository = self.catalog.repository(image)
        store = open_store(repository.location, self.client, namespace=repository.namespace)
        try:
            yield store
        finally:
            await store.aclose()

    async def build(self, job: PlanJob) -> tuple[Descriptor, float, list[str]]:
        """Build one job and push it by digest into its image's target repository.

        Returns the image's descriptor (platform set), the seconds it took, and the notes the
        report must carry (such as an artifact built without checksum verification).
        """
        app, image = self._image(job)
        build_job = BuildJob(
            id=job.id,
            app=job.app,
            image=job.image,
            version=job.version,
            platform=Platform.parse(job.platform),
        )
        async with self.build_slots, self.store(job.image) as store:
            started = time.monotonic()
            log.info("building %s", build_job.name)
            builder = self.builder(app, image, job)
            notes: list[str] = []
            if isinstance(builder, AssembleBuilder):
                assembled = await builder.assemble(build_job, store)
                desc, notes = assembled.descriptor, assembled.notes
            else:
                desc = await builder.build(build_job, store)
        return desc, round(time.monotonic() - started, 2), notes

    async def publish(self, jobs: Sequence[PlanJob], built: Sequence[Descriptor]) -> Publication:
        """Publish the index of one (image, version) from its jobs' built images."""
        first = jobs[0]
        app, image = self._image(first)
        platforms = self.catalog.platforms(image)
        release = Release(
            app=app.name,
            image=image.name,
            version=first.version,
            tag=Version.parse(first.version).tag,
            platforms=tuple(platforms),
            is_latest=first.is_latest,
            upstream=upstream_name(app),
        )
        async with self.store(image.name) as store:

            async def check(index: Descriptor) -> None:
                if not self.options.verify:
                    return
                failures: list[str] = []
                # One platform at a time: a smoke test's templates may name the platform.
                for platform in platforms:
                    result = await verify_image(
                        store,
                        index.digest,
                        [platform],
                        smoke=self._smoke(app, image, first.version, platform),
                        display=f"{store.display}@{index.digest}",
                        binfmt_dir=self.options.binfmt_dir,
                    )
                    failures += result.failures()
                if failures:
                    raise PublishError(
                        f"not tagging {release.name}: verification failed: " + "; ".join(failures)
                    )

            return await publish(store, release, built, force=self.options.force, check=check)

    def _smoke(
        self, app: AppConfig, image: ImageSpec, version: str, platform: Platform
    ) -> SmokeTest | None:
        if image.smoke is None:
            return None
        context = self.catalog.template_context(app, version, platform)
        return SmokeTest(
            command=[context.render(part) for part in image.smoke.command],
            expect=context.render(image.smoke.expect),
        )

    async def run_group(self, jobs: Sequence[PlanJob], report: AppReport) -> bool:
        """Build every platform of one (image, version), then publish it; False if it failed."""
        results = await asyncio.gather(*(self.build(job) for job in jobs), return_exceptions=True)
        built: list[Descriptor] = []
        failed = False
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, MirrorError):
                report.errors.append(str(result))
                failed = True
            elif isinstance(result, BaseException):
                raise result
            else:
                desc, seconds, notes = result
                built.append(desc)
                report.built.append(
                    BuiltImage(
                        image=job.image,
                        version=job.version,
                        platform=job.platform,
                        digest=desc.digest,
                        seconds=seconds,
                        notes=notes,
                    )
                )
        first = jobs[0]
        if failed:
            report.errors.append(
                f"{first.image} {first.version}: not tagged, because a platform failed to build"
            )
            return False
        try:
            publication = await self.publish(jobs, built)
        except MirrorError as exc:
            report.errors.append(str(exc))
            return False
        report.published.append(
            PublishedIndex(
                image=first.image,
                version=first.version,
                digest=publication.index.digest,
                tags=publication.tags,
            )
        )
        return True

    async def run_app(self, jobs: Sequence[PlanJob], report: AppReport) -> None:
        """Every version of one app at once; each version's images in dependency order."""
        started = time.monotonic()
        by_version: dict[str, list[list[PlanJob]]] = {}
        for group in _groups(jobs).values():
            by_version.setdefault(group[0].version, []).append(group)

        async def one_version(groups: list[list[PlanJob]]) -> None:
            done: dict[str, bool] = {}
            for group in groups:
                first = group[0]
                _, image = self._image(first)
                broken = [dep for dep in image.depends_on if done.get(dep) is False]
                if broken:
                    report.errors.append(
                        f"{first.image} {first.version}: not built, because {broken[0]} "
                        f"{first.version} failed"
                    )
                    done[first.image] = False
                    continue
                done[first.image] = await self.run_group(group, report)

        async def guarded(groups: list[list[PlanJob]]) -> None:
            # A bug or an OS error in one app is reported as that app's failure: the other
            # apps of the run still finish.
            try:
                await one_version(groups)
            except Exception as exc:
                log.debug("unexpected failure in %s", report.app, exc_info=True)
                report.errors.append(
                    f"{groups[0][0].version}: unexpected {type(exc).__name__}: {exc}"
                )

        await asyncio.gather(*(guarded(groups) for groups in by_version.values()))
        report.seconds = round(time.monotonic() - started, 2)
        report.status = "failed" if report.errors else "updated"


async def sync(
    catalog: Catalog,
    names: Sequence[str],
    *,
    client: RegistryClient,
    options: SyncOptions,
) -> tuple[SyncReport, Plan]:
    """The whole chain for the named apps (all when none); one app's failure stays its own."""
    report = SyncReport(started=datetime.now(UTC), dry_run=options.dry_run)
    started = time.monotonic()
    apps = catalog.select(names)
    async with UpstreamHttp.for_state_dir(catalog.state_dir) as http:
        states = await survey(catalog, apps, http=http, client=client)
    the_plan = make_plan(catalog, states, force=options.force)
    reports = {app.name: AppReport(app=app.name) for app in apps}
    for state in states:
        if state.error:
            reports[state.app.name].errors.append(f"{state.image.name}: {state.error}")
            reports[state.app.name].status = "failed"
    for job in the_plan.jobs:
        reports[job.app].planned.append(f"{job.image} {job.version} {job.platform}")
        if options.dry_run and reports[job.app].status != "failed":
            reports[job.app].status = "planned"
    report.apps = list(reports.values())
    if not options.dry_run:
        pipeline = Pipeline(catalog, client, options)
        app_slots = asyncio.Semaphore(options.apps_at_once)

        async def run(app: str, jobs: list[PlanJob]) -> None:
            async with app_slots:
                await pipeline.run_app(jobs, reports[app])

        per_app: dict[str, list[PlanJob]] = {}
        for job in the_plan.jobs:
            per_app.setdefault(job.app, []).append(job)
        await asyncio.gather(*(run(app, jobs) for app, jobs in per_app.items()))
    report.seconds = round(time.monotonic() - started, 2)
    return report, the_plan


async def build_stage(
    catalog: Catalog,
    plan: Plan,
    job_id: str,
    digests: Path,
    *,
    client: RegistryClient,
    options: SyncOptions,
) -> Path:
    """`build --job`: build one plan job, push it by digest, write `DIR/<id>.json`."""
    job = plan.job(job_id)
    desc, _, _ = await Pipeline(catalog, client, options).build(job)
    return write_digest(digests, job, desc)


async def publish_stage(
    catalog: Catalog,
    plan: Plan,
    digests: Path,
    *,
    client: RegistryClient,
    options: SyncOptions,
    images: Sequence[str] = (),
) -> SyncReport:
    """`publish`: one index per (image, version) of the plan, from the jobs' digest files.

    A version with a platform's digest file missing is not tagged (its build failed or did
    not run). `images` limits publishing to those images, for CI waves where a dependent
    image is built only after its base is published.
    """
    report = SyncReport(started=datetime.now(UTC))
    started = time.monotonic()
    pipeline = Pipeline(catalog, client, options)
    reports: dict[str, AppReport] = {}
    for (app, image, version), jobs in _groups(plan.jobs).items():
        if images and image not in images:
            continue
        app_report = reports.setdefault(app, AppReport(app=app))
        built = [read_digest(digests, job) for job in jobs]
        missing = [job.id for job, desc in zip(jobs, built, strict=True) if desc is None]
        if missing:
            app_report.errors.append(
                f"{image} {version}: not tagged, no digest file for "
                + ", ".join(missing)
                + f" in {digests} (its build failed or did not run)"
            )
            continue
        try:
            publication = await pipeline.publish(jobs, [d for d in built if d is not None])
        except MirrorError as exc:
            app_report.errors.append(str(exc))
            continue
        app_report.published.append(
            PublishedIndex(
                image=image, version=version, digest=publication.index.digest, tags=publication.tags
            )
        )
    for app_report in reports.values():
        app_report.status = "failed" if app_report.errors else "updated"
    report.apps = list(reports.values())
    report.seconds = round(time.monotonic() - started, 2)
    return report
