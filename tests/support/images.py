"""Small images pushed through our own client: a config and random layers, for client tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from multiarch_mirror.oci.media import Descriptor, Manifest, MediaType
from multiarch_mirror.oci.store import Store


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """`data` as a stream of `size`-byte chunks, like a blob read from the network."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def push_blob(
    store: Store, data: bytes, media_type: str = MediaType.OCI_LAYER_GZIP
) -> Descriptor:
    desc = Descriptor.of(data, media_type)
    await store.write_blob(desc, lambda: chunks_of(data))
    return desc


async def push_small_image(
    store: Store, *, tag: str | None = None, architecture: str = "amd64", layer_size: int = 3000
) -> Descriptor:
    """A single-platform OCI image (config + one random layer); tagged only if `tag` is given."""
    config = (
        f'{{"architecture":"{architecture}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}'
    ).encode()
    layer = await push_blob(store, os.urandom(layer_size))
    config_desc = await push_blob(store, config, MediaType.OCI_CONFIG)
    manifest = Manifest(config=config_desc, layers=[layer]).to_json()
    return await store.put_manifest(manifest, MediaType.OCI_MANIFEST, tag=tag)
