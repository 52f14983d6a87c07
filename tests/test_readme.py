"""The README can't rot: its marked command blocks run, its config blocks load.

Blocks preceded by `<!-- doc-test -->` run in order in one temp directory with bash
(`set -euo pipefail`), `localhost:5000` standing for a registry the test starts. YAML blocks
whose first line names a catalog file (`# mirror.yaml`, `# apps/<app>/app.yaml`) are loaded
with the real config loader; the CI workflow excerpt must be valid YAML. Not run here:
`make demo` and `make test` (CI runs `make test`; `tests/test_demo.py` runs the demo) and
`pip install .` (what `make` does, in editable mode).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from multiarch_mirror.config import load_catalog
from tests.support.registry import Registry

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- doc-test -->\n)?```(\w+)\n(.*?)```", re.S)


def _blocks(kind: str) -> list[tuple[bool, str]]:
    return [
        (bool(marker), body)
        for marker, lang, body in BLOCK.findall(README.read_text())
        if lang == kind
    ]


def test_the_readme_opens_with_make_demo_and_make_test() -> None:
    _, first = _blocks("sh")[0]
    assert [line.split()[:2] for line in first.strip().splitlines()] == [
        ["make", "demo"],
        ["make", "test"],
    ]


def test_marked_command_blocks_run(tmp_path: Path, registry: Registry) -> None:
    marked = [body for is_marked, body in _blocks("sh") if is_marked]
    assert len(marked) >= 2
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    outputs = []
    for body in marked:
        script = body.replace("localhost:5000", registry.host)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"README block failed:\n{script}\n{result.stderr}"
        outputs.append(result.stdout)
    lines = outputs[0].splitlines()
    assert {"1.0.0", "1.1.0", "latest"} <= set(lines)
    assert "1.2.0-rc.1" not in lines
    assert '"architecture":"arm64"' in outputs[0].replace(" ", "")


def test_catalog_blocks_load(tmp_path: Path) -> None:
    files = {}
    for _, body in _blocks("yaml"):
        first = body.splitlines()[0]
        match = re.fullmatch(r"# ((?:apps/[\w-]+/app|mirror)\.yaml)", first)
        if match:
            files[match[1]] = body
    assert "mirror.yaml" in files and len(files) >= 3
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    catalog = load_catalog(tmp_path / "mirror.yaml")
    kinds = {image.recipe.kind for app in catalog.apps.values() for image in app.images}
    assert kinds == {"dockerfile", "assemble"}


def test_the_ci_workflow_excerpt_is_valid_yaml() -> None:
    workflows = [body for _, body in _blocks("yaml") if body.startswith("# .github/workflows/")]
    assert workflows
    jobs = yaml.safe_load(workflows[0])["jobs"]
    steps = " ".join(str(step) for job in jobs.values() for step in job["steps"])
    for stage in ("multiarch-mirror plan", "multiarch-mirror build", "multiarch-mirror publish"):
        assert stage in steps
