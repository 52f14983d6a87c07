"""Assemble benchmark: the `assemble` builder side by side with its floor and with buildah.

Two platforms (linux/amd64 + linux/arm64), each a per-arch release tarball of ~`--artifact-mb`
MB compressed (Debian's busybox-static plus data: part text, part incompressible), served over loopback
with a SHA256SUMS file; the base is a 2-platform busybox image in a local `docker-registry`.

- (a) floor: compress + sha256 the layer's tar bytes with the same compressor settings;
- (b) assemble: download, verify, unpack, write the layer, push (fresh repository and state);
- (c) buildah: download the tarball, `FROM base` + `ADD tarball`, `buildah build`, `buildah push`.

(b) and (c) build both platforms at once, as `sync` does by default; (a) already uses every CPU.

Then the peak RSS of (b), alone in a child process, for one ~`--rss-mb` MB artifact.

    .venv/bin/python bench/assemble.py [--artifact-mb 100] [--runs 1] [--rss-mb 1024]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# `python bench/assemble.py` puts bench/ first on sys.path, where bench/copy.py would shadow
# the stdlib `copy`; the repository root goes there instead (for the tests' support code).
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import argparse
import asyncio
import functools
import hashlib
import io
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from resource import RUSAGE_CHILDREN, RUSAGE_SELF
from typing import Any

from isal import igzip, igzip_threaded
from tests.support.fixture_images import build_fixture, skopeo_push
from tests.support.net import free_port, wait_until
from tests.support.registry import Registry, start_registry

from multiarch_mirror.build import BuildJob
from multiarch_mirror.build.assemble import AssembleBuilder, AssembleResult, AssembleSettings
from multiarch_mirror.build.layers import BLOCK_SIZE, COMPRESS_LEVEL
from multiarch_mirror.config import AssembleRecipe
from multiarch_mirror.demo.binaries import busybox_binaries
from multiarch_mirror.oci.client import RegistryClient
from multiarch_mirror.oci.media import Platform
from multiarch_mirror.oci.reference import Reference
from multiarch_mirror.oci.store import RegistryStore
from multiarch_mirror.template import TemplateContext

VERSION = "1.0.0"
ARCHES = ("amd64", "arm64")
MB = 1 << 20
#: One file in the artifact per this many bytes.
FILE_SIZE = 4 * MB


def _text_block(size: int) -> bytes:
    """Word soup: compresses about as well as source code and templates do."""
    rng = random.Random(7)
    words = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz_", k=rng.randint(2, 10)))
        for _ in range(5000)
    ]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choices(words, k=12)) + "\n").encode()
    return bytes(out[:size])


def make_artifact(path: Path, busybox: Path, size: int) -> None:
    """A ~`size`-byte `tar.gz` release: bin/busybox, then data files (60% text, 40% random)."""
    text = _text_block(8 * MB)
    top = path.name.removesuffix(".tar.gz")
    with (
        path.open("wb") as raw,
        igzip.open(raw, "wb", compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w|") as tar,
    ):
        data = busybox.read_bytes()
        info = tarfile.TarInfo(f"{top}/bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        index = 0
        while raw.tell() < size:
            if index % 5 < 3:
                start = (index * 1_234_567) % (len(text) - FILE_SIZE)
                chunk = text[start : start + FILE_SIZE]
            else:
                chunk = os.urandom(FILE_SIZE)
            info = tarfile.TarInfo(f"{top}/data/{index:05}.dat")
            info.size = len(chunk)
            tar.addfile(info, io.BytesIO(chunk))
            index += 1


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Static files from `directory` over loopback HTTP, from a process of their own.

    The upstream's CPU is not the builder's: (b) and (c) both download from it, and neither
    is charged for serving.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve-child", str(directory), str(port)]
    )
    try:
        wait_until(lambda: _accepts(port), what="the artifact server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def serve_child(directory: str, port: int) -> None:
    """Child-process mode: serve `directory` with sendfile until terminated."""
    handler = functools.partial(_SendfileHandler, directory=directory)
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


class _SendfileHandler(SimpleHTTPRequestHandler):
    """Files go out with sendfile(2), as a production web server sends them."""

    def copyfile(self, source: Any, outputfile: Any) -> None:
        self.wfile.flush()
        self.connection.sendfile(source)

    def log_message(self, format: str, *args: object) -> None:
        pass


def recipe(upstream: str, base: str) -> AssembleRecipe:
    return AssembleRecipe.model_validate(
        {
            "kind": "assemble",
            "base": base,
            "artifacts": [
                {
                    "url": upstream + "/app-{version}-linux-{arch}.tar.gz",
                    "format": "tar.gz",
                    "checksums_url": upstream + "/SHA256SUMS",
                    "strip_components": 1,
                    "dest": "/app",
                }
            ],
            "uid": 1000,
            "gid": 1000,
            "config": {"entrypoint": ["/app/bin/busybox"], "cmd": ["sh"]},
        }
    )


def job(arch: str) -> BuildJob:
    return BuildJob(
        id=f"app-{VERSION}-{arch}",
        app="app",
        image="app",
        version=VERSION,
        platform=Platform(os="linux", architecture=arch),
    )


def render(template: str, build_job: BuildJob) -> str:
    return TemplateContext.for_(build_job.version, build_job.platform).render(template)


async def assemble_all(
    upstream: str, base: str, registry: str, state: Path, arches: tuple[str, ...] = ARCHES
) -> list[AssembleResult]:
    """Both platforms into a fresh repository, from a fresh state directory."""
    repository = f"{registry}/assemble-{uuid.uuid4().hex[:8]}/app"
    async with RegistryClient() as client:
        builder = AssembleBuilder(recipe(upstream, base), render, AssembleSettings(client, state))
        target = RegistryStore(client, Reference.parse(repository))
        # Two builds at once, as `sync` runs the platforms of a version by default.
        return list(await asyncio.gather(*(builder.assemble(job(arch), target) for arch in arches)))


def floor(tar_path: Path) -> None:
    """What any writer of this layer must do: compress the tar and hash both sides."""
    threads = os.cpu_count() or 1
    sink = _NullHashingSink()
    tar_hash = hashlib.sha256()
    with (
        tar_path.open("rb") as source,
        igzip_threaded.open(
            sink, "wb", compresslevel=COMPRESS_LEVEL, threads=threads, block_size=BLOCK_SIZE
        ) as compressor,
    ):
        while chunk := source.read(BLOCK_SIZE):
            tar_hash.update(chunk)
            compressor.write(chunk)


def floor_with_unpacking(artifacts: list[Path], tars: list[Path]) -> None:
    """(a) plus the least that reading each release tarball costs: sha256 it and inflate it.

    The platforms at once, as (b) builds them; no network, no parsing, no registry.
    """

    def one(artifact: Path, tar_path: Path) -> None:
        with artifact.open("rb") as file:
            hashlib.file_digest(file, "sha256")
        with igzip.open(artifact, "rb") as unpacked:
            while unpacked.read(BLOCK_SIZE):
                pass
        floor(tar_path)

    with ThreadPoolExecutor(len(artifacts)) as pool:
        list(pool.map(one, artifacts, tars))


class _NullHashingSink:
    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return len(data)

    def flush(self) -> None:
        pass


def buildah_all(upstream: str, base: str, registry: str, work: Path) -> None:
    """Download each tarball, `FROM base` + `ADD tarball`, build, push: what (b) replaces.

    Both platforms at once, as `sync` would run them.
    """
    storage = ["--root", str(work / "root"), "--runroot", str(work / "runroot")]
    repository = f"{registry}/buildah-{uuid.uuid4().hex[:8]}/app"

    def one(arch: str) -> None:
        context = work / f"context-{arch}"
        context.mkdir(parents=True)
        name = f"app-{VERSION}-linux-{arch}.tar.gz"
        _run(["curl", "-fsS", "-o", str(context / name), f"{upstream}/{name}"])
        (context / "Dockerfile").write_text(f"FROM {base}\nADD {name} /app/\n")
        tag = f"localhost/bench-{arch}:{VERSION}"
        platform = f"linux/{arch}"
        build = ["build", "--quiet", "--tls-verify=false", "--platform", platform, "-t", tag]
        _run(["buildah", *storage, *build, str(context)])
        push = ["push", "--quiet", "--tls-verify=false", tag, f"docker://{repository}:{arch}"]
        _run(["buildah", *storage, *push])

    with ThreadPoolExecutor(len(ARCHES)) as pool:
        list(pool.map(one, ARCHES))


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()[-2000:]}")


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds, CPU seconds of this process plus its finished children, and CPU
    seconds the registry spent meanwhile (receiving and storing what was pushed)."""

    wall: float
    cpu: float
    registry_cpu: float

    @staticmethod
    def median(timings: list[Timing]) -> Timing:
        return Timing(
            statistics.median(t.wall for t in timings),
            statistics.median(t.cpu for t in timings),
            statistics.median(t.registry_cpu for t in timings),
        )


