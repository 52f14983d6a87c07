"""The `multiarch-mirror` command: parse arguments, call the library, render results.

No logic lives here that a library caller would need. Exit codes: 0 success, 1 when any
app/operation failed, 2 on usage or configuration errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import shlex
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from multiarch_mirror import __version__
from multiarch_mirror import doctor as checks
from multiarch_mirror.config import (
    DEFAULT_PLATFORMS,
    Catalog,
    app_schema,
    load_catalog,
    mirror_schema,
)
from multiarch_mirror.errors import MirrorError, UsageError
from multiarch_mirror.oci.client import RegistryClient, RegistrySettings, RetryPolicy
from multiarch_mirror.oci.copy import DEFAULT_CONCURRENCY, BlobOutcome, CopyResult, copy_image
from multiarch_mirror.oci.media import Descriptor, Platform
from multiarch_mirror.oci.reference import (
    ImageLocation,
    LayoutReference,
    Reference,
    parse_location,
)
from multiarch_mirror.oci.store import Store, open_store
from multiarch_mirror.oci.summary import ImageDetails, ImageSummary, summarize
from multiarch_mirror.plan import ImageState, ImageStatus, Plan, make_plan, survey
from multiarch_mirror.report import SyncReport
from multiarch_mirror.report import render as render_report
from multiarch_mirror.sync import SyncOptions, build_stage, publish_stage, sync_lock
from multiarch_mirror.sync import sync as run_sync
from multiarch_mirror.verify import BINFMT_DIR
from multiarch_mirror.versions.http import UpstreamHttp
from multiarch_mirror.versions.policy import tag_order

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="multiarch-mirror",
    help=(
        "Keep multi-arch (linux/amd64 + linux/arm64) images of third-party apps in sync with "
        "their upstream releases: detect versions, build what the registry lacks, publish one "
        "index per version, verify it."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

stdout = Console()
stderr = Console(stderr=True, soft_wrap=True)  # messages stay whole lines for logs and grep


@dataclass
class GlobalOptions:
    """Options every sub-command sees (set by the top-level callback)."""

    config: Path = Path("mirror.yaml")
    json: bool = False
    verbose: int = 0
    insecure_registries: list[str] = field(default_factory=list)
    ca_file: Path | None = None


def options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def emit_json(value: Any) -> None:
    """Machine output: JSON on stdout, nothing else there."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def complain(label: str, text: str) -> None:
    """One red-labelled line on stderr; `text` is printed literally (never read as markup)."""
    stderr.print(f"[bold red]{label}:[/] {escape(text)}", highlight=False)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into a one-line message and the documented exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except MirrorError as exc:
            complain("error", str(exc))
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        stdout.print(f"multiarch-mirror {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(
        Path("mirror.yaml"), "--config", "-c", help="Mirror configuration file.", show_default=True
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Machine-readable output on stdout (logs go to stderr)."
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More logging (-vv: debug)."
    ),
    insecure_registry: list[str] = typer.Option(
        [],
        "--insecure-registry",
        help="Allow plain HTTP to this registry host[:port] (repeatable). "
        "localhost and 127.0.0.0/8 always use HTTP.",
    ),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="CA bundle to trust for registry TLS (default: $SSL_CERT_FILE)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=stderr, show_path=False, show_time=False)],
        force=True,
    )
    ctx.obj = GlobalOptions(
        config=config,
        json=json_output,
        verbose=verbose,
        insecure_registries=list(insecure_registry),
        ca_file=ca_file,
    )


def registry_settings(opts: GlobalOptions) -> RegistrySettings:
    """Registry transport and credentials from the global options and the environment."""
    extra: dict[str, Any] = {"ca_file": opts.ca_file} if opts.ca_file else {}
    return RegistrySettings.from_env(
        insecure_registries=frozenset(opts.insecure_registries), **extra
    )


class _Stores:
    """Opens the stores a command names, sharing one registry client, closing them all."""

    def __init__(self, client: RegistryClient, stack: contextlib.AsyncExitStack) -> None:
        self._client = client
        self._stack = stack

    def open(self, location: ImageLocation, namespace: str | None = None) -> Store:
        store = open_store(location, self._client, namespace=namespace)
        self._stack.push_async_callback(store.aclose)
        return store


