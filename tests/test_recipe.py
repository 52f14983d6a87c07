"""Dockerfile recipes resolved for one job: source at the release ref, patches, build args."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiarch_mirror.build import BuildJob
from multiarch_mirror.build.recipe import RecipeError, SourceCache, prepare
from multiarch_mirror.config import DockerfileRecipe
from tests.support.dockerfile_app import PINNED_FROM, job, make_upstream_repo, recipe, render


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_upstream_repo(tmp_path_factory.mktemp("upstream") / "repo", ["1.0.0", "1.1.0"])


def test_prepare_exports_the_release_ref_and_records_its_commit(
    upstream: Path, tmp_path: Path
) -> None:
    cache = SourceCache(tmp_path / "sources")
    with prepare(recipe(str(upstream)), job("1.0.0"), render, cache=cache, workdir=tmp_path) as r:
        assert r.revision.ref == "v1.0.0"
        assert len(r.revision.commit) == 40
        assert r.dockerfile == r.context / "Dockerfile"
        assert r.dockerfile.read_text().startswith(PINNED_FROM)
        assert not r.root.joinpath("VERSION").exists()  # only the context is exported
    assert not r.root.exists()


def test_build_args_are_templated_per_version_and_platform(upstream: Path, tmp_path: Path) -> None:
    spec = recipe(str(upstream), build_args={"URL": "https://x/{version}/app-{arch}"})
    cache = SourceCache(tmp_path / "sources")
    with prepare(spec, job("1.1.0", "linux/amd64"), render, cache=cache, workdir=tmp_path) as r:
        assert r.build_args == {"URL": "https://x/1.1.0/app-amd64"}


def test_patches_rewrite_the_upstream_dockerfile(upstream: Path, tmp_path: Path) -> None:
    patch = {
        "file": "docker/Dockerfile",
        "regex": r"(?m)^FROM (\S+)@sha256:[0-9a-f]{64}$",
        "replace": r"FROM \1:{version}",
    }
    spec = recipe(str(upstream), patches=[patch])
    cache = SourceCache(tmp_path / "sources")
    with prepare(spec, job("1.0.0"), render, cache=cache, workdir=tmp_path) as r:
        first_line = r.dockerfile.read_text().splitlines()[0]
    assert first_line == "FROM upstream.invalid/library/busybox:1.0.0"


def test_a_patch_that_matches_nothing_names_app_file_and_regex(
    upstream: Path, tmp_path: Path
) -> None:
    patch = {"file": "docker/Dockerfile", "regex": "^FROM alpine", "replace": ""}
    spec = recipe(str(upstream), patches=[patch])
    cache = SourceCache(tmp_path / "sources")
    with (
        pytest.raises(RecipeError) as failure,
        prepare(spec, job(), render, cache=cache, workdir=tmp_path),
    ):
        pass
    message = str(failure.value)
    assert "demo/demo" in message
    assert "'^FROM alpine' matches nothing in docker/Dockerfile at v1.0.0" in message
    assert "update or remove this patch" in message


def test_an_unreachable_ref_says_which_ref_and_what_to_check(
    upstream: Path, tmp_path: Path
) -> None:
    cache = SourceCache(tmp_path / "sources")
    with (
        pytest.raises(RecipeError) as failure,
        prepare(recipe(str(upstream)), job("9.9.9"), render, cache=cache, workdir=tmp_path),
    ):
        pass
    message = str(failure.value)
    assert "cannot fetch ref 'v9.9.9'" in message
    assert str(upstream) in message
    assert "`recipe.ref`" in message


def test_a_missing_dockerfile_names_the_recipe_key(upstream: Path, tmp_path: Path) -> None:
    spec = recipe(str(upstream), dockerfile="docker/Dockerfile.nope")
    cache = SourceCache(tmp_path / "sources")
    with (
        pytest.raises(RecipeError, match=r"Dockerfile 'docker/Dockerfile.nope' does not exist"),
        prepare(spec, job(), render, cache=cache, workdir=tmp_path),
    ):
        pass


def test_the_fingerprint_follows_the_resolved_inputs(upstream: Path, tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "sources")
    spec = recipe(str(upstream), build_args={"A": "{arch}"})

    def fingerprint_of(spec: DockerfileRecipe, build: BuildJob) -> str:
        with prepare(spec, build, render, cache=cache, workdir=tmp_path) as r:
            return r.fingerprint

    first = fingerprint_of(spec, job())
    assert fingerprint_of(spec, job()) == first
    assert fingerprint_of(spec, job(platform="linux/amd64")) != first
    assert fingerprint_of(spec.model_copy(update={"build_args": {"A": "x"}}), job()) != first
    assert fingerprint_of(spec, job("1.1.0")) != first
