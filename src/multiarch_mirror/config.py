"""`mirror.yaml` and `apps/<app>/app.yaml` as typed models, their loading and their JSON Schema.

Relative paths in `mirror.yaml` (`apps_dir`, `state_dir`, an `oci:DIR` target) are relative to
the directory holding `mirror.yaml`. Every error names the file and the key path.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from multiarch_mirror.errors import ConfigError, UsageError
from multiarch_mirror.oci.media import Platform
from multiarch_mirror.oci.reference import (
    ImageLocation,
    LayoutReference,
    Reference,
)
from multiarch_mirror.template import (
    PLACEHOLDERS,
    TemplateContext,
    TemplateError,
    parse_template,
)
from multiarch_mirror.versions.policy import (
    DEFAULT_TAG_PATTERN,
    Version,
    VersionError,
    VersionPolicy,
)

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
APP_FILE = "app.yaml"

_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_SHA256_RE = re.compile(r"^[a-f0-9]{64}$")
_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")
_TARGET_HELP = (
    "a target is a registry namespace such as `ghcr.io/acme/mirror` or "
    "`localhost:5000/mirror` (no tag, no digest, no scheme), or an OCI image layout "
    "directory such as `oci:./mirror-out`"
)


# --- field types ---------------------------------------------------------------------------


def _platform(value: object) -> Platform:
    if isinstance(value, Platform):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a platform string such as linux/arm64")
    try:
        return Platform.parse(value)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


PlatformName = Annotated[
    Platform,
    PlainValidator(_platform),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "pattern": r"^[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?$"}),
]
"""A platform written `os/arch[/variant]`."""


def _regex(value: object) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a regular expression (a string)")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None


Regex = Annotated[
    re.Pattern[str],
    PlainValidator(_regex),
    PlainSerializer(lambda p: p.pattern),
    WithJsonSchema({"type": "string", "format": "regex"}),
]


def _tag_pattern(pattern: re.Pattern[str]) -> re.Pattern[str]:
    if "version" not in pattern.groupindex:
        raise ValueError(
            f"{pattern.pattern!r} has no named group `version`: write e.g. "
            r"'^release-(?P<version>\d+\.\d+\.\d+)$'"
        )
    return pattern


TagPattern = Annotated[Regex, AfterValidator(_tag_pattern)]


def _check_template(value: str) -> str:
    try:
        parse_template(value)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    return value


Template = Annotated[
    str,
    AfterValidator(_check_template),
    WithJsonSchema(
        {
            "type": "string",
            "description": "A template: "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            + ", {image:NAME}; {{ and }} for literal braces",
        }
    ),
]


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: lowercase letters and digits, separated by "
            "'.', '_' or '-' (it becomes a repository name)"
        )
    return value


Name = Annotated[str, AfterValidator(_name)]


def _relative_path(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r} must be a path relative to the repository root, inside it")
    return str(path)


RelativePath = Annotated[str, AfterValidator(_relative_path)]


def _image_path(value: str) -> str:
    if not value.startswith("/") or ".." in PurePosixPath(value).parts:
        raise ValueError(f"{value!r} must be an absolute path inside the image, e.g. /opt/app")
    return value


ImagePath = Annotated[str, AfterValidator(_image_path)]


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL, e.g. https://api.github.com")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _version(value: str) -> str:
    try:
        Version.parse(value)
    except VersionError as exc:
        raise ValueError(str(exc)) from None
    return value


VersionText = Annotated[str, AfterValidator(_version)]


def _duration(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str) and value and (match := _DURATION_RE.match(value)):
        hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
        return hours * 3600 + minutes * 60 + seconds + millis / 1000
    raise ValueError(f"{value!r} is not a duration: write e.g. 30s, 1m30s, 500ms or seconds")


Duration = Annotated[
    float,
    PlainValidator(_duration),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": _DURATION_RE.pattern}, {"type": "number"}]}
    ),
]
"""A duration in seconds, written `30s`, `1m30s`, `500ms` or a number of seconds."""


def _port(value: object) -> str:
    text = str(value)
    if not re.match(r"^\d{1,5}(/(tcp|udp|sctp))?$", text):
        raise ValueError(f"{value!r} is not a port: write e.g. 8065 or 8065/tcp")
    return text if "/" in text else f"{text}/tcp"


Port = Annotated[
    str,
    PlainValidator(_port),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
]


# --- models --------------------------------------------------------------------------------


class _Strict(BaseModel):
    """Frozen, and an unknown key is an error that suggests the key that was meant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = [field.alias or name for name, field in cls.model_fields.items()]
            unknown = [str(key) for key in data if key not in known]
            if unknown:
                close = difflib.get_close_matches(unknown[0], known, n=1)
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key{hint}; expected one of: {known}",
                    {
                        "key": unknown[0],
                        "hint": f" (did you mean {close[0]!r}?)" if close else "",
                        "known": ", ".join(known),
                    },
                )
        return data