@contextlib.asynccontextmanager
async def _stores(opts: GlobalOptions) -> AsyncIterator[_Stores]:
    async with (
        RegistryClient(registry_settings(opts)) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        yield _Stores(client, stack)


def _image_reference(location: ImageLocation, text: str) -> str:
    """The tag, digest or layout ref name a source location points at."""
    if isinstance(location, Reference):
        return location.identifier
    if location.ref is None:
        raise UsageError(f"{text!r} names no image: write oci:DIR:REF (REF a tag or ref name)")
    return location.ref


def _human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _print_columns(rows: Sequence[tuple[str, ...]]) -> None:
    """Aligned plain columns, never cropped: digests get copied from here into commands."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        stdout.out(line.rstrip(), highlight=False)


def _render_image(details: ImageDetails) -> None:
    stdout.print(
        f"[bold]{details.platform}[/]  {details.descriptor.digest}", highlight=False, soft_wrap=True
    )
    config = details.config
    runtime = config.config if config else None
    rows = [
        ("config", None if config else details.config_type),
        ("created", config.created if config else None),
        ("entrypoint", json.dumps(runtime.entrypoint) if runtime and runtime.entrypoint else None),
        ("cmd", json.dumps(runtime.cmd) if runtime and runtime.cmd else None),
        ("workdir", runtime.working_dir if runtime else None),
        ("user", runtime.user if runtime else None),
        ("env", ", ".join(runtime.env) if runtime and runtime.env else None),
    ]
    for name, value in rows:
        if value:
            stdout.print(f"  {name:<11}{value}", highlight=False, soft_wrap=True)
    _print_columns(
        [("LAYER", "SIZE", "MEDIA TYPE")]
        + [(d.digest, _human_size(d.size), d.media_type) for d in details.layers]
    )


def _render_summary(summary: ImageSummary) -> None:
    stdout.print(f"[bold]{summary.where}[/]", highlight=False, soft_wrap=True)
    stdout.print(f"  digest     {summary.descriptor.digest}", highlight=False, soft_wrap=True)
    stdout.print(f"  mediaType  {summary.descriptor.media_type}", highlight=False, soft_wrap=True)
    if summary.platforms is not None:
        _print_columns(
            [("PLATFORM", "DIGEST", "SIZE", "MEDIA TYPE")]
            + [
                (
                    entry.platform,
                    entry.descriptor.digest,
                    _human_size(entry.image_size),
                    entry.descriptor.media_type,
                )
                for entry in summary.platforms
            ]
        )
    if summary.image is not None:
        _render_image(summary.image)


@app.command()
@handle_errors
def inspect(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Image: registry/repo[:tag][@digest] or oci:DIR:REF."),
    raw: bool = typer.Option(False, "--raw", help="Print the manifest bytes exactly."),
    platform: str | None = typer.Option(
        None, "--platform", help="Show this platform's image (config and layers)."
    ),
) -> None:
    """Show an image index's platforms, digests and sizes, or one image's config and layers."""
    opts = options(ctx)
    location = parse_location(ref)
    wanted = Platform.parse(platform) if platform else None
    identifier = _image_reference(location, ref)

    async def run() -> ImageSummary:
        async with _stores(opts) as stores:
            return await summarize(stores.open(location), identifier, wanted)

    summary = asyncio.run(run())
    if raw:
        document = summary.image.raw if wanted and summary.image else summary.raw
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
    elif opts.json:
        emit_json(summary.to_dict())
    else:
        _render_summary(summary)


@app.command()
@handle_errors
def tags(
    ctx: typer.Context,
    repo: str = typer.Argument(
        ..., help="Repository: registry/repo, or oci:DIR[:NAME] for a layout (NAME: one image)."
    ),
) -> None:
    """List every tag of a repository (all pages), one per line."""
    opts = options(ctx)
    location = parse_location(repo, default_tag=None)
    if isinstance(location, Reference) and (location.tag or location.digest):
        raise UsageError(f"{repo!r} names an image; `tags` takes a repository (no tag or digest)")
    namespace = location.ref if isinstance(location, LayoutReference) else None
    if isinstance(location, LayoutReference):
        location = LayoutReference(location.path)

    async def run() -> list[str]:
        async with _stores(opts) as stores:
            return await stores.open(location, namespace).list_tags()

    found = tag_order(asyncio.run(run()))
    if opts.json:
        emit_json(found)
    else:
        for tag in found:
            sys.stdout.write(f"{tag}\n")


class _ProgressBar:
    """Renders copy progress on a terminal: one bar for all bytes, one per blob in flight."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._total = progress.add_task("total", total=0)
        self._blobs: dict[str, TaskID] = {}

    def blob_started(self, desc: Descriptor) -> None:
        total = self._progress.tasks[self._total].total or 0
        self._progress.update(self._total, total=total + desc.size)
        self._blobs[desc.digest] = self._progress.add_task(desc.digest[7:19], total=desc.size)

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None:
        self._progress.advance(self._blobs[desc.digest], nbytes)
        self._progress.advance(self._total, nbytes)

    def blob_finished(self, desc: Descriptor, outcome: BlobOutcome) -> None:
        task = self._blobs.pop(desc.digest)
        if outcome is not BlobOutcome.COPIED:
            self._progress.advance(self._total, desc.size)
        self._progress.remove_task(task)


def _destination_tag(dest: ImageLocation, source: ImageLocation, text: str) -> str | None:
    """DST's own tag, else SRC's tag; None when DST names a digest (push by digest)."""
    if isinstance(dest, Reference):
        if dest.tag and dest.digest:
            raise UsageError(f"{text!r} names both a tag and a digest; give one")
        if dest.tag or dest.digest:
            return dest.tag
    elif dest.ref:
        return dest.ref
    source_tag = source.tag if isinstance(source, Reference) else source.ref
    if not source_tag:
        raise UsageError(f"{text!r} names no tag, and the source has none to reuse; add :TAG")
    return source_tag.rsplit(":", 1)[-1] if isinstance(dest, Reference) else source_tag


@app.command()
@handle_errors
def copy(
    ctx: typer.Context,
    src: str = typer.Argument(
        ..., help="Source image: registry/repo[:tag][@digest] or oci:DIR:REF."
    ),
    dst: str = typer.Argument(
        ..., help="Destination: registry/repo[:tag] or oci:DIR[:REF] (default: the source's tag)."
    ),
    platform: list[str] = typer.Option(
        [], "--platform", help="Copy only this platform (repeatable); writes a new index."
    ),
    concurrency: int = typer.Option(
        DEFAULT_CONCURRENCY, "--concurrency", help="Blobs transferred at once."
    ),
) -> None:
    """Copy an image or a whole index between registries and/or OCI layouts.

    Blobs already at the destination are skipped, blobs in another repository of the same
    registry are mounted, and the tag is written last.
    """
    opts = options(ctx)
    source = parse_location(src)
    dest = parse_location(dst, default_tag=None)
    identifier = _image_reference(source, src)
    tag = _destination_tag(dest, source, dst)
    platforms = [Platform.parse(p) for p in platform]
    show_progress = stderr.is_terminal and not opts.json

    async def run(progress: _ProgressBar | None) -> CopyResult:
        async with _stores(opts) as stores:
            return await copy_image(
                stores.open(source),
                identifier,
                stores.open(dest),
                tags=[tag] if tag else [],
                platforms=platforms,
                concurrency=concurrency,
                progress=progress,
            )

    if show_progress:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=stderr, transient=True) as bar:
            result = asyncio.run(run(_ProgressBar(bar)))
    else:
        result = asyncio.run(run(None))
    if isinstance(dest, Reference) and dest.digest and dest.digest != result.digest:
        raise MirrorError(
            f"copied {src} as {result.digest}, not the digest {dst} names; "
            "the platform filter or the source changed it"
        )
    if opts.json:
        emit_json(result.to_dict())
    else:
        stdout.print(
            f"{dst}: {result.digest}: {_human_size(result.bytes_moved)} moved, "
            f"{result.blobs_copied} blobs copied, {result.blobs_skipped} skipped, "
            f"{result.blobs_mounted} mounted",
            highlight=False,
            soft_wrap=True,
        )


