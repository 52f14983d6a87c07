"""Build benchmark: `sync` of the fixture Dockerfile app for linux/amd64 + linux/arm64, with a
cold buildah cache and a warm one, side by side with plain buildah doing the same work.

The fixture is the tests' Dockerfile upstream: FROM a 2-platform busybox base in a local
`docker-registry`, build args templated per arch, a RUN step (emulated by QEMU for arm64) that
downloads a per-arch artifact over loopback. Each `sync` is a fresh process into a fresh target
repository (so the plan has both jobs); its JSON report gives each platform's build time.

- cold: a new state directory (no git cache, no base image, no layer cache);
- warm: the same state directory again: the base, the source and every layer are cached;
- peer: what the replaced workflow does on one machine, with a cold buildah storage: one
  `buildah build --platform P` and `buildah push` per platform, then `buildah manifest create`,
  `manifest add` and `manifest push` of the index. No verification, no smoke test.

    .venv/bin/python bench/build.py [--runs 1]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# `python bench/build.py` puts bench/ first on sys.path, where bench/copy.py would shadow the
# stdlib `copy`; the repository root goes there instead (for the tests' support code).
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from tests.support.cli import run_cli
from tests.support.dockerfile_app import (
    make_upstream_repo,
    push_base_image,
    serve_artifacts,
    write_catalog,
)
from tests.support.registry import start_registry
from tests.support.upstream import github_release, running_upstream

from multiarch_mirror.demo.binaries import busybox_binaries

VERSION = "1.0.0"
ARCHES = ("amd64", "arm64")


@dataclass
class Timing:
    wall: float
    amd64: float
    arm64: float

    @property
    def qemu_share(self) -> float:
        """The arm64 (emulated) build's share of the build time of both platforms."""
        return self.arm64 / (self.amd64 + self.arm64)


def _sync(root: Path, target: str, state: Path, settings: dict[str, str]) -> Timing:
    write_catalog(root, target, state=state, **settings)
    report = root / "report.json"
    started = time.monotonic()
    result = run_cli("--config", str(root / "mirror.yaml"), "sync", "--report", str(report))
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"sync failed:\n{result.stderr}")
    document: dict[str, Any] = json.loads(report.read_text())
    seconds = {b["platform"]: b["seconds"] for b in document["apps"][0]["built"]}
    return Timing(wall, seconds["linux/amd64"], seconds["linux/arm64"])


def _buildah(storage: Path, *args: str) -> str:
    command = ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run")]
    result = subprocess.run(
        [*command, "--storage-driver", "vfs", *args], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"buildah {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout.strip()


def _peer(
    repo: Path, base: str, artifacts: str, target: str, storage: Path, context: Path
) -> Timing:
    """The workflow way, cold: a build and push per platform, then the index."""
    context.mkdir(parents=True)
    dockerfile = (repo / "docker" / "Dockerfile").read_text()
    (context / "Dockerfile").write_text(
        re.sub(r"(?m)^FROM \S+@sha256:\w+$", f"FROM {base}", dockerfile)
    )
    started = time.monotonic()
    seconds = {}
    for arch in ARCHES:
        arch_started = time.monotonic()
        image = _buildah(
            storage,
            "build",
            "--quiet",
            "--layers",
            "--isolation",
            "chroot",
            "--tls-verify=false",
            "--platform",
            f"linux/{arch}",
            "--build-arg",
            f"ARTIFACT_URL={artifacts}/releases/{VERSION}/hello-{arch}",
            "--build-arg",
            f"APP_ARCH={arch}",
            "--build-arg",
            f"APP_VERSION={VERSION}",
            str(context),
        ).splitlines()[-1]
        _buildah(storage, "push", "--tls-verify=false", image, f"docker://{target}-{arch}")
        _buildah(storage, "tag", image, f"peer-{arch}")
        seconds[arch] = time.monotonic() - arch_started
    _buildah(storage, "manifest", "create", "peer-index")
    for arch in ARCHES:
        _buildah(
            storage, "manifest", "add", "peer-index", f"containers-storage:localhost/peer-{arch}"
        )
    _buildah(
        storage,
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "peer-index",
        f"docker://{target}",
    )
    return Timing(time.monotonic() - started, seconds["amd64"], seconds["arm64"])


def _median(timings: list[Timing]) -> Timing:
    return Timing(
        statistics.median(t.wall for t in timings),
        statistics.median(t.amd64 for t in timings),
        statistics.median(t.arm64 for t in timings),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="Runs per case; the median counts.")
    args = parser.parse_args()
    busybox = busybox_binaries()
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp_name:
        tmp = Path(tmp_name)
        registry = start_registry(tmp / "registry")
        artifacts = serve_artifacts(tmp / "artifacts")
        try:
            base = push_base_image(registry.host, busybox, tmp / "base")
            repo = make_upstream_repo(tmp / "upstream", [VERSION])
            artifacts.publish(VERSION, busybox)
            with running_upstream() as upstream:
                upstream.json("/repos/acme/hello/releases", [github_release(f"v{VERSION}")])
                settings = {
                    "repo": str(repo),
                    "upstream": upstream.url,
                    "artifacts": artifacts.url,
                    "base": base,
                }
                cold, warm, peer = [], [], []
                for run in range(args.runs):
                    state = tmp / f"state{run}"
                    target = f"{registry.host}/bench{run}"
                    cold.append(_sync(tmp / f"cold{run}", f"{target}c", state, settings))
                    warm.append(_sync(tmp / f"warm{run}", f"{target}w", state, settings))
                    peer.append(
                        _peer(
                            repo,
                            base,
                            artifacts.url,
                            f"{registry.host}/peer{run}/hello:{VERSION}",
                            tmp / f"peer{run}",
                            tmp / f"peer-context{run}",
                        )
                    )
        finally:
            artifacts.stop()
            registry.stop()
    print("| run | wall time | amd64 build | arm64 build (QEMU) | QEMU share of build time |")
    print("|---|---:|---:|---:|---:|")
    for name, timing in [
        ("sync, cold cache", _median(cold)),
        ("sync, warm cache", _median(warm)),
        ("peer: buildah per platform + manifest push, cold", _median(peer)),
    ]:
        print(
            f"| {name} | {timing.wall:.2f} s | {timing.amd64:.2f} s | {timing.arm64:.2f} s "
            f"| {timing.qemu_share:.0%} |"
        )


if __name__ == "__main__":
    main()
