"""Real 2-platform busybox images, assembled by hand into an OCI layout (independently of
the code under test) and pushed with skopeo: the images copy and inspect tests work on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
PLATFORMS = {"amd64": "linux/amd64", "arm64": "linux/arm64"}


@dataclass(frozen=True)
class FixtureImage:
    """An image index on disk: `layout` holds it under ref name `ref`."""

    layout: Path
    ref: str
    digest: str
    platforms: dict[str, str]  # "linux/arm64" -> manifest digest
    blobs: frozenset[str]  # every config and layer digest

    @property
    def location(self) -> str:
        return f"oci:{self.layout}:{self.ref}"


def skopeo(*args: str) -> str:
    """Run skopeo (TLS verification off: the test registries are plain-HTTP loopback)."""
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def skopeo_push(image: FixtureImage, dest: str, *, docker_format: bool = False) -> None:
    """`skopeo copy --all` the fixture to `docker://dest` (as Docker schema 2 if asked)."""
    fmt = ["--format", "v2s2"] if docker_format else []
    skopeo("copy", "--all", *fmt, "--dest-tls-verify=false", image.location, f"docker://{dest}")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(binary: Path, extra: bytes) -> tuple[bytes, bytes]:
    """A reproducible tar holding bin/busybox (+ a marker file), and its gzip."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bin")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        data = binary.read_bytes()
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("etc/fixture")
        info.size = len(extra)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(extra))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, compresslevel=1, mtime=0)


def build_fixture(layout: Path, busybox: dict[str, Path], *, ref: str = "busybox") -> FixtureImage:
    """Write a linux/amd64 + linux/arm64 busybox index into the OCI layout `layout`."""
    blob_dir = layout / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = _digest(data)
        (blob_dir / digest.removeprefix("sha256:")).write_bytes(data)
        return digest

    children = []
    platforms: dict[str, str] = {}
    blobs: set[str] = set()
    for arch, platform in PLATFORMS.items():
        tar_bytes, gz = _layer(busybox[arch], f"{ref} {platform}\n".encode())
        layer_digest = put(gz)
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/busybox", "sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(tar_bytes)]},
        }
        config_bytes = json.dumps(config).encode()
        config_digest = put(config_bytes)
        blobs |= {layer_digest, config_digest}
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": len(gz)}],
        }
        # Indented, not canonical JSON: a copy that re-serialises instead of copying the
        # raw bytes would change the digest and fail the tests.
        manifest_bytes = json.dumps(manifest, indent=2).encode()
        platforms[platform] = put(manifest_bytes)
        children.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": platforms[platform],
                "size": len(manifest_bytes),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
    index_bytes = json.dumps(index, indent=2).encode()
    index_digest = put(index_bytes)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    top = {
        "mediaType": OCI_INDEX,
        "digest": index_digest,
        "size": len(index_bytes),
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }
    (layout / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]})
    )
    return FixtureImage(
        layout=layout, ref=ref, digest=index_digest, platforms=platforms, blobs=frozenset(blobs)
    )
