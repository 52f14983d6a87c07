"""Dockerfile recipes made concrete for one job: the upstream source at its release ref,
patched, with build args templated for the version and platform, and a fingerprint.

Upstream repositories are fetched shallowly into one bare repository per URL under the
state directory, so a second build of the same release fetches nothing new.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, Protocol

from multiarch_mirror.build import BuildError, BuildJob, Renderer


class RecipeError(BuildError):
    """The recipe does not fit the upstream source (missing ref, file, or a stale patch)."""


class PatchSpec(Protocol):
    """A regex substitution in one file of the upstream source (`re.sub`; `(?m)` for `^`/`$`
    per line)."""

    @property
    def file(self) -> str: ...
    @property
    def regex(self) -> str | re.Pattern[str]: ...
    @property
    def replace(self) -> str: ...


class DockerfileSpec(Protocol):
    """What a `kind: dockerfile` recipe says; templates are rendered per job."""

    @property
    def git(self) -> str: ...
    @property
    def ref(self) -> str: ...
    @property
    def context(self) -> str: ...
    @property
    def dockerfile(self) -> str | None: ...
    @property
    def target(self) -> str | None: ...
    @property
    def build_args(self) -> Mapping[str, str]: ...
    @property
    def patches(self) -> Sequence[PatchSpec]: ...


class Patch(NamedTuple):
    """A patch with its replacement rendered for one job."""

    file: str
    regex: re.Pattern[str]
    replace: str


@dataclass(frozen=True)
class Revision:
    """A commit of an upstream repository, and the ref it was fetched by."""

    url: str
    ref: str
    commit: str
    committed: datetime


@dataclass(frozen=True)
class PreparedRecipe:
    """A recipe resolved for one job: paths are inside a patched export of the source."""

    revision: Revision
    root: Path
    context: Path
    dockerfile: Path
    target: str | None
    build_args: dict[str, str]
    fingerprint: str


def _git(args: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # Never wait for a password on a terminal: an unreachable repository must fail, not hang.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, errors="replace", env=env
    )


def _fetchable(url: str) -> str:
    """A local path becomes a file:// URL, since git ignores `--depth` for plain paths."""
    if "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url):
        return Path(url).expanduser().resolve().as_uri()
    return url


def _has(repo: Path, commit: str, path: str) -> bool:
    return _git(["cat-file", "-e", f"{commit}:{path}"], cwd=repo).returncode == 0