def _survey(opts: GlobalOptions, names: Sequence[str]) -> tuple[list[ImageState], Catalog]:
    catalog = load_catalog(opts.config)
    apps = catalog.select(names)

    async def run() -> list[ImageState]:
        async with (
            UpstreamHttp.for_state_dir(catalog.state_dir) as http,
            RegistryClient(registry_settings(opts)) as client,
        ):
            return await survey(catalog, apps, http=http, client=client)

    return asyncio.run(run()), catalog


def _report_errors(statuses: Sequence[ImageStatus]) -> None:
    """One line per distinct failure (an upstream error is shared by all of an app's images)."""
    failed: dict[tuple[str, str], list[str]] = {}
    for status in statuses:
        if status.error:
            failed.setdefault((status.app, status.error), []).append(status.image)
    for (app_name, error), images in failed.items():
        complain("error", f"{app_name} ({', '.join(images)}): {error}")
    if failed:
        raise typer.Exit(1)


_STATUS_STYLE = {"up-to-date": "green", "outdated": "yellow", "error": "bold red"}


@app.command()
@handle_errors
def check(
    ctx: typer.Context,
    apps: list[str] = typer.Argument(None, help="Apps to check (default: every app)."),
) -> None:
    """Compare upstream's newest stable versions with the target registry, per image."""
    opts = options(ctx)
    states, _ = _survey(opts, apps or [])
    statuses = [state.status() for state in states]
    if opts.json:
        emit_json([status.model_dump(mode="json") for status in statuses])
    else:
        table = Table("app", "image", "upstream newest", "mirrored newest", "missing", "status")
        for status in statuses:
            table.add_row(
                status.app,
                status.image,
                status.upstream[0] if status.upstream else "-",
                status.mirrored[0] if status.mirrored else "-",
                ", ".join(status.missing) or "-",
                f"[{_STATUS_STYLE[status.status]}]{status.status}[/]",
            )
        stdout.print(table)
        held = {(s.app, h.version, h.reason) for s in statuses for h in s.held_back}
        for app_name, version, reason in sorted(held):
            stdout.print(f"{app_name} {version} held back: {reason}", highlight=False)
    _report_errors(statuses)