def _timed(action: Callable[[], object], registry: Registry) -> Timing:
    def cpu() -> float:
        own, children = (resource.getrusage(who) for who in (RUSAGE_SELF, RUSAGE_CHILDREN))
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def registry_cpu() -> float:
        fields = Path(f"/proc/{registry.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    start_wall, start_cpu, start_registry = time.perf_counter(), cpu(), registry_cpu()
    action()
    return Timing(
        time.perf_counter() - start_wall, cpu() - start_cpu, registry_cpu() - start_registry
    )


def rss_child(upstream: str, base: str, registry: str) -> None:
    """Child-process mode: assemble amd64 once, print the peak RSS in bytes as JSON."""
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as state:
        asyncio.run(assemble_all(upstream, base, registry, Path(state), ("amd64",)))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss": peak_kib * 1024}))


def publish_artifacts(
    directory: Path, busybox: dict[str, Path], total: int, arches: tuple[str, ...] = ARCHES
) -> None:
    sums = []
    for arch in arches:
        path = directory / f"app-{VERSION}-linux-{arch}.tar.gz"
        make_artifact(path, busybox[arch], total)
        with path.open("rb") as file:
            sums.append(f"{hashlib.file_digest(file, 'sha256').hexdigest()}  {path.name}\n")
    (directory / "SHA256SUMS").write_text("".join(sums))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-mb", type=int, default=100)
    parser.add_argument("--rss-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rss-child", nargs=3, metavar=("UPSTREAM", "BASE", "REGISTRY"))
    parser.add_argument("--serve-child", nargs=2, metavar=("DIRECTORY", "PORT"))
    args = parser.parse_args()
    if args.serve_child:
        serve_child(args.serve_child[0], int(args.serve_child[1]))
        return
    if args.rss_child:
        rss_child(*args.rss_child)
        return

    busybox = busybox_binaries()
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache", prefix="bench-assemble-") as tmp:
        work = Path(tmp)
        registry = start_registry(work / "registry")
        try:
            run_bench(args, work, registry, busybox)
        finally:
            registry.stop()


def run_bench(
    args: argparse.Namespace, work: Path, registry: Registry, busybox: dict[str, Path]
) -> None:
    load = f"{os.getloadavg()[0]:.1f}"
    base = f"{registry.host}/bases/busybox:1"
    skopeo_push(build_fixture(work / "base-layout", busybox), base)
    releases = work / "releases"
    releases.mkdir()
    publish_artifacts(releases, busybox, args.artifact_mb * MB)
    artifact_bytes = sum(p.stat().st_size for p in releases.glob("*.tar.gz"))
    with serve_directory(releases) as upstream:
        # The floor works on the very tar bytes assemble puts in each layer.
        results = asyncio.run(assemble_all(upstream, base, registry.host, work / "probe"))
        tars = []
        for arch, result in zip(ARCHES, results, strict=True):
            hex_digest = result.layer.digest.removeprefix("sha256:")
            blob = registry.root / "data/docker/registry/v2/blobs/sha256" / hex_digest[:2]
            tar_path = work / f"layer-{arch}.tar"
            with igzip.open(blob / hex_digest / "data", "rb") as gz, tar_path.open("wb") as out:
                shutil.copyfileobj(gz, out, BLOCK_SIZE)
            tars.append(tar_path)
        layer_bytes = sum(r.layer.size for r in results)

        artifacts = [releases / f"app-{VERSION}-linux-{arch}.tar.gz" for arch in ARCHES]
        floors: list[Timing] = []
        unpacking: list[Timing] = []
        ours: list[Timing] = []
        theirs: list[Timing] = []
        for run in range(args.runs):
            state, build_dir = work / f"state-{run}", work / f"buildah-{run}"
            floors.append(_timed(lambda: [floor(t) for t in tars], registry))
            unpacking.append(_timed(lambda: floor_with_unpacking(artifacts, tars), registry))
            ours.append(
                _timed(
                    lambda s=state: asyncio.run(assemble_all(upstream, base, registry.host, s)),
                    registry,
                )
            )
            theirs.append(
                _timed(lambda d=build_dir: buildah_all(upstream, base, registry.host, d), registry)
            )
            shutil.rmtree(build_dir, ignore_errors=True)

        a, a_plus, b, c = (Timing.median(x) for x in (floors, unpacking, ours, theirs))
        rss = rss_measure(work, busybox, args.rss_mb, base, registry.host)
    print(
        f"artifacts: {artifact_bytes / MB:.0f} MB (2 platforms), layers: {layer_bytes / MB:.0f} MB"
    )
    print(f"load average before/after: {load} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("                  wall      cpu  registry cpu")
    for label, t in (
        ("(a) floor", a),
        ("(a+) + unpack", a_plus),
        ("(b) assemble", b),
        ("(c) buildah", c),
    ):
        print(f"{label:14} {t.wall:6.2f} s {t.cpu:6.2f} s {t.registry_cpu:6.2f} s")
    print(f"(b)/(a) = {b.wall / a.wall:.2f} wall, {b.cpu / a.cpu:.2f} cpu  (target <= 1.5)")
    print(f"(a+)/(a) = {a_plus.wall / a.wall:.2f} wall, {a_plus.cpu / a.cpu:.2f} cpu")
    print(f"(b)/(a+) = {b.wall / a_plus.wall:.2f} wall, {b.cpu / a_plus.cpu:.2f} cpu")
    print(f"(c)/(b) = {c.wall / b.wall:.2f} wall, {c.cpu / b.cpu:.2f} cpu  (target >= 3)")
    print(f"peak RSS of (b) for a {args.rss_mb} MB artifact: {rss / MB:.0f} MB (target < 200 MB)")


def rss_measure(
    work: Path, busybox: dict[str, Path], size_mb: int, base: str, registry: str
) -> int:
    big = work / "big"
    big.mkdir()
    publish_artifacts(big, busybox, size_mb * MB, ("amd64",))
    with serve_directory(big) as upstream:
        child = subprocess.run(
            [sys.executable, __file__, "--rss-child", upstream, base, registry],
            capture_output=True,
            text=True,
            check=True,
        )
    return int(json.loads(child.stdout)["peak_rss"])


if __name__ == "__main__":
    main()
