"""`multiarch-mirror demo` mirrors the bundled demo app for real, and twice is safe."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.fixture_images import skopeo
from tests.support.registry import Registry


def test_demo_mirrors_stable_versions_into_a_layout_and_a_second_run_does_nothing(
    tmp_path: Path,
) -> None:
    first = run_cli("demo", cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr
    output = first.stdout + first.stderr
    assert "hello:1.0.0" in output and "hello:1.1.0" in output and "hello:latest" in output
    assert "smoke: hello-demo 1.1.0 running on aarch64" in output
    assert "smoke: hello-demo 1.1.0 running on x86_64" in output

    index = json.loads(skopeo("inspect", "--raw", f"oci:{tmp_path / 'mirror-out'}:hello:1.1.0"))
    platforms = sorted(
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]
    )
    assert platforms == ["linux/amd64", "linux/arm64"]
    tags = run_cli("tags", f"oci:{tmp_path / 'mirror-out'}:hello")
    assert sorted(tags.stdout.split()) == ["1.0.0", "1.1.0", "latest"]

    second = run_cli("demo", cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "up-to-date" in second.stdout + second.stderr
    assert " updated " not in second.stdout + second.stderr


def test_demo_can_target_a_registry(tmp_path: Path, registry: Registry) -> None:
    target = f"{registry.host}/demo-{tmp_path.name}"
    result = run_cli("demo", "--target", target, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target}/hello:latest")
    latest = json.loads(raw)
    assert len(latest["manifests"]) == 2
    assert not (tmp_path / "mirror-out").exists()


def test_demo_rejects_a_target_that_is_not_one(tmp_path: Path) -> None:
    result = run_cli("demo", "--target", "https://example/x", cwd=tmp_path)
    assert result.returncode == 2
    assert "is not a target" in result.stderr
