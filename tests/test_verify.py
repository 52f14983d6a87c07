"""`verify` checks a published index and names the platform that fails and why."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.fixture_images import FixtureImage, skopeo, skopeo_push
from tests.support.registry import Registry

SMOKE = ["--command", "/bin/busybox uname -m"]


def _copy_layout(fixture: FixtureImage, tmp_path: Path) -> Path:
    layout = tmp_path / "layout"
    shutil.copytree(fixture.layout, layout)
    return layout


def test_a_complete_index_passes_with_each_arch_answering(
    registry: Registry, fixture_image: FixtureImage
) -> None:
    ref = f"{registry.host}/verify/ok:1.0.0"
    skopeo_push(fixture_image, ref)
    result = run_cli("--json", "verify", ref, *SMOKE, "--expect", "^(x86_64|aarch64)$")
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["digest"] == fixture_image.digest
    answers = {entry["platform"]: entry["smoke_output"] for entry in report["platforms"]}
    assert answers == {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


def test_an_index_missing_arm64_fails_naming_it(
    registry: Registry, fixture_image: FixtureImage
) -> None:
    ref = f"{registry.host}/verify/amd64-only:1.0.0"
    copied = run_cli("copy", "--platform", "linux/amd64", fixture_image.location, ref)
    assert copied.returncode == 0, copied.stderr
    result = run_cli("verify", ref)
    assert result.returncode == 1
    assert "linux/arm64: missing from the index" in result.stderr


def test_a_config_that_says_amd64_under_an_arm64_descriptor_fails(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    layout = _copy_layout(fixture_image, tmp_path)
    index_path = layout / "blobs" / "sha256" / fixture_image.digest.removeprefix("sha256:")
    index = json.loads(index_path.read_bytes())
    amd64 = next(m for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    index["manifests"] = [
        amd64,
        {**amd64, "platform": {"os": "linux", "architecture": "arm64"}},
    ]
    # The forged index becomes a new blob, and the layout's ref points at it.
    data = json.dumps(index).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    top = json.loads((layout / "index.json").read_text())
    top["manifests"][0].update({"digest": f"sha256:{digest}", "size": len(data)})
    (layout / "index.json").write_text(json.dumps(top))

    result = run_cli("verify", f"oci:{layout}:{fixture_image.ref}")
    assert result.returncode == 1
    assert "linux/arm64: the image config says linux/amd64 under a linux/arm64 descriptor" in (
        result.stderr
    )
    assert "linux/amd64:" not in result.stderr


def test_a_missing_blob_fails_naming_the_platform(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    layout = _copy_layout(fixture_image, tmp_path)
    manifest_digest = fixture_image.platforms["linux/arm64"]
    manifest = json.loads(
        (layout / "blobs" / "sha256" / manifest_digest.removeprefix("sha256:")).read_bytes()
    )
    layer = manifest["layers"][0]["digest"]
    (layout / "blobs" / "sha256" / layer.removeprefix("sha256:")).unlink()
    result = run_cli("verify", f"oci:{layout}:{fixture_image.ref}")
    assert result.returncode == 1
    assert f"linux/arm64: blob {layer}" in result.stderr
    assert "is missing" in result.stderr


def test_smoke_output_that_does_not_match_fails_on_that_platform_only(
    fixture_image: FixtureImage,
) -> None:
    result = run_cli("verify", fixture_image.location, *SMOKE, "--expect", "^x86_64$")
    assert result.returncode == 1
    assert "linux/arm64: smoke output 'aarch64' does not match '^x86_64$'" in result.stderr
    assert "linux/amd64: smoke" not in result.stderr


def test_skopeo_agrees_with_what_verify_checked(
    registry: Registry, fixture_image: FixtureImage
) -> None:
    ref = f"{registry.host}/verify/agree:1.0.0"
    skopeo_push(fixture_image, ref)
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    platforms = sorted(m["platform"]["architecture"] for m in raw["manifests"])
    result = run_cli("--json", "verify", ref)
    (report,) = json.loads(result.stdout)
    assert sorted(p["platform"].split("/")[1] for p in report["platforms"]) == platforms