class GitlabTagGate(_Strict):
    """The tag exists in a GitLab project (any instance)."""

    base_url: HttpUrl = "https://gitlab.com"
    project: str = Field(description="Project path, e.g. framasoft/framateam/mostlymatter")
    tag: Template = Field(description="Tag template, e.g. 'v{version}-limitless'")


class Gate(_Strict):
    """A per-version condition; exactly one key. A version stays out until its gates hold."""

    url_exists: Template | None = Field(
        default=None,
        description="This URL answers 2xx; checked for every platform when it uses "
        "platform placeholders such as {arch}",
    )
    gitlab_tag: GitlabTagGate | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Gate:
        if (self.url_exists is None) == (self.gitlab_tag is None):
            raise ValueError("a gate has exactly one of the keys url_exists, gitlab_tag")
        return self


class _UpstreamBase(_Strict):
    tag_pattern: TagPattern = Field(
        default=re.compile(DEFAULT_TAG_PATTERN),
        description="Regex with a named group `version` that extracts the version from a tag",
    )
    include: Regex | None = Field(default=None, description="Keep only versions matching this")
    exclude: Regex | None = Field(default=None, description="Drop versions matching this")
    min_version: VersionText | None = None
    max_versions: int | None = Field(
        default=None, ge=1, description="Newest N stable versions kept (default: mirror.yaml)"
    )
    gates: list[Gate] = Field(default_factory=list)

    def policy(self, default_max_versions: int) -> VersionPolicy:
        return VersionPolicy(
            tag_pattern=self.tag_pattern,
            include=self.include,
            exclude=self.exclude,
            min_version=Version.parse(self.min_version) if self.min_version else None,
            max_versions=self.max_versions or default_max_versions,
        )

    def templates(self) -> Iterator[tuple[str, str]]:
        for i, gate in enumerate(self.gates):
            if gate.url_exists is not None:
                yield f"gates[{i}].url_exists", gate.url_exists
            if gate.gitlab_tag is not None:
                yield f"gates[{i}].gitlab_tag.tag", gate.gitlab_tag.tag


_GITHUB_REPO = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"


class GithubReleasesSource(_UpstreamBase):
    """Releases of a GitHub repository; drafts and releases flagged pre-release are dropped."""

    source: Literal["github-releases"]
    repo: str = Field(pattern=_GITHUB_REPO, description="owner/name")
    base_url: HttpUrl = "https://api.github.com"


class GithubTagsSource(_UpstreamBase):
    """Tags of a GitHub repository."""

    source: Literal["github-tags"]
    repo: str = Field(pattern=_GITHUB_REPO, description="owner/name")
    base_url: HttpUrl = "https://api.github.com"


class GitlabTagsSource(_UpstreamBase):
    """Tags of a GitLab project, on any GitLab instance."""

    source: Literal["gitlab-tags"]
    project: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$", description="group/…/name"
    )
    base_url: HttpUrl = "https://gitlab.com"


def _repository_reference(value: str) -> str:
    try:
        ref = Reference.parse(value, default_tag=None)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    if ref.tag or ref.digest:
        raise ValueError(f"{value!r}: name a repository, without tag or digest")
    return value


