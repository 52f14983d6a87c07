"""Templates: placeholders are checked when a file loads and rendered per version and platform."""

from __future__ import annotations

import pytest

from multiarch_mirror.template import TemplateContext, TemplateError, parse_template


def test_render_fills_version_parts_and_platform() -> None:
    context = TemplateContext.for_("10.5.2", "linux/arm64")
    rendered = context.render(
        "{version} {major}.{minor}.{patch} {os} {arch} [{variant}] {platform}"
    )
    assert rendered == "10.5.2 10.5.2 linux arm64 [] linux/arm64"


def test_short_versions_have_zero_patch() -> None:
    assert TemplateContext.for_("1.2", "linux/arm/v7").render("{patch} {variant}") == "0 v7"


def test_double_braces_are_literal() -> None:
    assert TemplateContext.for_("1.0", "linux/amd64").render("{{x}}-{version}") == "{x}-1.0"


def test_unknown_placeholder_is_refused_with_the_known_ones() -> None:
    with pytest.raises(TemplateError, match=r"unknown placeholder \{arc\}.*\{arch\}"):
        parse_template("app-{arc}")


def test_format_specs_are_refused() -> None:
    with pytest.raises(TemplateError, match=r"unknown placeholder \{version:>10\}"):
        parse_template("{version:>10}")


def test_unbalanced_brace_is_refused() -> None:
    with pytest.raises(TemplateError, match="malformed template"):
        parse_template("{version")


def test_image_placeholder_needs_a_name_and_renders_the_reference() -> None:
    assert parse_template("{image:base}").images == {"base"}
    with pytest.raises(TemplateError, match=r"write \{image:NAME\}"):
        parse_template("{image}")
    context = TemplateContext.for_("1.0", "linux/amd64", images={"base": "r/base:1.0"})
    assert context.render("FROM {image:base}") == "FROM r/base:1.0"