@app.command()
@handle_errors
def plan(
    ctx: typer.Context,
    apps: list[str] = typer.Argument(None, help="Apps to plan (default: every app)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the plan JSON here (default: stdout)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Plan every candidate version, even those already tagged."
    ),
) -> None:
    """Write the jobs (one per missing image, version and platform) as plan JSON for CI."""
    opts = options(ctx)
    states, catalog = _survey(opts, apps or [])
    the_plan = make_plan(catalog, states, force=force)
    if output is None:
        emit_json(the_plan.model_dump(mode="json"))
    else:
        the_plan.write(output)
        versions = {(job.app, job.image, job.version) for job in the_plan.jobs}
        stderr.print(
            f"{len(the_plan.jobs)} jobs ({len(versions)} image versions) written to {output}",
            highlight=False,
        )
    _report_errors([state.status() for state in states])


@app.command()
@handle_errors
def schema(
    mirror: bool = typer.Option(
        False, "--mirror", help="The schema of mirror.yaml instead of apps/<app>/app.yaml."
    ),
    markdown: bool = typer.Option(
        False, "--markdown", help="The catalog reference (both files) as Markdown instead."
    ),
) -> None:
    """Print the JSON Schema of app files (or of mirror.yaml), for editors and validators."""
    if markdown:
        from multiarch_mirror.catalog_reference import render

        sys.stdout.write(render())
        return
    emit_json(mirror_schema() if mirror else app_schema())


def _catalog_platforms(catalog: Catalog | None) -> list[Platform]:
    """Every platform some image of the catalog is built for (the defaults without one)."""
    if catalog is None:
        return [Platform.parse(text) for text in DEFAULT_PLATFORMS]
    found = {
        str(p): p
        for app in catalog.apps.values()
        for image in app.images
        for p in catalog.platforms(image)
    }
    return list(found.values()) or list(catalog.mirror.platforms)