RepositoryName = Annotated[str, AfterValidator(_repository_reference)]


class RegistryTagsSource(_UpstreamBase):
    """Tags of an OCI repository (a registry speaking the distribution API)."""

    source: Literal["registry-tags"]
    image: RepositoryName = Field(description="Repository, e.g. docker.io/library/nginx")


class NpmSource(_UpstreamBase):
    """Versions of an npm package (deprecated versions are dropped)."""

    source: Literal["npm"]
    package: str = Field(pattern=r"^(@[a-z0-9._~-]+/)?[a-z0-9._~-]+$")
    base_url: HttpUrl = Field(description="The npm registry's root URL")


class PypiSource(_UpstreamBase):
    """Releases of a Python package (yanked releases are dropped)."""

    source: Literal["pypi"]
    package: str = Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
    base_url: HttpUrl = Field(description="The package index's root URL (JSON API at /pypi/…)")


class RegexSource(_UpstreamBase):
    """Versions matched by a regex in the body of a URL (a download page, a JSON feed)."""

    source: Literal["regex"]
    url: HttpUrl
    regex: Regex = Field(
        description="Each match is one tag: the named group `version`, else group 1, else "
        "the whole match; then tag_pattern applies"
    )


Upstream = Annotated[
    GithubReleasesSource
    | GithubTagsSource
    | GitlabTagsSource
    | RegistryTagsSource
    | NpmSource
    | PypiSource
    | RegexSource,
    Field(discriminator="source"),
]


class Patch(_Strict):
    """A regex substitution in one file of the upstream source; matching nothing is an error."""

    file: RelativePath
    regex: Regex
    replace: Template = Field(
        description="Rendered as a template, then used as the regex replacement "
        "(\\1 or \\g<name> for groups)"
    )


class DockerfileRecipe(_Strict):
    """Build the upstream's own Dockerfile at a release ref."""

    kind: Literal["dockerfile"]
    git: str = Field(description="Any git URL or local path")
    ref: Template = Field(description="Branch or tag to build, e.g. 'v{version}'")
    context: RelativePath = "."
    dockerfile: RelativePath | None = Field(
        default=None, description="Relative to the repository root; default <context>/Dockerfile"
    )
    target: str | None = Field(default=None, description="Build stage")
    build_args: dict[str, Template] = Field(default_factory=dict)
    patches: list[Patch] = Field(default_factory=list)

    @property
    def dockerfile_path(self) -> str:
        """The Dockerfile, relative to the repository root."""
        return self.dockerfile or str(PurePosixPath(self.context) / "Dockerfile")

    def templates(self) -> Iterator[tuple[str, str]]:
        yield "ref", self.ref
        for key, value in self.build_args.items():
            yield f"build_args.{key}", value
        for i, patch in enumerate(self.patches):
            yield f"patches[{i}].replace", patch.replace


ArchiveFormat = Literal["tar.gz", "tar.xz", "tar.bz2", "zip", "file"]


def _sha256_map(value: dict[str, str]) -> dict[str, str]:
    for platform, digest in value.items():
        _platform(platform)
        if not _SHA256_RE.match(digest):
            raise ValueError(f"{platform}: {digest!r} is not 64 lowercase hex digits")
    return value


class Artifact(_Strict):
    """A per-platform upstream file, checksum-verified, unpacked into the image."""

    url: Template = Field(description="e.g. https://…/app-{version}-linux-{arch}.tar.gz")
    format: ArchiveFormat
    sha256: Annotated[dict[str, str], AfterValidator(_sha256_map)] | None = Field(
        default=None, description="Pinned checksum per platform (linux/amd64: <hex>)"
    )
    checksums_url: Template | None = Field(
        default=None, description="A checksums file in `sha256sum` format"
    )
    insecure_skip_checksum: bool = False
    strip_components: int = Field(default=0, ge=0)
    dest: ImagePath = Field(
        default="/", description="Directory to unpack into; for format `file`, the file's path"
    )
    mode: int | None = Field(default=None, ge=0, le=0o7777, description="For format `file`")

    @model_validator(mode="after")
    def _checksum(self) -> Artifact:
        if self.sha256 is None and self.checksums_url is None and not self.insecure_skip_checksum:
            raise ValueError(
                "an artifact needs `sha256` (per platform) or `checksums_url`; "
                "set `insecure_skip_checksum: true` only if upstream publishes no checksum"
            )
        return self


