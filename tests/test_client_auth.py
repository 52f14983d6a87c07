"""The client against a real HTTPS registry with htpasswd basic auth (certificates made here)."""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from multiarch_mirror.oci.auth import Credentials
from multiarch_mirror.oci.client import (
    AuthenticationError,
    RegistryClient,
    RegistryError,
    RegistrySettings,
)
from multiarch_mirror.oci.media import Descriptor, MediaType
from multiarch_mirror.oci.reference import Reference
from multiarch_mirror.oci.store import RegistryStore
from tests.support.registry import Registry, start_registry
from tests.support.tls import make_certificates

PASSWORD = "s3cr3t-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("tls-registry")
    certs = make_certificates(root / "certs")
    registry = start_registry(
        root,
        tls_cert=certs.cert,
        tls_key=certs.key,
        tls_ca=certs.ca,
        htpasswd=("mirror", PASSWORD),
    )
    yield registry
    registry.stop()


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test starts with an empty Docker config and no credential env."""
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "GITHUB_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return config_dir


def settings_for(registry: Registry) -> RegistrySettings:
    return RegistrySettings(ca_file=registry.tls_ca)


def write_docker_config(config_dir: Path, doc: dict[str, object]) -> None:
    (config_dir / "config.json").write_text(json.dumps(doc))


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def round_trip(registry: Registry) -> bytes:
    """Push a blob and read it back through a fresh client; returns the bytes read."""
    data = os.urandom(2048)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
    async with RegistryClient(settings_for(registry)) as client:
        store = RegistryStore(client, Reference.parse(f"{registry.host}/auth/{uuid.uuid4().hex}"))
        await store.write_blob(desc, one_chunk(data))
        async with store.read_blob(desc) as chunks:
            return b"".join([chunk async for chunk in chunks])


async def test_credentials_from_docker_config_json_authenticate(
    tls_registry: Registry, no_ambient_credentials: Path
) -> None:
    auth = base64.b64encode(f"mirror:{PASSWORD}".encode()).decode()
    write_docker_config(no_ambient_credentials, {"auths": {tls_registry.host: {"auth": auth}}})

    data = await round_trip(tls_registry)

    assert len(data) == 2048


async def test_credentials_from_a_credential_helper_on_path_authenticate(
    tls_registry: Registry,
    no_ambient_credentials: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-testvault"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        f'[ "$server" = "{tls_registry.host}" ] || exit 1\n'
        f'echo \'{{"ServerURL": "{tls_registry.host}", "Username": "mirror", '
        f'"Secret": "{PASSWORD}"}}\'\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    write_docker_config(no_ambient_credentials, {"credsStore": "testvault"})

    data = await round_trip(tls_registry)

    assert len(data) == 2048


async def test_missing_credentials_give_a_401_naming_the_registry_and_how_to_log_in(
    tls_registry: Registry,
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await round_trip(tls_registry)

    message = str(caught.value)
    assert message.startswith(f"401 from {tls_registry.host} for auth/")
    assert "no credentials found" in message
    assert f"docker login {tls_registry.host}" in message


async def test_rejected_credentials_say_where_they_came_from_without_the_secret(
    tls_registry: Registry, no_ambient_credentials: Path
) -> None:
    wrong = "wrong-" + PASSWORD
    auth = base64.b64encode(f"mirror:{wrong}".encode()).decode()
    write_docker_config(no_ambient_credentials, {"auths": {tls_registry.host: {"auth": auth}}})

    with pytest.raises(AuthenticationError) as caught:
        await round_trip(tls_registry)

    message = str(caught.value)
    assert "were rejected" in message and "config.json" in message
    assert wrong not in message and wrong not in repr(caught.value.args)


async def test_explicit_credentials_authenticate_and_stay_out_of_reprs(
    tls_registry: Registry,
) -> None:
    creds = Credentials(username="mirror", password=PASSWORD)
    settings = RegistrySettings(ca_file=tls_registry.tls_ca, credentials={tls_registry.host: creds})
    data = os.urandom(100)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
    async with RegistryClient(settings) as client:
        store = RegistryStore(client, Reference.parse(f"{tls_registry.host}/auth/explicit"))
        await store.write_blob(desc, one_chunk(data))

        assert await store.blob_exists(desc.digest)
    assert PASSWORD not in repr(settings) and PASSWORD not in repr(store)


async def test_an_untrusted_certificate_is_reported_with_the_fix(tls_registry: Registry) -> None:
    async with RegistryClient(RegistrySettings(ca_file=None)) as client:
        store = RegistryStore(client, Reference.parse(f"{tls_registry.host}/auth/x"))
        with pytest.raises(RegistryError, match=r"not trusted.*--ca-file"):
            await store.list_tags()


async def test_a_host_named_insecure_is_spoken_to_without_verifying_its_certificate(
    tls_registry: Registry,
) -> None:
    creds = Credentials(username="mirror", password=PASSWORD)
    settings = RegistrySettings(
        ca_file=None,
        insecure_registries=frozenset({tls_registry.host}),
        credentials={tls_registry.host: creds},
    )
    async with RegistryClient(settings) as client:
        store = RegistryStore(client, Reference.parse(f"{tls_registry.host}/auth/insecure"))
        data = os.urandom(10)
        desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
        await store.write_blob(desc, one_chunk(data))

        assert await store.blob_exists(desc.digest)
