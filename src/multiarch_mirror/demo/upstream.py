"""The demo's upstream: a GitHub-shaped releases API and per-arch release artifacts on loopback.

Releases hold Debian's busybox-static for amd64 and arm64 plus a `hello` script, packed as
`hello-<version>-linux-<arch>.tar.gz` with a `SHA256SUMS` file, as real projects publish them.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = "demo/hello"
#: (tag, prerelease, published_at): the pre-release must never be mirrored.
RELEASES = [
    ("v1.2.0-rc.1", True, "2026-11-20T10:00:00Z"),
    ("v1.1.0", False, "2026-10-01T10:00:00Z"),
    ("v1.0.0", False, "2026-09-01T10:00:00Z"),
]
ARCHES = ("amd64", "arm64")
HELLO = """#!/bin/busybox sh
echo "hello-demo {version} running on $(/bin/busybox uname -m)"
"""


def _tarball(version: str, busybox: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        top = f"hello-{version}"
        for name, data, mode in [
            (f"{top}/bin/busybox", busybox, 0o755),
            (f"{top}/bin/hello", HELLO.format(version=version).encode(), 0o755),
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class DemoUpstream:
    """A running upstream server; `url` is its base URL (also the releases API root)."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(busybox: dict[str, Path]) -> DemoUpstream:
    """Serve the demo releases on a free loopback port."""
    files: dict[str, bytes] = {}
    releases = []
    for tag, prerelease, published in RELEASES:
        version = tag.removeprefix("v")
        sums = []
        for arch in ARCHES:
            name = f"hello-{version}-linux-{arch}.tar.gz"
            data = _tarball(version, busybox[arch].read_bytes())
            files[f"/download/{tag}/{name}"] = data
            sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}")
        files[f"/download/{tag}/SHA256SUMS"] = ("\n".join(sums) + "\n").encode()
        releases.append(
            {
                "tag_name": tag,
                "name": tag,
                "draft": False,
                "prerelease": prerelease,
                "published_at": published,
                "created_at": published,
            }
        )
    files[f"/repos/{REPO}/releases"] = json.dumps(releases).encode()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            data = files.get(path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            kind = "application/json" if path.startswith("/repos/") else "application/octet-stream"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return DemoUpstream(server=server, thread=thread)
