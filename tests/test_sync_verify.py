"""`sync` verifies each index before its tags move: a failed verification leaves them alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from multiarch_mirror.demo import bundled_catalog, prepare_catalog
from multiarch_mirror.demo.upstream import DemoUpstream, start
from tests.support.cli import run_cli


@pytest.fixture(scope="module")
def upstream(busybox: dict[str, Path]) -> Iterator[DemoUpstream]:
    server = start(busybox)
    yield server
    server.stop()


def _catalog(tmp_path: Path, upstream: DemoUpstream, *, exclude: str | None, expect: str) -> Path:
    config = prepare_catalog(
        bundled_catalog(),
        tmp_path / "catalog",
        {
            "UPSTREAM_URL": upstream.url,
            "TARGET": f"oci:{tmp_path / 'out'}",
            "STATE_DIR": str(tmp_path / "state"),
        },
    )
    app = tmp_path / "catalog" / "apps" / "hello" / "app.yaml"
    text = app.read_text().replace(
        "expect: 'hello-demo {version} running on'", f"expect: {expect!r}"
    )
    if exclude:
        text = text.replace("  base_url:", f"  exclude: {exclude!r}\n  base_url:")
    app.write_text(text)
    return config


def _tags(tmp_path: Path) -> dict[str, str]:
    """Ref name → digest in the target layout (a layout gets its index.json with its first tag)."""
    path = tmp_path / "out" / "index.json"
    if not path.exists():
        return {}
    index = json.loads(path.read_text())
    return {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }


def test_a_smoke_answer_that_does_not_match_leaves_every_tag_where_it_was(
    tmp_path: Path, upstream: DemoUpstream
) -> None:
    good = _catalog(tmp_path, upstream, exclude="^1[.]1", expect="hello-demo {version} running on")
    first = run_cli("--config", str(good), "sync")
    assert first.returncode == 0, first.stderr
    before = _tags(tmp_path)
    assert set(before) == {"hello:1.0.0", "hello:latest"}
    assert before["hello:latest"] == before["hello:1.0.0"]

    bad = _catalog(tmp_path, upstream, exclude=None, expect="hello-demo {version} on riscv")
    second = run_cli("--config", str(bad), "sync")
    assert second.returncode == 1
    assert "linux/amd64" in second.stderr and "does not match" in second.stderr
    assert _tags(tmp_path) == before


def test_a_smoke_answer_wrong_on_one_platform_tags_nothing(
    tmp_path: Path, upstream: DemoUpstream
) -> None:
    config = _catalog(tmp_path, upstream, exclude=None, expect="running on x86_64")
    result = run_cli("--config", str(config), "sync")
    assert result.returncode == 1
    assert "linux/arm64" in result.stderr
    assert "does not match" in result.stderr
    assert _tags(tmp_path) == {}
    assert any((tmp_path / "out" / "blobs" / "sha256").iterdir())  # built, pushed, untagged
