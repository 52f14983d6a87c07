"""The docs can't rot: the generated catalog reference is current."""

from __future__ import annotations

from pathlib import Path

from multiarch_mirror.catalog_reference import render

ROOT = Path(__file__).resolve().parents[1]


def test_catalog_reference_is_current() -> None:
    committed = (ROOT / "docs" / "catalog-reference.md").read_text()
    assert committed == render(), (
        "docs/catalog-reference.md is stale: run "
        "`multiarch-mirror schema --markdown > docs/catalog-reference.md`"
    )


def test_catalog_reference_documents_every_app_key() -> None:
    text = render()
    for key in ("target", "platforms", "upstream", "tag_pattern", "gates", "recipe", "smoke"):
        assert f"| `{key}` |" in text
