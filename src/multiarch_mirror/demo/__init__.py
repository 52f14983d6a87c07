"""The demo: a real `sync` of the bundled catalog (`examples/demo/`) against a local upstream.

It starts a GitHub-shaped releases server on a free loopback port, writes a working copy of
the catalog pointing at it, and runs the real `sync`, `verify --smoke` and `check` commands —
by default into an OCI image layout (`oci:./mirror-out`), so no registry is needed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from multiarch_mirror.demo.binaries import busybox_binaries
from multiarch_mirror.demo.upstream import start
from multiarch_mirror.errors import UsageError


def bundled_catalog() -> Path:
    """`examples/demo/` of the source tree this package runs from."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / "demo"
        if (candidate / "mirror.yaml").is_file():
            return candidate
    raise UsageError(
        "the demo catalog examples/demo/ was not found next to this installation; run the demo "
        "from a checkout of the project (`make demo`), or pass --catalog DIR"
    )


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it, for commands to copy."""
    try:
        return f"./{path.relative_to(Path.cwd())}"
    except ValueError:
        return str(path)


def prepare_catalog(catalog: Path, workdir: Path, values: dict[str, str]) -> Path:
    """Copy the catalog's YAML files into `workdir`, filling in `@NAME@` placeholders."""
    for source in catalog.rglob("*.yaml"):
        text = source.read_text()
        for name, value in values.items():
            text = text.replace(f"@{name}@", value)
        dest = workdir / source.relative_to(catalog)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    return workdir / "mirror.yaml"


def run_demo(
    *,
    target: str,
    state_dir: Path,
    catalog: Path | None = None,
    say: Callable[[str], None] = print,
    global_args: Sequence[str] = (),
) -> int:
    """Run the demo's steps as the real commands; the first failing step's exit code, else 0."""
    catalog = catalog or bundled_catalog()
    state_dir = state_dir.resolve()
    if target.startswith("oci:"):
        target = f"oci:{Path(target[len('oci:') :]).resolve()}"
    say("fetching Debian's busybox-static for amd64 and arm64 (cached after the first run)")
    binaries = busybox_binaries()
    upstream = start(binaries)
    try:
        say(
            f"demo upstream on {upstream.url}: a GitHub-shaped releases API with hello 1.0.0, "
            "1.1.0 and the pre-release 1.2.0-rc.1 (never mirrored), per-arch tarballs and "
            "SHA256SUMS"
        )
        config = prepare_catalog(
            catalog,
            state_dir / "demo-catalog",
            {"UPSTREAM_URL": upstream.url, "TARGET": target, "STATE_DIR": str(state_dir)},
        )
        command = [sys.executable, "-m", "multiarch_mirror", *global_args, "--config", str(config)]
        steps = [
            ("what upstream has and the target lacks", ["check"]),
            ("build what is missing, verify it, then tag it", ["sync"]),
            ("every mirrored version, the demo binary run on each platform", ["verify", "--smoke"]),
        ]
        for title, args in steps:
            say(f"\n$ multiarch-mirror --config {_shown(config)} {' '.join(args)}    # {title}")
            code = subprocess.run([*command, *args], check=False).returncode
            if code != 0:
                return code
    finally:
        upstream.stop()
    say(next_steps(_shown(config), target))
    return 0


def next_steps(config: str, target: str) -> str:
    """What to try once the demo has run."""
    if target.startswith("oci:"):
        layout = _shown(Path(target[len("oci:") :]))
        image = f"oci:{layout}:hello:1.1.0"
        skopeo = f"skopeo inspect --raw {image}"
    else:
        image = f"{target}/hello:1.1.0"
        skopeo = f"skopeo inspect --raw --tls-verify=false docker://{image}"
    return "\n".join(
        [
            "",
            "Next, try (after `. .venv/bin/activate` in a checkout):",
            f"  multiarch-mirror inspect {image}          # the two-platform index",
            f"  multiarch-mirror inspect --platform linux/arm64 {image}",
            f"  {skopeo}   # an independent client reads it",
            "  make demo                                  # a second run: nothing to do",
            f"  multiarch-mirror --config {config} check  # up to date",
        ]
    )
