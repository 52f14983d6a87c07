"""Version policy: semver precedence, stable only, filters, the newest N counted after filtering."""

from __future__ import annotations

import re

import pytest

from multiarch_mirror.versions.policy import Release, Version, VersionPolicy, tag_order


def ordered(*texts: str) -> list[str]:
    return [v.text for v in sorted(Version.parse(t) for t in texts)]


def test_numeric_parts_compare_as_numbers() -> None:
    assert ordered("10.0.0", "9.11.5", "9.2.0") == ["9.2.0", "9.11.5", "10.0.0"]


def test_missing_parts_count_as_zero_and_fourth_part_sorts_after() -> None:
    assert Version.parse("1.2") == Version.parse("1.2.0")
    assert ordered("1.2.1", "1.2.0.1", "1.2") == ["1.2", "1.2.0.1", "1.2.1"]


def test_prerelease_sorts_before_its_release_by_semver_rules() -> None:
    assert ordered("1.0.0", "1.0.0-rc.10", "1.0.0-rc.2", "1.0.0-beta") == [
        "1.0.0-beta",
        "1.0.0-rc.2",
        "1.0.0-rc.10",
        "1.0.0",
    ]


@pytest.mark.parametrize("text", ["1.2.3-rc.1", "1.2.3-beta", "1.2.3rc1", "2.0.0.dev0", "1.0a1"])
def test_suffixes_mark_prereleases(text: str) -> None:
    assert Version.parse(text).is_prerelease


def test_build_metadata_is_stable_and_tagged_with_underscore() -> None:
    version = Version.parse("1.2.3+build.7")
    assert not version.is_prerelease
    assert version.tag == "1.2.3_build.7"


def test_default_pattern_accepts_optional_v_and_skips_non_versions() -> None:
    policy = VersionPolicy()
    assert policy.version_of("v1.2.3") == Version.parse("1.2.3")
    assert policy.version_of("1.2.3") == Version.parse("1.2.3")
    assert policy.version_of("nightly") is None
    assert policy.version_of("release-1.2") is None


def test_unflagged_prerelease_is_excluded_like_a_flagged_one() -> None:
    releases = [
        Release("v2.0.0-rc.1"),
        Release("v1.9.0", flagged_prerelease=True),
        Release("v1.8.0"),
    ]
    assert [c.version.text for c in VersionPolicy().select(releases)] == ["1.8.0"]


def test_window_is_counted_after_filtering() -> None:
    releases = [Release(f"v3.0.0-rc.{i}") for i in range(10)] + [
        Release(f"v2.{i}.0") for i in range(5)
    ]
    selected = VersionPolicy(max_versions=3).select(releases)
    assert [c.version.text for c in selected] == ["2.4.0", "2.3.0", "2.2.0"]


def test_include_exclude_and_min_version_filter_versions() -> None:
    policy = VersionPolicy(
        include=re.compile(r"^1\."),
        exclude=re.compile(r"^1\.3\."),
        min_version=Version.parse("1.1"),
    )
    releases = [Release(t) for t in ["v2.0.0", "v1.3.1", "v1.2.0", "v1.1.0", "v1.0.9"]]
    assert [c.version.text for c in policy.select(releases)] == ["1.2.0", "1.1.0"]


def test_custom_tag_pattern_extracts_the_version_group() -> None:
    policy = VersionPolicy(tag_pattern=re.compile(r"^release-(?P<version>\d+\.\d+)$"))
    assert [c.version.text for c in policy.select([Release("release-4.2"), Release("4.3")])] == [
        "4.2"
    ]


def test_same_version_under_two_tags_is_kept_once() -> None:
    selected = VersionPolicy().select([Release("v1.0.0"), Release("1.0.0")])
    assert [c.release.tag for c in selected] == ["v1.0.0"]


def test_tags_are_listed_versions_first_by_precedence_then_the_rest() -> None:
    tags = ["latest", "1.10.0", "nightly", "1.9.0", "2.0.0-rc.1", "1.2.3_build.5"]
    assert tag_order(tags) == [
        "1.2.3_build.5",
        "1.9.0",
        "1.10.0",
        "2.0.0-rc.1",
        "latest",
        "nightly",
    ]