class InlineFile(_Strict):
    """A small file written into the image as-is (not templated: shell `${VAR}` stays)."""

    path: ImagePath
    content: str
    mode: int = Field(default=0o644, ge=0, le=0o7777)


class Healthcheck(_Strict):
    test: list[str] = Field(description='e.g. ["CMD", "curl", "-f", "http://localhost/"]')
    interval: Duration | None = None
    timeout: Duration | None = None
    start_period: Duration | None = None
    retries: int | None = Field(default=None, ge=0)


class ConfigOverrides(_Strict):
    """Image config set on top of the base image's."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, Template] = Field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    exposed_ports: list[Port] = Field(default_factory=list)
    volumes: list[ImagePath] = Field(default_factory=list)
    labels: dict[str, Template] = Field(default_factory=dict)
    stop_signal: str | None = None
    healthcheck: Healthcheck | None = None


class AssembleRecipe(_Strict):
    """Put the upstream's per-arch release files onto a base image: no daemon, no emulation."""

    kind: Literal["assemble"]
    base: Template = Field(description="Base image reference (templated), or `scratch`")
    artifacts: list[Artifact] = Field(default_factory=list)
    files: list[InlineFile] = Field(default_factory=list)
    directories: list[ImagePath] = Field(
        default_factory=list,
        description="Empty directories owned by uid:gid, such as volume mount points",
    )
    uid: int = Field(default=0, ge=0)
    gid: int = Field(default=0, ge=0)
    setuid: Literal["refuse", "drop", "keep"] = Field(
        default="refuse",
        description="setuid/setgid bits in artifacts or files: refuse the entry, drop the bits, or keep them",
    )
    config: ConfigOverrides = Field(default_factory=ConfigOverrides)

    def templates(self) -> Iterator[tuple[str, str]]:
        yield "base", self.base
        for i, artifact in enumerate(self.artifacts):
            yield f"artifacts[{i}].url", artifact.url
            if artifact.checksums_url is not None:
                yield f"artifacts[{i}].checksums_url", artifact.checksums_url
        for key, value in self.config.env.items():
            yield f"config.env.{key}", value
        for key, value in self.config.labels.items():
            yield f"config.labels.{key}", value


Recipe = Annotated[DockerfileRecipe | AssembleRecipe, Field(discriminator="kind")]


class Smoke(_Strict):
    """A command run inside each platform's root filesystem; its output must match `expect`."""

    command: list[Template] = Field(min_length=1)
    expect: Template = Field(description="Regex searched in the output, templated")


class ImageSpec(_Strict):
    """One image of an app: the target repository `<target>/<name>`."""

    name: Name
    depends_on: list[str] = Field(
        default_factory=list, description="Images of this app built first, for the same version"
    )
    platforms: list[PlatformName] | None = Field(
        default=None, description="Override mirror.yaml's platforms"
    )
    recipe: Recipe
    alternatives: dict[str, Recipe] = Field(
        default_factory=dict, description="Other recipes for this image, selectable by name"
    )
    smoke: Smoke | None = None

    @model_validator(mode="after")
    def _image_placeholders(self) -> ImageSpec:
        recipes = [("recipe", self.recipe)] + [
            (f"alternatives.{key}", recipe) for key, recipe in self.alternatives.items()
        ]
        for prefix, recipe in recipes:
            for path, template in recipe.templates():
                for name in sorted(parse_template(template).images - set(self.depends_on)):
                    raise ValueError(
                        f"{prefix}.{path}: {{image:{name}}} refers to image {name!r}, which is "
                        f"not in this image's depends_on ({self.depends_on or 'empty'})"
                    )
        if self.smoke is not None:
            images = {name: f"registry.invalid/{name}:1.2.3" for name in self.depends_on}
            sample = TemplateContext.for_("1.2.3", "linux/amd64", images=images)
            try:
                re.compile(sample.render(self.smoke.expect))
            except TemplateError as exc:
                raise ValueError(f"smoke.expect: {exc}") from None
            except re.error as exc:
                raise ValueError(f"smoke.expect: not a valid regular expression: {exc}") from None
        return self

    def recipe_named(self, name: str | None) -> DockerfileRecipe | AssembleRecipe:
        """The default recipe (None) or an alternative by name."""
        if name is None:
            return self.recipe
        if name not in self.alternatives:
            raise UsageError(
                f"image {self.name!r} has no recipe {name!r}; "
                f"alternatives: {', '.join(self.alternatives) or 'none'}"
            )
        return self.alternatives[name]


