"""Check benchmark: `multiarch-mirror check` over a generated catalog, side by side with the
reference workflows' way (one releases request per app, one `skopeo inspect` per version).

50 apps (GitHub-releases shaped upstreams on a local server, 12 releases each, one a draft and
one a pre-release), every one of their 10 newest stable versions already tagged in a local
`docker-registry`: everything is up to date. A counting proxy in front of the registry and the
upstream server's own log count the HTTP requests.

    .venv/bin/python bench/check.py [--apps 50] [--versions 10]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator

from tests.support.faultproxy import FaultProxy
from tests.support.registry import start_registry
from tests.support.upstream import Upstream, github_release, running_upstream

from multiarch_mirror.oci.client import RegistryClient
from multiarch_mirror.oci.media import Descriptor, Manifest, MediaType
from multiarch_mirror.oci.store import open_store


def releases(versions: int) -> list[dict[str, object]]:
    stable = [github_release(f"v1.{i}.0", days=i) for i in range(versions)]
    return [
        github_release("v2.0.0", days=99, draft=True),
        github_release("v1.99.0-rc.1", days=98, prerelease=True),
        *reversed(stable),
    ]


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def tag_everything(target: str, apps: int, versions: int) -> None:
    """Every app's versions tagged on one tiny image, as an up-to-date mirror would have them."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}})
    desc = Descriptor.of(config.encode(), MediaType.OCI_CONFIG)
    manifest = Manifest(config=desc, layers=[]).to_json()
    async with RegistryClient() as client:
        for app in range(apps):
            store = open_store(f"{target}/app{app:02d}", client)
            await store.write_blob(desc, _one(config.encode()))
            for i in range(versions):
                await store.put_manifest(manifest, MediaType.OCI_MANIFEST, tag=f"1.{i}.0")


def write_catalog(root: Path, upstream: Upstream, target: str, apps: int, versions: int) -> Path:
    for app in range(apps):
        name = f"app{app:02d}"
        upstream.json(f"/repos/acme/{name}/releases", releases(versions))
        (root / "apps" / name).mkdir(parents=True)
        (root / "apps" / name / "app.yaml").write_text(
            f"name: {name}\n"
            f"upstream: {{source: github-releases, repo: acme/{name}, base_url: {upstream.url}}}\n"
            f"images:\n  - name: {name}\n"
            "    recipe: {kind: dockerfile, git: /src, ref: 'v{version}'}\n"
        )
    config = root / "mirror.yaml"
    config.write_text(f"target: {target}\nmax_versions: {versions}\n")
    return config


def run_check(config: Path) -> tuple[float, list[dict[str, object]]]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "multiarch_mirror", "--config", str(config), "--json", "check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, json.loads(result.stdout)


def run_reference(upstream: Upstream, target: str, apps: int, versions: int) -> tuple[float, int]:
    """The workflows' way: curl the releases per app, then `skopeo inspect` per version.

    Like them, it filters pre-releases after `per_page`, so it sees fewer than N versions.
    """
    started = time.perf_counter()
    inspected = 0
    for app in range(apps):
        name = f"app{app:02d}"
        body = subprocess.run(
            ["curl", "-fsS", f"{upstream.url}/repos/acme/{name}/releases?per_page={versions}"],
            capture_output=True,
            check=True,
        ).stdout
        wanted = [
            r["tag_name"].removeprefix("v")
            for r in json.loads(body)
            if not r["prerelease"] and not r["draft"]
        ]
        for version in wanted:
            inspected += 1
            subprocess.run(
                [
                    "skopeo",
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                    f"docker://{target}/{name}:{version}",
                ],
                capture_output=True,
                check=True,
            )
    return time.perf_counter() - started, inspected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--versions", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, running_upstream() as upstream:
        registry = start_registry(Path(tmp) / "registry")
        try:
            with FaultProxy(registry.host) as proxy:
                target = f"{proxy.host}/bench"
                asyncio.run(tag_everything(target, args.apps, args.versions))
                config = write_catalog(
                    Path(tmp) / "catalog", upstream, target, args.apps, args.versions
                )

                cold_upstream, cold_registry = len(upstream.requests), len(proxy.log)
                cold, _ = run_check(config)
                cold_counts = (
                    len(upstream.requests) - cold_upstream,
                    len(proxy.log) - cold_registry,
                )
                warm_upstream, warm_registry = len(upstream.requests), len(proxy.log)
                warm, statuses = run_check(config)
                warm_counts = (
                    len(upstream.requests) - warm_upstream,
                    len(proxy.log) - warm_registry,
                )
                assert all(s["status"] == "up-to-date" for s in statuses), statuses
                not_modified = sum(1 for r in upstream.requests[warm_upstream:] if r.status == 304)
                before = (len(upstream.requests), len(proxy.log))
                reference, inspected = run_reference(upstream, target, args.apps, args.versions)
                reference_counts = (
                    len(upstream.requests) - before[0],
                    len(proxy.log) - before[1],
                )
        finally:
            registry.stop()

    n = args.apps
    print(f"catalog: {n} apps x {args.versions} versions, all up to date ({os.cpu_count()} cores)")
    print("| run | wall time | upstream requests | registry requests | requests per app |")
    print("|---|---:|---:|---:|---:|")
    for label, seconds, (up, reg) in (
        ("check, cold cache", cold, cold_counts),
        ("check, cached (steady state)", warm, warm_counts),
    ):
        print(f"| {label} | {seconds:.2f} s | {up} | {reg} | {(up + reg) / n:.2f} |")
    up, reg = reference_counts
    print(
        f"| reference: curl + skopeo inspect per version ({inspected} versions) "
        f"| {reference:.2f} s | {up} | {reg} | {(up + reg) / n:.2f} |"
    )
    print(f"cached upstream answers that were 304: {not_modified}/{warm_counts[0]}")
    print(f"reference/ours (cached): {reference / warm:.1f}x")


if __name__ == "__main__":
    main()
