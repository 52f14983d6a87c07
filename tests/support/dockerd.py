"""A real Docker Engine (`dockerd`) on its own socket, data root and exec root, for tests that
check Docker pulls and runs what we publish. Loopback registries need no insecure setting."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .net import wait_until


@dataclass
class DockerEngine:
    """A running dockerd; `run` calls the docker CLI against it (via DOCKER_HOST)."""

    host: str
    data_root: Path
    exec_root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args],
            env={**os.environ, "DOCKER_HOST": self.host},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # Whatever dockerd left mounted under its roots, deepest first.
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts]
        roots = (str(self.data_root), str(self.exec_root))
        for point in sorted((p for p in points if p.startswith(roots)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)


def start_docker_engine(workdir: Path) -> DockerEngine:
    binary = shutil.which("dockerd")
    if binary is None or shutil.which("docker") is None:
        raise RuntimeError("dockerd is not installed: run `make deps` (apt-get install docker.io)")
    workdir.mkdir(parents=True, exist_ok=True)
    # containerd's socket lives under the exec root and socket paths are limited to 108 bytes.
    exec_root = Path(tempfile.mkdtemp(prefix="dx", dir="/tmp"))
    socket = workdir / "docker.sock"
    log = workdir / "dockerd.log"
    process = subprocess.Popen(
        [
            binary,
            "--iptables=false",
            "--bridge=none",
            "--data-root",
            str(workdir / "data"),
            "--exec-root",
            str(exec_root),
            "--pidfile",
            str(workdir / "dockerd.pid"),
            "-H",
            f"unix://{socket}",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    engine = DockerEngine(
        host=f"unix://{socket}",
        data_root=workdir / "data",
        exec_root=exec_root,
        process=process,
        log=log,
    )

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited: {log.read_text()[-2000:]}")
        return socket.exists() and engine.run("version", timeout=10).returncode == 0

    try:
        wait_until(ready, timeout=60, what="dockerd")
    except BaseException:
        engine.stop()
        raise
    return engine
