"""Copy benchmark: `multiarch-mirror copy` side by side with `skopeo copy --all`, one run.

A 2-platform image with ~200 MB of incompressible gzip layers is pushed to a local
`docker-registry`, then each tool copies it (a) to another repository of the same registry,
where we mount and move ~0 bytes, and (b) to a second registry, where every byte streams.
Each case runs `--runs` times into fresh repositories; the median time is reported.

    .venv/bin/python bench/copy.py [--layer-mb 50] [--runs 3]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# `python bench/copy.py` puts bench/ first on sys.path, where this file would shadow the
# stdlib `copy`; the repository root goes there instead (for the tests' registry launcher).
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import statistics
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager

from isal import igzip
from tests.support.registry import Registry, start_registry

from multiarch_mirror.oci.layout import LayoutStore
from multiarch_mirror.oci.media import Descriptor, ImageIndex, MediaType, Platform

ARCHES = ("amd64", "arm64")
LAYERS_PER_ARCH = 2


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _layer(size: int) -> tuple[bytes, str]:
    """A gzip'd tar holding `size` random bytes (random data won't shrink: ~`size` bytes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(f"data/{uuid.uuid4().hex}")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    tar_bytes = raw.getvalue()
    return igzip.compress(tar_bytes, compresslevel=1), "sha256:" + hashlib.sha256(
        tar_bytes
    ).hexdigest()


async def build_image(layout: Path, layer_bytes: int) -> int:
    """Write the 2-platform image into an OCI layout (ref `bench`); returns its layer bytes."""
    store = LayoutStore(layout)
    children = []
    total = 0
    for arch in ARCHES:
        layers, diff_ids = [], []
        for _ in range(LAYERS_PER_ARCH):
            gz, diff_id = _layer(layer_bytes)
            desc = Descriptor.of(gz, MediaType.OCI_LAYER_GZIP)
            await store.write_blob(desc, _once(gz))
            layers.append(desc.to_dict())
            diff_ids.append(diff_id)
            total += desc.size
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        config_desc = Descriptor.of(config, MediaType.OCI_CONFIG)
        await store.write_blob(config_desc, _once(config))
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MediaType.OCI_MANIFEST,
                "config": config_desc.to_dict(),
                "layers": layers,
            }
        ).encode()
        desc = await store.put_manifest(manifest, MediaType.OCI_MANIFEST)
        children.append(desc.model_copy(update={"platform": Platform.parse(f"linux/{arch}")}))
    index = ImageIndex(manifests=children).to_json()
    await store.put_manifest(index, MediaType.OCI_INDEX, tag="bench")
    return total


def _timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}")
    return elapsed, result.stdout


def ours(src: str, dst: str) -> tuple[float, int]:
    elapsed, out = _timed(
        [sys.executable, "-m", "multiarch_mirror", "--json", "copy", src, dst, "--concurrency", "4"]
    )
    return elapsed, int(json.loads(out)["bytesMoved"])


def skopeo(src: str, dst: str) -> float:
    flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
    return _timed(["skopeo", "copy", "--all", "-q", *flags, f"docker://{src}", f"docker://{dst}"])[
        0
    ]


def run_case(
    name: str, src: str, destination: Callable[[str], AbstractContextManager[Registry]], runs: int
) -> dict[str, object]:
    """Median times of both tools, each run into a fresh repository of `destination(tool)`."""
    ours_times, skopeo_times, moved = [], [], []
    for _ in range(runs):
        with destination("ours") as registry:
            elapsed, nbytes = ours(src, f"{registry.host}/ours-{uuid.uuid4().hex[:8]}/app:1")
        ours_times.append(elapsed)
        moved.append(nbytes)
        with destination("skopeo") as registry:
            dst = f"{registry.host}/skopeo-{uuid.uuid4().hex[:8]}/app:1"
            skopeo_times.append(skopeo(src, dst))
    ours_s, skopeo_s = statistics.median(ours_times), statistics.median(skopeo_times)
    return {
        "case": name,
        "ours_s": round(ours_s, 2),
        "skopeo_s": round(skopeo_s, 2),
        "ratio": round(skopeo_s / ours_s, 2),
        "ours_bytes_moved": int(statistics.median(moved)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-mb", type=int, default=50, help="MB per layer (4 layers)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp:
        work = Path(tmp)
        total = asyncio.run(build_image(work / "layout", args.layer_mb * 1_000_000))
        first = start_registry(work / "registry-a")

        @contextlib.contextmanager
        def same_registry(tool: str) -> Iterator[Registry]:
            yield first

        @contextlib.contextmanager
        def fresh_registry(tool: str) -> Iterator[Registry]:
            # A new registry per run: skopeo's blob-info cache would otherwise let it mount
            # from the repository its previous run wrote, and nothing would stream.
            registry = start_registry(work / f"registry-{tool}-{uuid.uuid4().hex[:8]}")
            try:
                yield registry
            finally:
                registry.stop()

        try:
            src = f"{first.host}/bench/source:1"
            subprocess.run(
                [
                    "skopeo", "copy", "--all", "-q", "--dest-tls-verify=false",
                    f"oci:{work / 'layout'}:bench", f"docker://{src}",
                ],
                check=True,
            )  # fmt: skip
            results = [
                run_case("same registry, other repository (mount)", src, same_registry, args.runs),
                run_case("other registry (streamed)", src, fresh_registry, args.runs),
            ]
        finally:
            first.stop()

    print(f"image: 2 platforms, {LAYERS_PER_ARCH * len(ARCHES)} layers, {total / 1e6:.0f} MB")
    print(f"{'case':<42}{'ours':>9}{'skopeo':>9}{'skopeo/ours':>13}{'ours moved':>14}")
    for row in results:
        print(
            f"{row['case']:<42}{row['ours_s']:>8}s{row['skopeo_s']:>8}s{row['ratio']:>12}x"
            f"{row['ours_bytes_moved'] / 1e6:>11.1f} MB"
        )
    print(json.dumps({"layer_bytes": total, "runs": args.runs, "results": results}))


if __name__ == "__main__":
    main()