@app.command()
@handle_errors
def doctor(
    ctx: typer.Context,
    setup_qemu: bool = typer.Option(
        False,
        "--setup-qemu",
        help="Register QEMU user emulation (binfmt_misc) for foreign platforms first (root).",
    ),
    platform: list[str] = typer.Option(
        [],
        "--platform",
        help="Platform to check (repeatable; default: the catalog's platforms, else "
        "linux/amd64 and linux/arm64).",
    ),
    binfmt_dir: Path = typer.Option(BINFMT_DIR, "--binfmt-dir", hidden=True),
) -> None:
    """Check that this machine can build every platform, which builders it has, and that the
    target registry answers and accepts pushes from these credentials."""
    opts = options(ctx)
    catalog = load_catalog(opts.config) if opts.config.exists() else None
    if catalog is None:
        stderr.print(f"no {opts.config}: checking the default platforms, not the target")
    platforms = [Platform.parse(text) for text in platform] or _catalog_platforms(catalog)
    if setup_qemu:
        registered = checks.setup_qemu(platforms, binfmt_dir=binfmt_dir)
        stderr.print(
            "registered " + ", ".join(registered) if registered else "QEMU: nothing to register"
        )
    target = None
    if catalog is not None:
        # A doctor answers quickly: one retry, not a minute of backoff, on a dead registry.
        settings = dataclasses.replace(
            registry_settings(opts), retry=RetryPolicy(max_attempts=2, max_seconds=10.0)
        )

        async def probe(catalog: Catalog) -> checks.TargetCheck:
            async with RegistryClient(settings) as client:
                return await checks.check_target(catalog, client)

        target = asyncio.run(probe(catalog))
    report = checks.diagnose(platforms, binfmt_dir=binfmt_dir, target=target)
    if options(ctx).json:
        emit_json(report.model_dump(mode="json") | {"ok": report.ok})
    else:
        table = Table("platform", "buildable", "via", "problem", box=None)
        for entry in report.platforms:
            table.add_row(
                entry.platform,
                "yes" if entry.buildable else "no",
                entry.via or "-",
                entry.problem or "",
            )
        stdout.print(table)
        builders = Table("builder", "available", "version", "problem", box=None)
        for builder in report.builders:
            builders.add_row(
                builder.name,
                "yes" if builder.available else "no",
                builder.version or "-",
                builder.problem or "",
            )
        stdout.print(builders)
        if report.target is not None:
            target_table = Table("target", "repository", "reachable", "push", "problem", box=None)
            target_table.add_row(
                report.target.target,
                report.target.repository,
                "yes" if report.target.reachable else "no",
                "yes" if report.target.push else "no",
                report.target.problem or "",
            )
            stdout.print(target_table)
    if not report.ok:
        for problem in report.problems():
            complain("problem", problem)
        raise typer.Exit(1)


@app.command()
@handle_errors
def verify(
    ctx: typer.Context,
    ref: str | None = typer.Argument(
        None,
        help="Image index to verify: registry/repo:tag or oci:DIR:REF. "
        "Without it: every mirrored version of the catalog's images.",
    ),
    app_name: list[str] = typer.Option(
        [], "--app", help="Without REF: only this app's images (repeatable)."
    ),
    platform: list[str] = typer.Option(
        [],
        "--platform",
        help="Platform the index must hold (repeatable; default: the catalog's, "
        "else linux/amd64 and linux/arm64).",
    ),
    smoke: bool = typer.Option(
        False, "--smoke", help="Also run the app's smoke: command in every platform's rootfs."
    ),
    command: str | None = typer.Option(
        None, "--command", help="Smoke command to run instead (shell syntax, no shell)."
    ),
    expect: str | None = typer.Option(
        None, "--expect", help="Regex the --command output must match."
    ),
) -> None:
    """Check a published index: every platform present, configs match, blobs exist, and
    optionally a smoke command answers on each platform (foreign ones under QEMU)."""
    from multiarch_mirror.config import load_catalog
    from multiarch_mirror.verify import (
        VerifyReport,
        catalog_targets,
        target_for_reference,
        verify_targets,
    )

    opts = options(ctx)
    platforms = [Platform.parse(text) for text in platform]
    if expect and not command:
        raise UsageError("--expect needs --command (the app's smoke: block has its own expect)")
    if ref is None and (command or platforms):
        raise UsageError("--command and --platform apply to one REF; name the image to verify")
    catalog = load_catalog(opts.config) if ref is None or opts.config.exists() else None

    async def run() -> list[VerifyReport]:
        async with _stores(opts) as stores:
            if ref is not None:
                targets = [
                    target_for_reference(
                        ref,
                        catalog=catalog,
                        platforms=platforms,
                        smoke=smoke,
                        command=shlex.split(command) if command else (),
                        expect=expect,
                    )
                ]
            else:
                assert catalog is not None
                targets = await catalog_targets(
                    catalog, catalog.select(app_name), stores.open, smoke=smoke
                )
            return await verify_targets(targets, stores.open)

    reports = asyncio.run(run())
    if opts.json:
        emit_json([report.model_dump(mode="json") for report in reports])
    else:
        if not reports:
            stderr.print("nothing to verify: no mirrored versions found")
        for report in reports:
            verdict = "[green]ok[/]" if report.ok else "[bold red]FAILED[/]"
            stdout.print(
                f"[bold]{escape(report.reference)}[/]  {report.digest or '-'}  {verdict}",
                highlight=False,
                soft_wrap=True,
            )
            for entry in report.platforms:
                mark = "ok" if entry.ok else "FAILED"
                answer = f"  smoke: {entry.smoke_output}" if entry.smoke_output else ""
                stdout.print(
                    f"  {entry.platform:<14}{mark:<8}{entry.digest or '-'}{escape(answer)}",
                    highlight=False,
                    soft_wrap=True,
                )
    failures = [f"{r.reference}: {line}" for r in reports for line in r.failures()]
    for line in failures:
        complain("failed", line)
    if failures:
        raise typer.Exit(1)


