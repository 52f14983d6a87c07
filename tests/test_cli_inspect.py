"""`inspect` and `tags`: what a user and a script see for an index, a platform, a repository."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from typer.testing import CliRunner

from multiarch_mirror.cli import app
from multiarch_mirror.oci.layout import LayoutStore
from multiarch_mirror.oci.media import Descriptor, MediaType
from tests.support.fixture_images import FixtureImage
from tests.support.registry import Registry

runner = CliRunner()


def blob(image: FixtureImage, digest: str) -> bytes:
    return (image.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def test_inspect_an_index_lists_each_platform_with_full_digest_and_size(
    fixture_image: FixtureImage,
) -> None:
    result = runner.invoke(app, ["inspect", fixture_image.location])

    assert result.exit_code == 0, result.stderr
    assert fixture_image.digest in result.stdout
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line}
    for platform, digest in fixture_image.platforms.items():
        assert rows[platform][1] == digest
        assert rows[platform][3] == "MB"


def test_inspect_with_platform_shows_that_image_config_and_layers(
    fixture_image: FixtureImage,
) -> None:
    result = runner.invoke(app, ["inspect", fixture_image.location, "--platform", "linux/arm64"])

    assert result.exit_code == 0, result.stderr
    manifest = json.loads(blob(fixture_image, fixture_image.platforms["linux/arm64"]))
    assert f"linux/arm64  {fixture_image.platforms['linux/arm64']}" in result.stdout
    assert '["/bin/busybox", "sh"]' in result.stdout
    assert manifest["layers"][0]["digest"] in result.stdout


def test_inspect_raw_prints_the_manifest_bytes_exactly(fixture_image: FixtureImage) -> None:
    result = runner.invoke(app, ["inspect", "--raw", fixture_image.location])
    platform = runner.invoke(
        app, ["inspect", "--raw", "--platform", "linux/amd64", fixture_image.location]
    )

    assert result.stdout_bytes == blob(fixture_image, fixture_image.digest)
    assert platform.stdout_bytes == blob(fixture_image, fixture_image.platforms["linux/amd64"])


def test_inspect_json_is_a_structured_document(fixture_image: FixtureImage) -> None:
    result = runner.invoke(
        app, ["--json", "inspect", fixture_image.location, "--platform", "linux/amd64"]
    )

    doc = json.loads(result.stdout)
    assert doc["digest"] == fixture_image.digest
    assert doc["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {m["platform"]: m["digest"] for m in doc["manifests"]} == fixture_image.platforms
    assert all(m["imageSize"] > 500_000 for m in doc["manifests"])
    assert doc["image"]["platform"] == "linux/amd64"
    assert doc["image"]["config"]["Cmd"] == ["/bin/busybox", "sh"]
    assert len(doc["image"]["layers"]) == 1


def test_inspect_of_an_absent_platform_fails_listing_those_present(
    fixture_image: FixtureImage,
) -> None:
    result = runner.invoke(app, ["inspect", fixture_image.location, "--platform", "linux/riscv64"])

    assert result.exit_code == 1
    assert "has no linux/riscv64; it has linux/amd64, linux/arm64" in result.stderr


def test_inspect_of_a_malformed_reference_exits_2_quoting_it() -> None:
    result = runner.invoke(app, ["inspect", "Localhost:5000/UPPER/case"])

    assert result.exit_code == 2
    assert "'Localhost:5000/UPPER/case'" in result.stderr
    assert result.stdout == ""


def test_inspect_of_a_layout_without_a_ref_exits_2_explaining(tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", f"oci:{tmp_path}"])

    assert result.exit_code == 2
    assert "write oci:DIR:REF" in result.stderr


def test_tags_of_a_layout_namespace_lists_its_tags(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    for tag in ("1.0", "1.1"):
        copied = runner.invoke(app, ["copy", fixture_image.location, f"oci:{tmp_path}:app:{tag}"])
        assert copied.exit_code == 0, copied.stderr

    plain = runner.invoke(app, ["tags", f"oci:{tmp_path}:app"])
    as_json = runner.invoke(app, ["--json", "tags", f"oci:{tmp_path}:app"])
    whole = runner.invoke(app, ["tags", f"oci:{tmp_path}"])

    assert plain.stdout.splitlines() == ["1.0", "1.1"]
    assert json.loads(as_json.stdout) == ["1.0", "1.1"]
    assert whole.stdout.splitlines() == ["app:1.0", "app:1.1"]


def test_tags_of_an_image_reference_is_a_usage_error() -> None:
    result = runner.invoke(app, ["tags", "localhost:5000/app:1.0"])

    assert result.exit_code == 2
    assert "'localhost:5000/app:1.0' names an image" in result.stderr


def test_inspect_and_tags_read_a_registry_repository(
    registry: Registry, fixture_image: FixtureImage
) -> None:
    repo = f"{registry.host}/cli-inspect/busybox"
    for tag in ("1.0", "1.1", "latest"):
        copied = runner.invoke(app, ["copy", fixture_image.location, f"{repo}:{tag}"])
        assert copied.exit_code == 0, copied.stderr

    inspected = runner.invoke(app, ["--json", "inspect", f"{repo}:1.1"])
    listed = runner.invoke(app, ["tags", repo])

    assert json.loads(inspected.stdout)["digest"] == fixture_image.digest
    assert sorted(listed.stdout.splitlines()) == ["1.0", "1.1", "latest"]


def test_inspect_of_a_missing_tag_names_the_registry_and_tag(registry: Registry) -> None:
    result = runner.invoke(app, ["inspect", f"{registry.host}/cli-inspect/absent:2.0"])

    assert result.exit_code == 1
    assert f"2.0 on {registry.host}/cli-inspect/absent" in result.stderr


def test_inspect_of_an_artifact_shows_its_config_type_and_no_platform(tmp_path: Path) -> None:
    signature_type = "application/vnd.example.signature.v1+json"

    config = Descriptor.of(b"{}", MediaType.OCI_EMPTY)
    layer = Descriptor.of(b"sig", signature_type)

    async def once(data: bytes) -> AsyncIterator[bytes]:
        yield data

    async def store_artifact() -> None:
        store = LayoutStore(tmp_path)
        await store.write_blob(config, once(b"{}"))
        await store.write_blob(layer, once(b"sig"))
        manifest = {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "artifactType": signature_type,
            "config": config.to_dict(),
            "layers": [layer.to_dict()],
        }
        await store.put_manifest(json.dumps(manifest).encode(), MediaType.OCI_MANIFEST, tag="sig")

    asyncio.run(store_artifact())

    shown = runner.invoke(app, ["inspect", f"oci:{tmp_path}:sig"])
    doc = json.loads(runner.invoke(app, ["--json", "inspect", f"oci:{tmp_path}:sig"]).stdout)

    assert shown.exit_code == 0, shown.stderr
    assert "none (artifact)" in shown.stdout
    assert MediaType.OCI_EMPTY in shown.stdout
    assert doc["image"]["platform"] is None
    assert doc["image"]["layers"][0]["mediaType"] == signature_type
