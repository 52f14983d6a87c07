"""A real CNCF Distribution registry (`docker-registry`) on a free loopback port."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from .net import free_port, wait_until


@dataclass
class Registry:
    """A running registry: `host` is `127.0.0.1:PORT`, ready for `<host>/<repo>` references."""

    host: str
    root: Path
    process: subprocess.Popen[bytes]
    tls_ca: Path | None = None
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        return ("https" if self.tls_ca else "http") + f"://{self.host}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _binary() -> str:
    path = shutil.which("docker-registry") or shutil.which("registry")
    if not path:
        raise RuntimeError(
            "docker-registry is not installed: run `make deps` (apt-get install docker-registry)"
        )
    return path


def start_registry(
    workdir: Path,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tls_ca: Path | None = None,
    htpasswd: tuple[str, str] | None = None,
    token_auth: dict[str, str] | None = None,
) -> Registry:
    """Start a registry storing into `workdir`; with TLS and/or htpasswd basic auth if asked.

    `token_auth` is an `auth: token:` section (realm, service, issuer, rootcertbundle), as
    `tests.support.tokenserver.TokenServer.registry_auth()` makes.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if tls_cert and tls_key:
        config["http"] = {
            "addr": f"127.0.0.1:{port}",
            "tls": {"certificate": str(tls_cert), "key": str(tls_key)},
        }
    if htpasswd:
        user, password = htpasswd
        file = workdir / "htpasswd"
        subprocess.run(
            ["htpasswd", "-Bbc", str(file), user, password], check=True, capture_output=True
        )
        config["auth"] = {"htpasswd": {"realm": "test-registry", "path": str(file)}}
    if token_auth:
        config["auth"] = {"token": token_auth}
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen([_binary(), "serve", str(config_path)], stdout=log, stderr=log)
    registry = Registry(
        host=f"127.0.0.1:{port}",
        root=workdir,
        process=process,
        tls_ca=tls_ca if tls_cert else None,
        username=htpasswd[0] if htpasswd else None,
        password=htpasswd[1] if htpasswd else None,
    )

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"registry exited: {(workdir / 'registry.log').read_text()}")
        context = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else None
        try:
            urllib.request.urlopen(f"{registry.url}/v2/", timeout=1, context=context)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        return True

    wait_until(ready, what="docker-registry")
    return registry
