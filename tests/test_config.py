"""mirror.yaml and app.yaml load into typed models; every mistake names the file and the key."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from multiarch_mirror.config import (
    AssembleRecipe,
    DockerfileRecipe,
    load_app,
    load_catalog,
    load_mirror,
)
from multiarch_mirror.errors import ConfigError
from multiarch_mirror.oci.reference import LayoutReference
from tests.support.cli import run_cli

REPO = Path(__file__).resolve().parents[1]

MINIMAL_APP = """
name: demo
upstream:
  source: github-releases
  repo: acme/demo
images:
  - name: demo
    recipe:
      kind: dockerfile
      git: https://example.invalid/demo.git
      ref: 'v{version}'
"""


def write_catalog(
    root: Path, app_yaml: str = MINIMAL_APP, *, target: str = "localhost:5000/m"
) -> Path:
    (root / "apps" / "demo").mkdir(parents=True, exist_ok=True)
    (root / "apps" / "demo" / "app.yaml").write_text(textwrap.dedent(app_yaml))
    config = root / "mirror.yaml"
    config.write_text(f"target: {target}\n")
    return config


def config_error(root: Path, app_yaml: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_catalog(write_catalog(root, app_yaml))
    return str(info.value)


def test_every_bundled_app_file_validates() -> None:
    catalog = load_catalog(REPO / "examples" / "mirror.ghcr.yaml")
    assert sorted(catalog.apps) == ["mattermost", "mostlymatter", "outline"]


def test_mirror_defaults_are_two_platforms_ten_versions() -> None:
    catalog = load_catalog(REPO / "examples" / "mirror.ghcr.yaml")
    mirror = catalog.mirror.model_copy(update={})
    assert [str(p) for p in mirror.platforms] == ["linux/amd64", "linux/arm64"]
    assert mirror.max_versions == 10


def test_outline_builds_on_its_own_mirrored_base_of_the_same_version() -> None:
    catalog = load_catalog(REPO / "examples" / "mirror.ghcr.yaml")
    outline = catalog.apps["outline"]
    assert [image.name for image in outline.ordered_images()] == ["base-outline", "outline"]
    recipe = outline.image("outline").recipe
    assert isinstance(recipe, DockerfileRecipe)
    context = catalog.template_context(outline, "0.80.2", "linux/arm64")
    replaced = recipe.patches[0].regex.sub(
        context.render(recipe.patches[0].replace), "ARG BASE_IMAGE=outlinewiki/outline-base\n"
    )
    assert replaced == "ARG BASE_IMAGE=ghcr.io/acme/mirror/base-outline:0.80.2\n"


def test_mattermost_build_arg_is_templated_per_arch() -> None:
    catalog = load_catalog(REPO / "examples" / "mirror.ghcr.yaml")
    app = catalog.apps["mattermost"]
    recipe = app.images[0].recipe
    assert isinstance(recipe, DockerfileRecipe)
    context = catalog.template_context(app, "10.5.2", "linux/arm64")
    assert context.render(recipe.build_args["MM_PACKAGE"]) == (
        "https://releases.mattermost.com/10.5.2/mattermost-10.5.2-linux-arm64.tar.gz?src=docker"
    )
    assert recipe.dockerfile_path == "server/build/Dockerfile"


def test_mattermost_patch_strips_digest_pins_from_from_lines() -> None:
    recipe = (
        load_catalog(REPO / "examples" / "mirror.ghcr.yaml").apps["mattermost"].images[0].recipe
    )
    assert isinstance(recipe, DockerfileRecipe)
    pin = "a" * 64
    dockerfile = f"FROM ubuntu:noble-20240605@sha256:{pin}\nRUN echo @sha256:{pin}\n"
    patch = recipe.patches[0]
    assert patch.regex.sub(patch.replace, dockerfile) == (
        f"FROM ubuntu:noble-20240605\nRUN echo @sha256:{pin}\n"
    )


def test_dockerfile_defaults_to_the_context_directory() -> None:
    app = DockerfileRecipe.model_validate(
        {"kind": "dockerfile", "git": "/src", "ref": "v{version}", "context": "build"}
    )
    assert app.dockerfile_path == "build/Dockerfile"


def test_assemble_recipe_parses_artifacts_files_and_config() -> None:
    recipe = AssembleRecipe.model_validate(
        {
            "kind": "assemble",
            "base": "docker.io/library/ubuntu:24.04",
            "artifacts": [
                {
                    "url": "https://example.invalid/app-{version}-{arch}.tar.gz",
                    "format": "tar.gz",
                    "checksums_url": "https://example.invalid/{version}/SHA256SUMS",
                    "strip_components": 1,
                    "dest": "/opt/app",
                }
            ],
            "files": [
                {"path": "/entrypoint.sh", "content": '#!/bin/sh\nexec "${@}"\n', "mode": 0o755}
            ],
            "uid": 2000,
            "gid": 2000,
            "config": {
                "entrypoint": ["/entrypoint.sh"],
                "exposed_ports": [8065, "8067/udp"],
                "healthcheck": {"test": ["CMD", "true"], "interval": "1m30s", "timeout": "500ms"},
            },
        }
    )
    assert recipe.config.exposed_ports == ["8065/tcp", "8067/udp"]
    assert recipe.config.healthcheck is not None
    assert (recipe.config.healthcheck.interval, recipe.config.healthcheck.timeout) == (90.0, 0.5)
    assert recipe.files[0].content.startswith("#!/bin/sh")


def test_layout_target_puts_every_image_in_one_layout_under_its_name(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path, target="oci:./out"))
    repo = catalog.repository("demo")
    assert repo.location == LayoutReference(str((tmp_path / "out").resolve()))
    assert repo.namespace == "demo"
    assert repo.reference("1.0") == f"oci:{(tmp_path / 'out').resolve()}:demo:1.0"
    assert str(repo) == f"oci:{(tmp_path / 'out').resolve()}:demo"


def test_typo_in_a_key_names_the_file_the_path_and_the_likely_key(tmp_path: Path) -> None:
    message = config_error(tmp_path, MINIMAL_APP + "      biuld_args: {A: b}\n")
    assert "apps/demo/app.yaml: images[0].recipe.biuld_args: unknown key" in message
    assert "did you mean 'build_args'?" in message


def test_unknown_recipe_kind_names_the_kind_key(tmp_path: Path) -> None:
    message = config_error(tmp_path, MINIMAL_APP.replace("kind: dockerfile", "kind: docker"))
    assert "apps/demo/app.yaml: images[0].recipe.kind:" in message
    assert "'docker' is not known (did you mean 'dockerfile'?)" in message


def test_bad_regex_is_reported_with_its_key(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, MINIMAL_APP.replace("repo: acme/demo", "repo: acme/demo\n  exclude: '(beta'")
    )
    assert (
        "apps/demo/app.yaml: upstream.exclude: '(beta' is not a valid regular expression" in message
    )


def test_tag_pattern_without_version_group_is_refused(tmp_path: Path) -> None:
    message = config_error(
        tmp_path,
        MINIMAL_APP.replace("repo: acme/demo", "repo: acme/demo\n  tag_pattern: '^v(.*)$'"),
    )
    assert "upstream.tag_pattern: '^v(.*)$' has no named group `version`" in message


def test_unknown_template_placeholder_is_a_config_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, MINIMAL_APP.replace("v{version}", "v{vresion}"))
    assert "apps/demo/app.yaml: images[0].recipe.ref: unknown placeholder {vresion}" in message


def test_image_placeholder_must_name_a_dependency(tmp_path: Path) -> None:
    app = MINIMAL_APP + "      build_args: {BASE: '{image:base}'}\n"
    message = config_error(tmp_path, app)
    assert "images[0]: recipe.build_args.BASE: {image:base} refers to image 'base'" in message


def test_dependency_cycle_is_refused(tmp_path: Path) -> None:
    app = MINIMAL_APP.replace("  - name: demo\n", "  - name: demo\n    depends_on: [b]\n") + (
        "  - name: b\n    depends_on: [demo]\n    recipe: {kind: dockerfile, git: /x, ref: main}\n"
    )
    assert "depends_on forms a cycle: demo -> b -> demo" in config_error(tmp_path, app)


def test_artifact_without_checksum_needs_explicit_opt_out(tmp_path: Path) -> None:
    app = MINIMAL_APP.replace(
        "kind: dockerfile\n      git: https://example.invalid/demo.git\n      ref: 'v{version}'",
        "kind: assemble\n      base: scratch\n      artifacts:\n"
        "        - {url: 'https://x.invalid/{arch}', format: file, dest: /app}",
    )
    message = config_error(tmp_path, app)
    assert "images[0].recipe.artifacts[0]: an artifact needs `sha256`" in message


def test_app_name_must_match_its_directory(tmp_path: Path) -> None:
    message = config_error(tmp_path, MINIMAL_APP.replace("name: demo\n", "name: other\n", 1))
    assert "apps/demo/app.yaml: name: 'other' differs from its directory 'demo'" in message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "app.yaml"
    path.parent.mkdir()
    path.write_text("name: demo\nupstream: [\n")
    with pytest.raises(ConfigError, match=r"app\.yaml:3:1: not valid YAML"):
        load_app(path)


def test_bad_target_says_what_a_target_looks_like(tmp_path: Path) -> None:
    (tmp_path / "mirror.yaml").write_text("target: https://ghcr.io/acme\n")
    with pytest.raises(ConfigError) as info:
        load_mirror(tmp_path / "mirror.yaml")
    assert "mirror.yaml: target: 'https://ghcr.io/acme' is not a target" in str(info.value)
    assert "ghcr.io/acme/mirror" in str(info.value)


def test_missing_mirror_yaml_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_mirror(tmp_path / "mirror.yaml")
    assert "mirror.yaml: no mirror configuration here" in str(info.value)
    assert "target: ghcr.io/<you>/mirror" in str(info.value)


def test_missing_apps_dir_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "mirror.yaml").write_text("target: localhost:5000/m\napps_dir: catalog\n")
    with pytest.raises(ConfigError, match=r"mirror\.yaml: apps_dir: directory .*catalog not found"):
        load_catalog(tmp_path / "mirror.yaml")


def test_same_image_name_in_two_apps_is_refused(tmp_path: Path) -> None:
    config = write_catalog(tmp_path)
    (tmp_path / "apps" / "other").mkdir()
    (tmp_path / "apps" / "other" / "app.yaml").write_text(
        textwrap.dedent(MINIMAL_APP).replace("name: demo\nupstream", "name: other\nupstream")
    )
    with pytest.raises(ConfigError, match="'demo' is also an image of"):
        load_catalog(config)


def test_schema_command_prints_the_app_json_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "upstream", "images"}
    assert {"DockerfileRecipe", "AssembleRecipe"} <= set(schema["$defs"])


def test_schema_command_prints_the_mirror_schema_with_defaults() -> None:
    result = run_cli("schema", "--mirror")
    schema = json.loads(result.stdout)
    assert schema["properties"]["platforms"]["default"] == ["linux/amd64", "linux/arm64"]
    assert schema["required"] == ["target"]


def test_smoke_expect_may_not_name_an_image_outside_depends_on(tmp_path: Path) -> None:
    app = MINIMAL_APP + "    smoke: {command: [x], expect: '{image:other}'}\n"
    message = config_error(tmp_path, app)
    assert "images[0]: smoke.expect: {image:other} in '{image:other}': no such image" in message


def test_mirror_yaml_recipes_pick_an_images_alternative() -> None:
    config = REPO / "examples" / "mirror.ghcr.yaml"
    default = load_catalog(config)
    image = default.apps["mattermost"].images[0]
    assert isinstance(default.recipe(image), DockerfileRecipe)
    picked = default.mirror.model_copy(update={"recipes": {"mattermost": "assemble"}})
    chosen = type(default)(config_path=config, mirror=picked, apps=default.apps)
    assert isinstance(chosen.recipe(image), AssembleRecipe)


@pytest.mark.parametrize(
    ("recipes", "message"),
    [
        ("{nosuch: assemble}", "recipes.nosuch: no image 'nosuch' in the catalog (images: demo)"),
        ("{demo: fast}", "recipes.demo: image 'demo' has no recipe 'fast'; alternatives: none"),
    ],
)
def test_mirror_yaml_recipes_must_name_an_image_and_one_of_its_alternatives(
    tmp_path: Path, recipes: str, message: str
) -> None:
    config = write_catalog(tmp_path)
    config.write_text(config.read_text() + f"recipes: {recipes}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_catalog(config)
