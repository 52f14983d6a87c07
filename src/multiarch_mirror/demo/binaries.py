"""Debian's `busybox-static` for amd64 and arm64: the real per-arch binaries the demo releases
and the test fixtures are made of (fetched once with `apt-get download`, then cached)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from multiarch_mirror.errors import MirrorError

ARCHES = ("amd64", "arm64")
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "multiarch-mirror" / "busybox"
)


def _run(cmd: list[str], cwd: str | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if result.returncode != 0:
        raise MirrorError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}")


def busybox_binaries() -> dict[str, Path]:
    """Path of the static busybox binary per Debian architecture, downloaded once."""
    paths = {arch: CACHE / arch / "busybox" for arch in ARCHES}
    missing = [arch for arch, path in paths.items() if not path.exists()]
    if not missing:
        return paths
    foreign = subprocess.run(
        ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True, check=True
    ).stdout.split()
    if "arm64" not in foreign:
        _run(["dpkg", "--add-architecture", "arm64"])
        _run(["apt-get", "update", "-qq"])
    for arch in missing:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                _run(["apt-get", "download", f"busybox-static:{arch}"], cwd=tmp)
            except RuntimeError:
                _run(["apt-get", "update", "-qq"])
                _run(["apt-get", "download", f"busybox-static:{arch}"], cwd=tmp)
            deb = next(Path(tmp).glob("busybox-static_*.deb"))
            _run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")])
            paths[arch].parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / "root" / "bin" / "busybox").replace(paths[arch])
    return paths