class SourceCache:
    """Shallow fetches of upstream git repositories, one bare repository per URL."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def repository(self, url: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
        return self.root / f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.git"

    @contextmanager
    def _locked(self, repo: Path) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with repo.with_suffix(".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def fetch(self, url: str, ref: str, *, where: str) -> Revision:
        """Fetch `ref` (a tag or branch) of `url` at depth 1; `where` names the recipe."""
        repo = self.repository(url)
        with self._locked(repo):
            if not (repo / "HEAD").exists():
                result = _git(["init", "--quiet", "--bare", str(repo)])
                if result.returncode != 0:
                    raise RecipeError(f"{where}: cannot create {repo}: {result.stderr.strip()}")
            result = _git(
                ["fetch", "--quiet", "--depth", "1", "--no-tags", _fetchable(url), ref],
                cwd=repo,
            )
            if result.returncode != 0:
                detail = result.stderr.strip().splitlines()[-1:] or ["git fetch failed"]
                raise RecipeError(
                    f"{where}: cannot fetch ref {ref!r} from {url}: {detail[0]}; check that the "
                    "repository is reachable and that `recipe.ref` names an existing tag or "
                    "branch for this version"
                )
            shown = _git(["log", "-1", "--format=%H %ct", "FETCH_HEAD"], cwd=repo)
            commit, timestamp = shown.stdout.split()
            # A ref per commit keeps fetched commits from being garbage-collected.
            _git(["update-ref", f"refs/fetched/{commit}", commit], cwd=repo)
        return Revision(
            url=url, ref=ref, commit=commit, committed=datetime.fromtimestamp(int(timestamp), UTC)
        )

    def export(self, revision: Revision, paths: Sequence[str], dest: Path) -> None:
        """Write the files of `revision` under `paths` (repo-relative) into `dest`.

        Paths the revision lacks are skipped: the caller reports them with their meaning.
        """
        repo = self.repository(revision.url)
        present = (
            path.strip("/") or "."
            for path in paths
            if path.strip("/") in ("", ".") or _has(repo, revision.commit, path.strip("/"))
        )
        wanted = sorted(set(present))
        if not wanted:
            return
        problem = ""
        with subprocess.Popen(
            ["git", "archive", "--format=tar", revision.commit, "--", *wanted],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    tar.extractall(dest, filter="tar")
            except (tarfile.TarError, OSError) as exc:
                problem = str(exc)
            complaint = proc.stderr.read().decode(errors="replace").strip()
        if proc.returncode != 0:
            problem = complaint or problem or f"git archive exited {proc.returncode}"
        if problem:
            raise RecipeError(
                f"cannot export {', '.join(wanted)} at {revision.ref} ({revision.commit[:12]}) "
                f"of {revision.url}: {problem}"
            )


def _inside(root: Path, relative: str, *, what: str, where: str) -> Path:
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise RecipeError(f"{where}: {what} {relative!r} points outside the repository")
    return path


def apply_patches(
    root: Path, patches: Sequence[PatchSpec], *, revision: Revision, where: str
) -> None:
    """Apply regex substitutions to files under `root`; one that matches nothing is an error."""
    at = f"{revision.ref} ({revision.commit[:12]})"
    for patch in patches:
        file, regex = patch.file, re.compile(patch.regex)
        path = _inside(root, file, what="patch file", where=where)
        if not path.is_file():
            raise RecipeError(
                f"{where}: patch file {file!r} does not exist at {at}; the upstream layout "
                "changed: update or remove this patch in the app file"
            )
        text = path.read_text()
        try:
            patched, count = regex.subn(patch.replace, text)
        except (re.error, IndexError) as exc:
            raise RecipeError(
                f"{where}: patch {regex.pattern!r} for {file} is invalid: {exc}"
            ) from None
        if count == 0:
            raise RecipeError(
                f"{where}: patch regex {regex.pattern!r} matches nothing in {file} at {at}; upstream "
                "changed under us: update or remove this patch in the app file"
            )
        path.write_text(patched)


def fingerprint(document: Mapping[str, object]) -> str:
    """sha256 of the canonical JSON of the resolved recipe inputs."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


@contextmanager
def prepare(
    spec: DockerfileSpec,
    job: BuildJob,
    render: Renderer,
    *,
    cache: SourceCache,
    workdir: Path,
) -> Iterator[PreparedRecipe]:
    """Fetch, export and patch the source for `job`; the export is removed on exit."""
    where = f"{job.app}/{job.image}"
    ref = render(spec.ref, job)
    context = spec.context or "."
    dockerfile = spec.dockerfile or f"{context.rstrip('/')}/Dockerfile"
    revision = cache.fetch(spec.git, ref, where=where)
    patches = [Patch(p.file, re.compile(p.regex), render(p.replace, job)) for p in spec.patches]
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / f"{job.id}-{revision.commit[:12]}".replace("/", "_")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    try:
        cache.export(revision, [context, dockerfile, *(patch.file for patch in patches)], root)
        root = root.resolve()
        apply_patches(root, patches, revision=revision, where=where)
        context_dir = _inside(root, context, what="context", where=where)
        dockerfile_path = _inside(root, dockerfile, what="dockerfile", where=where)
        if not dockerfile_path.is_file():
            raise RecipeError(
                f"{where}: Dockerfile {dockerfile!r} does not exist at {ref} "
                f"({revision.commit[:12]}); fix `recipe.dockerfile`/`recipe.context` in the app file"
            )
        build_args = {name: render(value, job) for name, value in spec.build_args.items()}
        document: dict[str, object] = {
            "git": spec.git,
            "commit": revision.commit,
            "context": context,
            "dockerfile": dockerfile,
            "target": spec.target,
            "build_args": build_args,
            "patches": [[p.file, p.regex.pattern, p.replace] for p in patches],
            "platform": str(job.platform),
        }
        yield PreparedRecipe(
            revision=revision,
            root=root,
            context=context_dir,
            dockerfile=dockerfile_path,
            target=spec.target,
            build_args=build_args,
            fingerprint=fingerprint(document),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
