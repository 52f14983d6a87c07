"""The client through a fault-injecting proxy: retries end with correct digests, or fail cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from multiarch_mirror.oci.client import (
    DigestMismatchError,
    RegistryClient,
    RegistrySettings,
    RegistryUnavailableError,
    RetryPolicy,
)
from multiarch_mirror.oci.media import Descriptor, ManifestError, MediaType
from multiarch_mirror.oci.reference import Reference
from multiarch_mirror.oci.store import RegistryStore
from tests.support.faultproxy import Fault, FaultPlan, FaultProxy, Response
from tests.support.images import chunks_of, push_small_image
from tests.support.registry import Registry

FAST = RetryPolicy(max_attempts=5, max_seconds=15.0, base_delay=0.05, max_delay=0.3)
UPLOAD_PUT = r"PUT /v2/.*/blobs/uploads/"
BLOB_GET = r"GET /v2/.*/blobs/sha256:"


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.host) as proxy:
        yield proxy


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(RegistrySettings(credentials={}, retry=FAST)) as client:
        yield client


def repo() -> str:
    return f"faults/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(proxy: FaultProxy, client: RegistryClient) -> RegistryStore:
    """A repository reached through the proxy."""
    return RegistryStore(client, Reference.parse(f"{proxy.host}/{repo()}"))


def blob(size: int = 600_000) -> tuple[Descriptor, bytes]:
    data = os.urandom(size)
    return Descriptor.of(data, MediaType.OCI_LAYER_GZIP), data


async def read_digest(store: RegistryStore, desc: Descriptor) -> str:
    hasher = hashlib.sha256()
    async with store.read_blob(desc) as chunks:
        async for chunk in chunks:
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


async def test_upload_restarts_a_fresh_session_after_connection_resets(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    desc, data = blob()
    proxy.add(FaultPlan(Fault.reset(), match=UPLOAD_PUT, limit=2))

    await store.write_blob(desc, lambda: chunks_of(data))

    assert await read_digest(store, desc) == desc.digest
    assert proxy.injected == 2
    assert len(proxy.requests(r"POST /v2/.*/blobs/uploads/")) == 3  # one session per attempt


async def test_chunked_upload_survives_resets_and_500s(
    proxy: FaultProxy, registry: Registry
) -> None:
    desc, data = blob(300_000)
    proxy.add(FaultPlan(Fault.reset(), match=r"PATCH ", every=2, limit=1))
    proxy.add(FaultPlan(Fault.error(500), match=r"PATCH ", every=3, limit=1))
    settings = RegistrySettings(
        credentials={}, retry=FAST, chunked_uploads=True, chunk_size=64 * 1024
    )
    async with RegistryClient(settings) as client:
        store = RegistryStore(client, Reference.parse(f"{proxy.host}/{repo()}"))
        await store.write_blob(desc, lambda: chunks_of(data, 10_000))

        assert await read_digest(store, desc) == desc.digest
    assert proxy.injected == 2


async def test_a_registry_refusing_one_request_uploads_gets_chunks(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    desc, data = blob(300_000)
    proxy.add(FaultPlan(Fault.error(413), match=UPLOAD_PUT, limit=1))

    await store.write_blob(desc, lambda: chunks_of(data))

    assert await read_digest(store, desc) == desc.digest
    assert len(proxy.requests(r"^PATCH ")) == 1  # 300 kB fits in one 4 MiB chunk


def demand_chunks_of(size: int) -> Callable[[Response], None]:
    def hook(response: Response) -> None:
        response.set_header("OCI-Chunk-Min-Length", str(size))

    return hook


async def test_chunks_are_at_least_the_registrys_minimum_length(
    proxy: FaultProxy, registry: Registry
) -> None:
    desc, data = blob(300_000)
    proxy.rewrite(r"^POST /v2/.*/blobs/uploads/", demand_chunks_of(100_000))
    settings = RegistrySettings(
        credentials={}, retry=FAST, chunked_uploads=True, chunk_size=64 * 1024
    )
    async with RegistryClient(settings) as client:
        store = RegistryStore(client, Reference.parse(f"{proxy.host}/{repo()}"))
        await store.write_blob(desc, lambda: chunks_of(data, 10_000))

        assert await read_digest(store, desc) == desc.digest
    assert len(proxy.requests(r"^PATCH ")) == 3  # 100 kB each, not 5 of 64 KiB


async def test_requests_are_retried_after_500s_and_429s(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    desc, data = blob(5000)
    proxy.add(FaultPlan(Fault.error(500), match=r"POST ", limit=2))
    proxy.add(FaultPlan(Fault.error(503), match=r"HEAD ", limit=1))
    proxy.add(FaultPlan(Fault.throttle("0"), match=r"GET ", limit=2))

    await store.write_blob(desc, lambda: chunks_of(data))

    assert await store.blob_exists(desc.digest)
    assert await read_digest(store, desc) == desc.digest
    assert proxy.injected == 5


async def test_retry_after_from_a_429_holds_back_every_request_to_that_host(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    desc, data = blob(1000)
    await store.write_blob(desc, lambda: chunks_of(data))
    proxy.add(FaultPlan(Fault.throttle("1"), match=r"HEAD .*/blobs/", limit=1))

    await store.blob_exists(desc.digest)
    await store.list_tags()

    throttled_at = next(t for _, kind, t in proxy.log if kind == "status")
    later = [t for line, kind, t in proxy.log if kind is None and t > throttled_at]
    assert later and min(later) - throttled_at >= 0.9


async def test_retry_after_as_an_http_date_is_honoured(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    # An HTTP date has whole seconds: 3 s ahead is at least 2 s ahead once truncated, so the
    # check below holds however late the first request goes out (within a second).
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3))
    proxy.add(FaultPlan(Fault.throttle(when), match=r"GET .*/tags/list", limit=1))

    assert await store.list_tags() == []

    stamps = [t for line, _, t in proxy.log if "/tags/list" in line]
    assert len(stamps) == 2 and stamps[1] - stamps[0] >= 0.9


async def test_download_resumes_after_a_reset_midway_and_verifies_every_byte(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    desc, data = blob(1_000_000)
    await store.write_blob(desc, lambda: chunks_of(data))
    proxy.add(FaultPlan(Fault.reset_midway(after_bytes=300_000), match=BLOB_GET, limit=2))

    assert await read_digest(store, desc) == desc.digest
    assert len(proxy.requests(BLOB_GET)) == 3


def redirect_to(host: str) -> Callable[[Response], None]:
    """Answer a blob GET with a redirect to the registry itself, as registries do to storage."""

    def hook(response: Response) -> None:
        response.status, response.reason, response.body = 307, "Temporary Redirect", b""
        response.set_header("Location", f"http://{host}{response.path}")
        response.set_header("Content-Type", None)

    return hook


async def test_blob_downloads_follow_redirects_and_verify(
    store: RegistryStore, proxy: FaultProxy, registry: Registry
) -> None:
    desc, data = blob(100_000)
    await store.write_blob(desc, lambda: chunks_of(data))
    proxy.rewrite(BLOB_GET, redirect_to(registry.host))

    assert await read_digest(store, desc) == desc.digest
    assert len(proxy.requests(BLOB_GET)) == 1


async def test_slow_responses_still_complete_correctly(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    desc, data = blob(200_000)
    proxy.add(FaultPlan(Fault.slow(0.2), every=2))

    await store.write_blob(desc, lambda: chunks_of(data))
    pushed = await push_small_image(store, tag="1.0")

    assert await read_digest(store, desc) == desc.digest
    assert (await store.resolve("1.0")) == pushed
    assert proxy.injected > 0


async def test_tagged_manifest_put_is_retried_to_the_same_tag(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    proxy.add(FaultPlan(Fault.error(502), match=r"PUT .*/manifests/", limit=2))

    pushed = await push_small_image(store, tag="2.0")

    assert await store.list_tags() == ["2.0"]
    assert (await store.resolve("2.0")) == pushed


async def test_endless_faults_on_the_tag_fail_within_the_bound_and_write_no_tag(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    proxy.add(FaultPlan(Fault.error(500), match=r"PUT .*/manifests/1\.0"))

    with pytest.raises(RegistryUnavailableError) as caught:
        await push_small_image(store, tag="1.0")

    message = str(caught.value)
    assert f"on {proxy.host} failed after {FAST.max_attempts} attempt(s)" in message
    assert "500 UNAVAILABLE: injected fault" in message
    proxy.clear()
    assert await store.list_tags() == []
    assert len(proxy.requests(r"PUT .*/manifests/1\.0")) == FAST.max_attempts


async def test_endless_connection_resets_fail_the_upload_and_store_nothing(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    desc, data = blob(100_000)
    proxy.add(FaultPlan(Fault.reset(), match=UPLOAD_PUT))

    with pytest.raises(RegistryUnavailableError, match=rf"upload of {desc.digest}"):
        await store.write_blob(desc, lambda: chunks_of(data))

    proxy.clear()
    assert not await store.blob_exists(desc.digest)


async def test_a_blob_served_with_wrong_bytes_is_refused_and_not_copied(
    store: RegistryStore, proxy: FaultProxy, client: RegistryClient, registry: Registry
) -> None:
    desc, data = blob(50_000)
    await store.write_blob(desc, lambda: chunks_of(data))
    proxy.add(FaultPlan(Fault.corrupt(), match=BLOB_GET))
    destination = RegistryStore(client, Reference.parse(f"{registry.host}/{repo()}"))

    async def from_source() -> AsyncIterator[bytes]:
        async with store.read_blob(desc) as chunks:
            async for chunk in chunks:
                yield chunk

    with pytest.raises(DigestMismatchError, match=desc.digest):
        await destination.write_blob(desc, from_source())

    assert not await destination.blob_exists(desc.digest)


async def test_a_manifest_served_with_wrong_bytes_is_refused(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    pushed = await push_small_image(store)
    proxy.add(FaultPlan(Fault.corrupt(), match=r"GET .*/manifests/"))

    with pytest.raises(DigestMismatchError, match="served wrong bytes"):
        await store.get_manifest(pushed.digest)


def replace_manifest(body: bytes, media_type: str) -> Callable[[Response], None]:
    def hook(response: Response) -> None:
        response.body = body
        response.set_header("Content-Type", media_type)
        response.set_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(body).hexdigest())

    return hook


async def test_a_schema1_manifest_is_refused(store: RegistryStore, proxy: FaultProxy) -> None:
    await push_small_image(store, tag="old")
    schema1 = json.dumps({"schemaVersion": 1, "name": "x", "tag": "old", "fsLayers": []}).encode()
    proxy.rewrite(
        r"GET .*/manifests/old",
        replace_manifest(schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    )

    with pytest.raises(ManifestError, match="schema 1"):
        await store.get_manifest("old")


async def test_an_unknown_manifest_media_type_is_refused(
    store: RegistryStore, proxy: FaultProxy
) -> None:
    await push_small_image(store, tag="odd")
    odd = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example+json"}).encode()
    proxy.rewrite(r"GET .*/manifests/odd", replace_manifest(odd, "application/vnd.example+json"))

    with pytest.raises(ManifestError, match="unknown manifest media type"):
        await store.get_manifest("odd")


def paginate(*, link: bool) -> Callable[[Response], None]:
    """Turn the registry's one-page tag list into pages of `n` after `last`, as the spec says."""

    def hook(response: Response) -> None:
        url = urlsplit(response.path)
        query = parse_qs(url.query)
        tags = sorted(json.loads(response.body)["tags"])
        if "last" in query:
            tags = [t for t in tags if t > query["last"][0]]
        n = int(query["n"][0])
        page, more = tags[:n], len(tags) > n
        response.body = json.dumps({"name": "x", "tags": page}).encode()
        if more and link:
            response.set_header("Link", f'<{url.path}?n={n}&last={page[-1]}>; rel="next"')

    return hook


@pytest.mark.parametrize("link", [True, False], ids=["link-header", "n-and-last"])
async def test_tags_are_listed_across_pages(
    store: RegistryStore, proxy: FaultProxy, client: RegistryClient, link: bool
) -> None:
    pushed = await push_small_image(store)
    _, data = await store.get_manifest(pushed.digest)
    expected = [f"v{i:02d}" for i in range(7)]
    for tag in expected:
        await store.put_manifest(data, MediaType.OCI_MANIFEST, tag=tag)
    proxy.rewrite(r"GET .*/tags/list", paginate(link=link))

    tags = await client.list_tags(store.registry, store.repository, page_size=3)

    assert tags == expected
    assert len(proxy.requests(r"/tags/list")) in (3, 4)  # 3 pages (+1 empty one without Link)