def _sync_options(
    opts: GlobalOptions,
    *,
    storage_driver: str | None,
    binfmt_dir: Path,
    verify: bool = True,
    force: bool = False,
    dry_run: bool = False,
    apps_at_once: int = 2,
    builds_at_once: int = 2,
) -> SyncOptions:
    return SyncOptions(
        dry_run=dry_run,
        force=force,
        apps_at_once=apps_at_once,
        builds_at_once=builds_at_once,
        verify=verify,
        storage_driver=storage_driver,
        insecure_registries=tuple(opts.insecure_registries),
        binfmt_dir=binfmt_dir,
    )


_STORAGE_DRIVER = typer.Option(
    None,
    "--storage-driver",
    help="buildah storage driver: vfs or overlay (default: what the state directory's storage "
    "already uses, else vfs).",
)
_BINFMT_DIR = typer.Option(BINFMT_DIR, "--binfmt-dir", hidden=True)
_NO_VERIFY = typer.Option(
    False, "--no-verify", help="Tag without verifying the index first (platforms, blobs, smoke)."
)


def _show_progress() -> None:
    """Builds take minutes: say on stderr what starts and what gets published, even without -v
    (build output itself stays behind -v)."""
    for name in ("multiarch_mirror.sync", "multiarch_mirror.publish"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)


def _render_report(opts: GlobalOptions, report: SyncReport, report_file: Path | None) -> None:
    if report_file is not None:
        report.write(report_file)
    if opts.json:
        emit_json(report.model_dump(mode="json"))
    else:
        render_report(report, stdout)
    for failure in report.failures():
        complain("failed", failure)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@handle_errors
def sync(
    ctx: typer.Context,
    apps: list[str] = typer.Argument(None, help="Apps to sync (default: every app)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan; build, push and tag nothing."
    ),
    force: bool = typer.Option(
        False, "--force", help="Rebuild every candidate version and overwrite its version tag."
    ),
    report_file: Path | None = typer.Option(
        None, "--report", help="Write the JSON report (per app: builds, indexes, tags) here."
    ),
    apps_at_once: int = typer.Option(2, "--apps-at-once", min=1, help="Apps in flight at once."),
    builds_at_once: int = typer.Option(2, "--builds-at-once", min=1, help="Builds at once."),
    no_verify: bool = _NO_VERIFY,
    storage_driver: str | None = _STORAGE_DRIVER,
    binfmt_dir: Path = _BINFMT_DIR,
) -> None:
    """Detect, plan, build, publish and report in one go: mirror what the target lacks."""
    _show_progress()
    opts = options(ctx)
    catalog = load_catalog(opts.config)
    sync_options = _sync_options(
        opts,
        storage_driver=storage_driver,
        binfmt_dir=binfmt_dir,
        verify=not no_verify,
        force=force,
        dry_run=dry_run,
        apps_at_once=apps_at_once,
        builds_at_once=builds_at_once,
    )

    async def run() -> tuple[SyncReport, Plan]:
        async with RegistryClient(registry_settings(opts)) as client:
            return await run_sync(catalog, apps or [], client=client, options=sync_options)

    if dry_run:
        report, the_plan = asyncio.run(run())
        if not opts.json:
            for job in the_plan.jobs:
                stdout.print(
                    f"would build {job.app}/{job.image} {job.version} {job.platform}"
                    + (" (latest)" if job.is_latest else ""),
                    highlight=False,
                )
    else:
        with sync_lock(catalog.state_dir):
            report, _ = asyncio.run(run())
    _render_report(opts, report, report_file)


