"""buildah builds one platform of a Dockerfile recipe into an OCI layout, reproducibly."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from multiarch_mirror.build import (
    LABEL_CREATED,
    LABEL_FINGERPRINT,
    LABEL_REVISION,
    LABEL_SOURCE,
    LABEL_VERSION,
    BuildError,
)
from multiarch_mirror.build.buildah import BuildahBuilder, BuildahSettings
from multiarch_mirror.config import DockerfileRecipe
from tests.support.dockerfile_app import (
    ArtifactServer,
    git,
    job,
    make_upstream_repo,
    read_from_layer,
    recipe,
    render,
    top_layer,
)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_upstream_repo(tmp_path_factory.mktemp("upstream") / "repo", ["1.0.0", "1.1.0"])


@pytest.fixture(scope="module")
def spec(
    upstream: Path, busybox_base: str, artifacts: ArtifactServer, busybox: dict[str, Path]
) -> DockerfileRecipe:
    artifacts.publish("1.0.0", busybox)
    artifacts.publish("1.1.0", {"amd64": busybox["amd64"]})  # arm64 artifact never published
    return recipe(
        str(upstream),
        build_args={
            "ARTIFACT_URL": artifacts.url + "/releases/{version}/hello-{arch}",
            "APP_ARCH": "{arch}",
            "APP_VERSION": "{version}",
        },
        patches=[
            {
                "file": "docker/Dockerfile",
                "regex": r"(?m)^FROM \S+@sha256:\w+$",
                "replace": f"FROM {busybox_base}",
            }
        ],
    )


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> BuildahSettings:
    return BuildahSettings(state_dir=tmp_path_factory.mktemp("state"), storage_driver="vfs")


def config_of(layout: Path, ref: str) -> dict[str, object]:
    raw = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{layout}:{ref}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config: dict[str, object] = json.loads(raw)
    return config


async def test_an_arm64_build_runs_its_steps_as_aarch64_and_labels_the_image(
    spec: DockerfileRecipe, settings: BuildahSettings, upstream: Path, tmp_path: Path
) -> None:
    build = job("1.0.0", "linux/arm64")
    desc = await BuildahBuilder(spec, render, settings).build_layout(build, tmp_path)

    assert str(desc.platform) == "linux/arm64"
    config = config_of(tmp_path, build.id)
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    labels = config["config"]["Labels"]  # type: ignore[index]
    assert labels[LABEL_VERSION] == "1.0.0"
    assert labels[LABEL_REVISION] == git(upstream, "rev-parse", "v1.0.0")
    assert labels[LABEL_SOURCE] == str(upstream)
    assert labels[LABEL_CREATED].endswith("Z")
    assert labels[LABEL_FINGERPRINT].startswith("sha256:")
    assert (
        read_from_layer(top_layer(tmp_path, build.id), "etc/fixture-release")
        == b"1.0.0 arm64 aarch64\n"
    )


async def test_building_the_same_job_again_gives_the_same_digest(
    spec: DockerfileRecipe, settings: BuildahSettings, tmp_path: Path
) -> None:
    builder = BuildahBuilder(spec, render, settings)
    amd64_job = job("1.0.0", "linux/amd64")
    amd64 = await builder.build_layout(amd64_job, tmp_path / "first")
    again = await builder.build_layout(amd64_job, tmp_path / "second")
    assert again == amd64
    assert (
        read_from_layer(top_layer(tmp_path / "first", amd64_job.id), "etc/fixture-release")
        == b"1.0.0 amd64 x86_64\n"
    )


async def test_a_failing_step_is_quoted_in_the_error(
    spec: DockerfileRecipe, settings: BuildahSettings, tmp_path: Path
) -> None:
    build = job("1.1.0", "linux/arm64")
    with pytest.raises(BuildError) as failure:
        await BuildahBuilder(spec, render, settings).build_layout(build, tmp_path)
    message = str(failure.value)
    assert f"buildah failed to build {build.name} at STEP 5/11: RUN" in message
    assert "404" in message


async def test_a_foreign_platform_without_a_qemu_handler_says_how_to_register_one(
    spec: DockerfileRecipe, settings: BuildahSettings, tmp_path: Path
) -> None:
    no_handlers = BuildahSettings(
        state_dir=settings.state_dir, storage_driver="vfs", binfmt_dir=tmp_path
    )
    with pytest.raises(BuildError) as failure:
        await BuildahBuilder(spec, render, no_handlers).build_layout(job(), tmp_path)
    message = str(failure.value)
    assert "cannot build demo/demo 1.0.0 linux/arm64" in message
    assert "qemu-aarch64" in message
    assert "multiarch-mirror doctor --setup-qemu" in message
