"""Templates in app files: `{version}`, `{arch}`, … checked when the file loads, rendered per job.

Syntax is Python's `str.format` without conversions or attribute access: `{name}` is replaced,
`{{` and `}}` are literal braces. `{image:NAME}` is the reference of this app's own mirrored
image NAME at the same version (e.g. `ghcr.io/acme/mirror/base-outline:0.80.2`); NAME must be
listed in the image's `depends_on`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from multiarch_mirror.errors import ConfigError
from multiarch_mirror.oci.media import Platform
from multiarch_mirror.versions.policy import Version

PLACEHOLDERS = ("version", "major", "minor", "patch", "os", "arch", "variant", "platform")
"""Every placeholder a template may use, besides `{image:NAME}`."""

IMAGE_PLACEHOLDER = "image"


class TemplateError(ConfigError):
    """A template names an unknown placeholder or is malformed."""


@dataclass(frozen=True)
class TemplateFields:
    """What a template refers to: the plain placeholders and the `{image:NAME}` names."""

    placeholders: frozenset[str]
    images: frozenset[str]


def parse_template(template: str) -> TemplateFields:
    """Check a template's syntax and placeholders; raise TemplateError naming the culprit."""
    placeholders: set[str] = set()
    images: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"malformed template {template!r}: {exc} (write {{{{ for a literal {{)"
        ) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == IMAGE_PLACEHOLDER:
            if not spec or conversion:
                raise TemplateError(
                    f"{{image}} needs an image name: write {{image:NAME}} in {template!r}"
                )
            images.add(spec)
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            shown = (
                "{"
                + name
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            raise TemplateError(
                f"unknown placeholder {shown} in {template!r}; known: "
                + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                + ", {image:NAME}"
            )
        placeholders.add(name)
    return TemplateFields(frozenset(placeholders), frozenset(images))


@dataclass(frozen=True)
class TemplateContext:
    """The values of every placeholder for one job: a version on a platform."""

    version: str
    major: str
    minor: str
    patch: str
    os: str
    arch: str
    variant: str
    platform: str
    images: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_(
        cls,
        version: Version | str,
        platform: Platform | str,
        *,
        images: Mapping[str, str] | None = None,
    ) -> TemplateContext:
        """Context for `version` on `platform`; `images` maps image names to references."""
        parsed = version if isinstance(version, Version) else Version.parse(version)
        plat = platform if isinstance(platform, Platform) else Platform.parse(platform)
        return cls(
            version=parsed.text,
            major=str(parsed.major),
            minor=str(parsed.minor),
            patch=str(parsed.patch),
            os=plat.os,
            arch=plat.architecture,
            variant=plat.variant or "",
            platform=str(plat),
            images=dict(images or {}),
        )

    def render(self, template: str) -> str:
        """The template with every placeholder replaced; `{image:NAME}` must be known here."""
        out: list[str] = []
        for literal, name, spec, _ in string.Formatter().parse(template):
            out.append(literal)
            if name is None:
                continue
            if name == IMAGE_PLACEHOLDER:
                if not spec or spec not in self.images:
                    raise TemplateError(
                        f"{{image:{spec}}} in {template!r}: no such image of this app"
                    )
                out.append(self.images[spec])
            elif name in PLACEHOLDERS:
                out.append(str(getattr(self, name)))
            else:
                raise TemplateError(f"unknown placeholder {{{name}}} in {template!r}")
        return "".join(out)