class AppConfig(_Strict):
    """`apps/<app>/app.yaml`: where versions come from and how each image is built."""

    name: Name
    description: str = ""
    upstream: Upstream
    upstream_image: RepositoryName | None = Field(
        default=None, description="The vendor's official image, if any"
    )
    images: list[ImageSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _images(self) -> AppConfig:
        names = [image.name for image in self.images]
        for i, image in enumerate(self.images):
            if names.index(image.name) != i:
                raise ValueError(f"images[{i}].name: {image.name!r} is listed twice")
            for dep in image.depends_on:
                if dep == image.name or dep not in names:
                    raise ValueError(
                        f"images[{i}].depends_on: {dep!r} is not another image of this app "
                        f"(images: {', '.join(names)})"
                    )
        self.ordered_images()
        for path, template in self.upstream.templates():
            if parse_template(template).images:
                raise ValueError(f"upstream.{path}: {{image:NAME}} is only allowed in recipes")
        return self

    def ordered_images(self) -> list[ImageSpec]:
        """Images with every dependency before its dependents (file order otherwise)."""
        by_name = {image.name: image for image in self.images}
        done: list[ImageSpec] = []
        visiting: list[str] = []

        def visit(image: ImageSpec) -> None:
            if image in done:
                return
            if image.name in visiting:
                cycle = " -> ".join([*visiting[visiting.index(image.name) :], image.name])
                raise ValueError(f"images: depends_on forms a cycle: {cycle}")
            visiting.append(image.name)
            for dep in image.depends_on:
                visit(by_name[dep])
            visiting.pop()
            done.append(image)

        for image in self.images:
            visit(image)
        return done

    def image(self, name: str) -> ImageSpec:
        for image in self.images:
            if image.name == name:
                return image
        raise UsageError(f"app {self.name!r} has no image {name!r}")


def validate_target(value: str) -> str:
    if value.startswith("oci:"):
        if value[len("oci:") :].strip() == "" or ":" in value[len("oci:") :]:
            raise ValueError(f"{value!r} is not a target: {_TARGET_HELP}")
        return value
    try:
        probe = Reference.parse(f"{value}/probe", default_tag=None)
    except UsageError:
        raise ValueError(f"{value!r} is not a target: {_TARGET_HELP}") from None
    if probe.tag or probe.digest:
        raise ValueError(f"{value!r} is not a target: {_TARGET_HELP}")
    return value


class MirrorConfig(_Strict):
    """`mirror.yaml`: where images go and what the catalog defaults are."""

    target: Annotated[str, AfterValidator(validate_target)] = Field(
        description="Registry namespace (ghcr.io/acme/mirror) or OCI layout (oci:./mirror-out)"
    )
    platforms: list[PlatformName] = Field(
        default_factory=lambda: [Platform.parse(p) for p in DEFAULT_PLATFORMS],
        min_length=1,
        json_schema_extra={"default": list(DEFAULT_PLATFORMS)},
    )
    max_versions: int = Field(default=10, ge=1)
    apps_dir: str = "apps"
    state_dir: str = ".mirror-state"
    recipes: dict[str, str] = Field(
        default_factory=dict,
        description="Build an image with one of its `alternatives` (IMAGE: NAME, e.g. "
        "`mattermost: assemble`) instead of its `recipe`",
    )


# --- resolved view -------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetRepository:
    """Where one image is mirrored: `<target>/<name>` in a registry, or a layout + namespace.

    For a layout target every image lives in the one layout directory under ref names
    `NAME:TAG` (`namespace` = NAME); `str()` is then `oci:DIR:NAME`, as `tags` takes it.
    """

    location: ImageLocation
    namespace: str | None = None

    def reference(self, tag: str) -> str:
        """A reference to `tag` here: `ghcr.io/acme/mirror/app:1.0` or `oci:DIR:app:1.0`."""
        if isinstance(self.location, LayoutReference):
            return f"oci:{self.location.path}:{self.namespace}:{tag}"
        return str(self.location.with_tag(tag))

    def __str__(self) -> str:
        if isinstance(self.location, LayoutReference):
            return f"oci:{self.location.path}:{self.namespace}"
        return str(self.location)


@dataclass(frozen=True)
class Catalog:
    """A loaded `mirror.yaml` with its apps, and the paths they resolve to."""

    config_path: Path
    mirror: MirrorConfig
    apps: Mapping[str, AppConfig]

    @property
    def root(self) -> Path:
        return self.config_path.parent

    @property
    def apps_dir(self) -> Path:
        return self.root / self.mirror.apps_dir

    @property
    def state_dir(self) -> Path:
        return self.root / self.mirror.state_dir

    def select(self, names: Sequence[str] = ()) -> list[AppConfig]:
        """The named apps (all when none), in name order; an unknown name is a usage error."""
        unknown = [name for name in names if name not in self.apps]
        if unknown:
            raise UsageError(
                f"no app {unknown[0]!r} in {_shown(self.apps_dir)} "
                f"(apps: {', '.join(self.apps) or 'none'})"
            )
        return [self.apps[name] for name in sorted(set(names) or self.apps)]

    def repository(self, image: str) -> TargetRepository:
        target = self.mirror.target
        if target.startswith("oci:"):
            path = (self.root / target[len("oci:") :]).resolve()
            return TargetRepository(LayoutReference(str(path)), namespace=image)
        return TargetRepository(Reference.parse(f"{target}/{image}", default_tag=None))

    def recipe(self, image: ImageSpec) -> DockerfileRecipe | AssembleRecipe:
        """The recipe this mirror builds `image` with: its own, or the alternative picked in
        `mirror.yaml`'s `recipes`."""
        return image.recipe_named(self.mirror.recipes.get(image.name))

    def platforms(self, image: ImageSpec) -> list[Platform]:
        return list(image.platforms or self.mirror.platforms)

    def policy(self, app: AppConfig) -> VersionPolicy:
        return app.upstream.policy(self.mirror.max_versions)

    def template_context(
        self, app: AppConfig, version: Version | str, platform: Platform | str
    ) -> TemplateContext:
        """Placeholders for one job; `{image:NAME}` is NAME's version tag in the target."""
        parsed = version if isinstance(version, Version) else Version.parse(version)
        images = {
            image.name: self.repository(image.name).reference(parsed.tag) for image in app.images
        }
        return TemplateContext.for_(parsed, platform, images=images)


# --- loading -------------------------------------------------------------------------------


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _loc(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# pydantic puts the discriminator's value into the path of a tagged union; users never wrote it
_UNION_TAGS = {
    "dockerfile",
    "assemble",
    "github-releases",
    "github-tags",
    "gitlab-tags",
    "registry-tags",
    "npm",
    "pypi",
    "regex",
}


def _format_error(error: Mapping[str, Any]) -> str:
    loc = list(error["loc"])
    loc = [
        part
        for i, part in enumerate(loc)
        if not (
            part in _UNION_TAGS
            and (loc[i - 1] in ("upstream", "recipe") or (i > 1 and loc[i - 2] == "alternatives"))
        )
    ]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    message = str(error["msg"])
    if kind == "unknown_key":
        loc.append(ctx["key"])
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        loc.append(str(ctx.get("discriminator", "")).strip("'"))
        if kind == "union_tag_not_found":
            message = "missing; it says which kind this is"
        else:
            expected = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
            close = difflib.get_close_matches(str(ctx.get("tag", "")), expected, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"{ctx.get('tag')!r} is not known{hint}; expected one of: " + ", ".join(
                expected
            )
    elif kind == "missing":
        message = "missing (required key)"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif kind == "model_type" or kind == "dict_type":
        message = f"expected a mapping of keys, got {type(error.get('input')).__name__}"
    path = _loc(loc)
    return f"{path}: {message}" if path else message


def _validation_error(file: Path, exc: ValidationError) -> ConfigError:
    lines = [f"{_shown(file)}: {_format_error(err)}" for err in exc.errors()]
    return ConfigError("\n".join(lines))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{_shown(path)}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{_shown(path)}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{_shown(path)}{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{_shown(path)}: expected a mapping of keys at the top level, "
            f"got {'an empty file' if data is None else type(data).__name__}"
        )
    return data


def load_mirror(path: Path) -> MirrorConfig:
    """Read and validate `mirror.yaml`."""
    if not path.exists():
        raise ConfigError(
            f"{_shown(path)}: no mirror configuration here. Create it with at least a target, "
            "e.g. `target: ghcr.io/<you>/mirror` (see examples/mirror.ghcr.yaml), "
            "or pass --config PATH"
        )
    try:
        return MirrorConfig.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise _validation_error(path, exc) from None


def load_app(path: Path) -> AppConfig:
    """Read and validate one `apps/<app>/app.yaml`; its `name` must be its directory's."""
    try:
        app = AppConfig.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise _validation_error(path, exc) from None
    if app.name != path.parent.name:
        raise ConfigError(
            f"{_shown(path)}: name: {app.name!r} differs from its directory "
            f"{path.parent.name!r}; rename one of them"
        )
    return app


def load_catalog(config_path: Path) -> Catalog:
    """Read `mirror.yaml` and every `<apps_dir>/<app>/app.yaml`."""
    mirror = load_mirror(config_path)
    catalog = Catalog(config_path=config_path, mirror=mirror, apps={})
    apps_dir = catalog.apps_dir
    if not apps_dir.is_dir():
        raise ConfigError(
            f"{_shown(config_path)}: apps_dir: directory {_shown(apps_dir)} not found; "
            "create it with one <app>/app.yaml per app, or point apps_dir elsewhere"
        )
    apps: dict[str, AppConfig] = {}
    owners: dict[str, Path] = {}
    for directory in sorted(p for p in apps_dir.iterdir() if p.is_dir()):
        if directory.name.startswith((".", "_")):
            continue
        file = directory / APP_FILE
        if not file.exists():
            raise ConfigError(f"{_shown(directory)}: no {APP_FILE} (every app directory has one)")
        app = load_app(file)
        for image in app.images:
            if image.name in owners:
                raise ConfigError(
                    f"{_shown(file)}: images: {image.name!r} is also an image of "
                    f"{_shown(owners[image.name])}; both would write <target>/{image.name}"
                )
            owners[image.name] = file
        apps[app.name] = app
    images = {image.name: image for app in apps.values() for image in app.images}
    for name, choice in mirror.recipes.items():
        if name not in images:
            raise ConfigError(
                f"{_shown(config_path)}: recipes.{name}: no image {name!r} in the catalog "
                f"(images: {', '.join(sorted(images)) or 'none'})"
            )
        try:
            images[name].recipe_named(choice)
        except UsageError as exc:
            raise ConfigError(f"{_shown(config_path)}: recipes.{name}: {exc}") from None
    return Catalog(config_path=config_path, mirror=mirror, apps=apps)


def app_schema() -> dict[str, Any]:
    """JSON Schema of `apps/<app>/app.yaml`."""
    return _schema(AppConfig, "multiarch-mirror app (apps/<app>/app.yaml)")


def mirror_schema() -> dict[str, Any]:
    """JSON Schema of `mirror.yaml`."""
    return _schema(MirrorConfig, "multiarch-mirror configuration (mirror.yaml)")


def _schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}