@app.command()
@handle_errors
def build(
    ctx: typer.Context,
    plan_file: Path = typer.Option(..., "--plan", help="Plan JSON written by `plan -o`."),
    job: str = typer.Option(..., "--job", help="The id of the job to build."),
    digests: Path = typer.Option(
        ..., "--digests", help="Directory for the job's digest file (<job id>.json)."
    ),
    storage_driver: str | None = _STORAGE_DRIVER,
    binfmt_dir: Path = _BINFMT_DIR,
) -> None:
    """Build one plan job and push it by digest (no tag): one CI matrix cell."""
    _show_progress()
    opts = options(ctx)
    catalog = load_catalog(opts.config)
    the_plan = Plan.read(plan_file)
    sync_options = _sync_options(opts, storage_driver=storage_driver, binfmt_dir=binfmt_dir)

    async def run() -> Path:
        async with RegistryClient(registry_settings(opts)) as client:
            return await build_stage(
                catalog, the_plan, job, digests, client=client, options=sync_options
            )

    written = asyncio.run(run())
    if opts.json:
        emit_json(json.loads(written.read_text()))
    else:
        stderr.print(f"{job}: digest written to {written}", highlight=False)


@app.command()
@handle_errors
def publish(
    ctx: typer.Context,
    plan_file: Path = typer.Option(..., "--plan", help="Plan JSON written by `plan -o`."),
    digests: Path = typer.Option(
        ..., "--digests", help="Directory of the build jobs' digest files."
    ),
    image: list[str] = typer.Option(
        [], "--image", help="Publish only this image (repeatable), e.g. a base before its users."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing version tags."),
    report_file: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
    no_verify: bool = _NO_VERIFY,
    binfmt_dir: Path = _BINFMT_DIR,
) -> None:
    """Write each (image, version)'s index from the digest files, then tag it."""
    _show_progress()
    opts = options(ctx)
    catalog = load_catalog(opts.config)
    the_plan = Plan.read(plan_file)
    sync_options = _sync_options(
        opts, storage_driver=None, binfmt_dir=binfmt_dir, verify=not no_verify, force=force
    )

    async def run() -> SyncReport:
        async with RegistryClient(registry_settings(opts)) as client:
            return await publish_stage(
                catalog, the_plan, digests, client=client, options=sync_options, images=image
            )

    _render_report(opts, asyncio.run(run()), report_file)


@app.command()
@handle_errors
def demo(
    ctx: typer.Context,
    target: str = typer.Option(
        "oci:./mirror-out",
        "--target",
        help="Where to mirror: an OCI layout (oci:DIR) or a registry namespace (host:port/path).",
    ),
    state_dir: Path = typer.Option(
        Path(".mirror-state"), "--state-dir", help="Caches, locks and the demo's working catalog."
    ),
) -> None:
    """Mirror a bundled demo app from a local upstream: check, sync, verify --smoke.

    Needs no registry: the default target is an OCI image layout directory.
    """
    from multiarch_mirror.config import validate_target
    from multiarch_mirror.demo import run_demo

    opts = options(ctx)
    try:
        validate_target(target)
    except ValueError as exc:
        raise UsageError(f"--target: {exc}") from None
    global_args = [f"--insecure-registry={host}" for host in opts.insecure_registries]
    if opts.ca_file:
        global_args.append(f"--ca-file={opts.ca_file}")
    global_args += ["-v"] * opts.verbose
    code = run_demo(
        target=target,
        state_dir=state_dir,
        say=lambda text: stderr.print(text, highlight=False, soft_wrap=True),
        global_args=global_args,
    )
    if code:
        raise typer.Exit(code)


_METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH"}


def _plain_metavars(command: Any, settings: dict[str, Any] | None = None) -> None:
    """Help shows `TEXT`, `PATH`, `INTEGER` for values and nothing for flags, as users expect,
    rather than Python type names such as `<bool>` and `<list[str]>`."""
    for param in command.params:
        if param.metavar is not None:
            continue
        bare = param.bare_type().removeprefix("list[").removesuffix("]")
        if isinstance(param, typer.core.TyperOption):
            flag = param.is_flag or param.count or bare == "bool"
            param.metavar = "" if flag else _METAVARS.get(bare, bare.upper())
        elif isinstance(param, typer.core.TyperArgument):
            # The argument's name says what it is; its Python type says nothing more.
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010
    settings = {**(settings or {}), **command.context_settings}
    context = command.context_class(command, **settings)
    help_option = command.get_help_option(context)
    if help_option is not None:
        help_option.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub, settings)


def main() -> None:
    command = typer.main.get_command(app)
    _plain_metavars(command)
    command(prog_name="multiarch-mirror")
