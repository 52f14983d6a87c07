"""Bearer-token auth against a real registry whose realm is a token server made in the test."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from multiarch_mirror.oci.auth import Credentials
from multiarch_mirror.oci.client import AuthenticationError, RegistryClient, RegistrySettings
from multiarch_mirror.oci.media import Descriptor, MediaType
from multiarch_mirror.oci.reference import Reference
from multiarch_mirror.oci.store import RegistryStore
from tests.support.registry import Registry, start_registry
from tests.support.tokenserver import TokenServer

PASSWORD = "pw-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(
        tmp_path_factory.mktemp("token-server"),
        users={"mirror": PASSWORD},
        refresh_tokens={"refresh-" + PASSWORD: "mirror"},
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[Registry]:
    registry = start_registry(
        tmp_path_factory.mktemp("token-registry"), token_auth=token_server.registry_auth()
    )
    yield registry
    registry.stop()


@pytest.fixture(autouse=True)
def fresh_server_state(
    token_server: TokenServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_server.log.clear()
    token_server.access_token_field = False
    token_server.narrow_first = False
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))


def client_for(registry: Registry, creds: Credentials | None) -> RegistryClient:
    credentials = {registry.host: creds} if creds else {}
    return RegistryClient(RegistrySettings(credentials=credentials))


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push_and_read(client: RegistryClient, registry: Registry, name: str) -> bytes:
    data = os.urandom(1000)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
    store = RegistryStore(client, Reference.parse(f"{registry.host}/{name}"))
    await store.write_blob(desc, one_chunk(data))
    async with store.read_blob(desc) as chunks:
        return b"".join([chunk async for chunk in chunks])


USER = Credentials(username="mirror", password=PASSWORD)


async def test_basic_credentials_are_exchanged_for_a_bearer_token(
    token_registry: Registry, token_server: TokenServer
) -> None:
    async with client_for(token_registry, USER) as client:
        data = await push_and_read(client, token_registry, "acme/app")

    assert len(data) == 1000
    assert {(r.method, r.user) for r in token_server.log} == {("GET", "mirror")}
    assert token_server.log[0].scopes == ["repository:acme/app:pull,push"]


async def test_tokens_are_cached_per_scope(
    token_registry: Registry, token_server: TokenServer
) -> None:
    async with client_for(token_registry, USER) as client:
        for _ in range(3):
            await push_and_read(client, token_registry, "acme/cached")

    scopes = sorted(" ".join(r.scopes) for r in token_server.log)
    assert scopes == ["repository:acme/cached:pull", "repository:acme/cached:pull,push"]


async def test_access_token_field_is_accepted(
    token_registry: Registry, token_server: TokenServer
) -> None:
    token_server.access_token_field = True
    async with client_for(token_registry, USER) as client:
        assert len(await push_and_read(client, token_registry, "acme/oauth")) == 1000


async def test_identity_token_is_refreshed_with_a_post(
    token_registry: Registry, token_server: TokenServer
) -> None:
    creds = Credentials(identity_token="refresh-" + PASSWORD)
    async with client_for(token_registry, creds) as client:
        assert len(await push_and_read(client, token_registry, "acme/refresh")) == 1000

    assert {r.method for r in token_server.log} == {"POST"}


async def test_identity_token_from_docker_config_json_is_refreshed(
    token_registry: Registry, token_server: TokenServer, tmp_path: Path
) -> None:
    config = {"auths": {token_registry.host: {"identitytoken": "refresh-" + PASSWORD}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    async with client_for(token_registry, None) as client:
        assert len(await push_and_read(client, token_registry, "acme/from-config")) == 1000

    assert [(r.method, r.user) for r in token_server.log] == [("POST", "mirror")] * 2


async def test_a_401_naming_a_wider_scope_gets_a_fresh_token_once(
    token_registry: Registry, token_server: TokenServer
) -> None:
    token_server.narrow_first = True
    async with client_for(token_registry, USER) as client:
        assert len(await push_and_read(client, token_registry, "acme/narrow")) == 1000

    asked = [r.scopes for r in token_server.log]
    assert asked[0] == [] and asked[1] == ["repository:acme/narrow:pull,push"]


async def test_mount_asks_for_pull_on_the_source_repository(
    token_registry: Registry, token_server: TokenServer
) -> None:
    data = os.urandom(500)
    desc = Descriptor.of(data, MediaType.OCI_LAYER_GZIP)
    async with client_for(token_registry, USER) as client:
        source = RegistryStore(client, Reference.parse(f"{token_registry.host}/acme/source"))
        target = RegistryStore(client, Reference.parse(f"{token_registry.host}/acme/target"))
        await source.write_blob(desc, one_chunk(data))

        assert await target.mount_blob(desc, source)
        assert await target.blob_exists(desc.digest)

    assert ["repository:acme/source:pull", "repository:acme/target:pull,push"] in [
        r.scopes for r in token_server.log
    ]


async def test_without_credentials_the_realm_refuses_and_the_error_says_how_to_log_in(
    token_registry: Registry,
) -> None:
    async with client_for(token_registry, None) as client:
        with pytest.raises(AuthenticationError) as caught:
            await push_and_read(client, token_registry, "acme/anon")

    assert f"from {token_registry.host} for acme/anon" in str(caught.value)
    assert f"docker login {token_registry.host}" in str(caught.value)


async def test_wrong_password_is_rejected_without_showing_it(token_registry: Registry) -> None:
    wrong = Credentials(username="mirror", password="not-" + PASSWORD)
    async with client_for(token_registry, wrong) as client:
        with pytest.raises(AuthenticationError, match="rejected") as caught:
            await push_and_read(client, token_registry, "acme/wrong")

    assert PASSWORD not in str(caught.value)
