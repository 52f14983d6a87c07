"""`check` and `plan` against a real registry and a local upstream API, run as a user would."""

from __future__ import annotations

import asyncio
import itertools
import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from multiarch_mirror.oci.client import RegistryClient
from multiarch_mirror.oci.media import Descriptor, Manifest, MediaType
from multiarch_mirror.oci.store import open_store
from tests.support.cli import run_cli
from tests.support.registry import Registry
from tests.support.upstream import Upstream, github_release, running_upstream

_namespaces = itertools.count()

CHECK_KEYS = {
    "app",
    "image",
    "repository",
    "upstream",
    "mirrored",
    "missing",
    "latest",
    "status",
    "error",
    "held_back",
}
JOB_KEYS = {
    "id",
    "app",
    "image",
    "version",
    "platform",
    "is_latest",
    "repository",
    "depends_on",
    "published",
    "revision",
}


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as server:
        yield server


@pytest.fixture
def target(registry: Registry) -> str:
    """A fresh namespace in the shared registry, so tests never see each other's tags."""
    return f"{registry.host}/check{next(_namespaces)}"


def write_app(root: Path, name: str, body: str) -> None:
    (root / "apps" / name).mkdir(parents=True, exist_ok=True)
    (root / "apps" / name / "app.yaml").write_text(textwrap.dedent(body))


def catalog(root: Path, target: str, upstream: Upstream, *, max_versions: int = 10) -> Path:
    write_app(
        root,
        "hello",
        f"""
        name: hello
        upstream:
          source: github-releases
          repo: acme/hello
          base_url: {upstream.url}
        images:
          - name: hello
            recipe: {{kind: dockerfile, git: /src/hello, ref: 'v{{version}}'}}
        """,
    )
    config = root / "mirror.yaml"
    config.write_text(f"target: {target}\nmax_versions: {max_versions}\n")
    return config


async def _each(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


def push_tags(repository: str, *tags: str) -> None:
    """Tag a tiny real image in `repository` under each tag, through our client."""

    async def push() -> None:
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        desc = Descriptor.of(config, MediaType.OCI_CONFIG)
        manifest = Manifest(config=desc, layers=[]).to_json()
        async with RegistryClient() as client:
            store = open_store(repository, client)
            await store.write_blob(desc, _each(config))
            for tag in tags:
                await store.put_manifest(manifest, MediaType.OCI_MANIFEST, tag=tag)

    asyncio.run(push())


def check_json(config: Path, *apps: str) -> tuple[int, list[dict[str, Any]], str]:
    result = run_cli("--config", str(config), "--json", "check", *apps)
    return result.returncode, json.loads(result.stdout or "null"), result.stderr


def plan_json(config: Path, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "plan.json"
    result = run_cli("--config", str(config), "plan", "-o", str(out), *args)
    return result.returncode, json.loads(out.read_text()) if out.exists() else {}, result.stderr


RELEASES = [
    github_release("v1.2.0", days=3),
    github_release("v1.1.0", days=2),
    github_release("v1.0.0", days=1),
]


def test_check_reports_outdated_with_the_exact_missing_versions_then_up_to_date(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES)
    config = catalog(tmp_path, target, upstream)
    push_tags(f"{target}/hello", "1.0.0", "latest")

    code, (status,), _ = check_json(config)
    assert code == 0
    assert set(status) == CHECK_KEYS
    assert status["repository"] == f"{target}/hello"
    assert status["upstream"] == ["1.2.0", "1.1.0", "1.0.0"]
    assert status["mirrored"] == ["1.0.0"]
    assert status["missing"] == ["1.2.0", "1.1.0"]
    assert (status["status"], status["latest"], status["error"]) == ("outdated", "1.2.0", None)

    push_tags(f"{target}/hello", "1.1.0", "1.2.0")
    code, (status,), _ = check_json(config)
    assert (code, status["status"], status["missing"]) == (0, "up-to-date", [])


def test_second_check_asks_upstream_with_if_none_match_and_gets_304(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES)
    config = catalog(tmp_path, target, upstream)
    _, first_run, _ = check_json(config)
    _, second_run, _ = check_json(config)
    assert second_run == first_run
    first, second = upstream.requests_to("/repos/acme/hello/releases")
    assert "if-none-match" not in first.headers
    # the server answers 304 only when If-None-Match carries the ETag it gave the first time
    assert second.headers["if-none-match"]
    assert (first.status, second.status) == (200, 304)


def test_check_table_shows_newest_versions_missing_and_status(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES)
    config = catalog(tmp_path, target, upstream)
    push_tags(f"{target}/hello", "1.0.0")
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "hello" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["hello", "hello", "1.2.0", "1.0.0", "1.2.0, 1.1.0", "outdated"]


def test_latest_never_points_behind_a_mirrored_version(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    # 2.0.0 is mirrored but upstream withdrew it; backfilling 1.x must not claim `latest`
    upstream.json("/repos/acme/hello/releases", RELEASES)
    config = catalog(tmp_path, target, upstream)
    push_tags(f"{target}/hello", "2.0.0", "latest")
    code, (status,), _ = check_json(config)
    assert (code, status["latest"], status["missing"]) == (0, "2.0.0", ["1.2.0", "1.1.0", "1.0.0"])
    code, plan, _ = plan_json(config, tmp_path)
    assert code == 0
    assert plan["jobs"] and not any(job["is_latest"] for job in plan["jobs"])


def test_only_the_newest_version_is_planned_as_latest(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES)
    config = catalog(tmp_path, target, upstream)
    push_tags(f"{target}/hello", "1.1.0")
    code, plan, stderr = plan_json(config, tmp_path)
    assert code == 0, stderr
    assert [(j["version"], j["platform"], j["is_latest"]) for j in plan["jobs"]] == [
        ("1.2.0", "linux/amd64", True),
        ("1.2.0", "linux/arm64", True),
        ("1.0.0", "linux/amd64", False),
        ("1.0.0", "linux/arm64", False),
    ]
    job = plan["jobs"][0]
    assert set(job) == JOB_KEYS
    assert job["id"] == "hello-hello-1.2.0-linux-amd64"
    assert job["repository"] == f"{target}/hello"
    assert job["published"] == "2026-01-04T00:00:00Z"
    assert "4 jobs (2 image versions) written to" in stderr


def test_force_plans_versions_that_are_already_tagged(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES[:1])
    config = catalog(tmp_path, target, upstream)
    push_tags(f"{target}/hello", "1.2.0")
    assert plan_json(config, tmp_path)[1] == {"jobs": []}
    _, plan, _ = plan_json(config, tmp_path, "--force")
    assert [j["id"] for j in plan["jobs"]] == [
        "hello-hello-1.2.0-linux-amd64",
        "hello-hello-1.2.0-linux-arm64",
    ]


def test_plan_orders_a_dependent_image_after_its_base(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/wiki/releases", [github_release("v0.80.2", days=1)])
    write_app(
        tmp_path,
        "wiki",
        f"""
        name: wiki
        upstream: {{source: github-releases, repo: acme/wiki, base_url: {upstream.url}}}
        images:
          - name: wiki
            depends_on: [base-wiki]
            recipe:
              kind: dockerfile
              git: /src/wiki
              ref: 'v{{version}}'
              build_args: {{BASE: '{{image:base-wiki}}'}}
          - name: base-wiki
            recipe: {{kind: dockerfile, git: /src/wiki, ref: 'v{{version}}', dockerfile: Dockerfile.base}}
        """,
    )
    config = tmp_path / "mirror.yaml"
    config.write_text(f"target: {target}\nplatforms: [linux/arm64]\n")
    code, plan, stderr = plan_json(config, tmp_path)
    assert code == 0, stderr
    base, wiki = plan["jobs"]
    assert base["id"] == "wiki-base-wiki-0.80.2-linux-arm64"
    assert (wiki["id"], wiki["depends_on"]) == ("wiki-wiki-0.80.2-linux-arm64", [base["id"]])


def test_an_upstream_failure_is_that_apps_error_and_exit_1(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES)
    config = catalog(tmp_path, target, upstream)
    write_app(
        tmp_path,
        "gone",
        f"""
        name: gone
        upstream: {{source: github-releases, repo: acme/gone, base_url: {upstream.url}}}
        images:
          - name: gone
            recipe: {{kind: dockerfile, git: /src/gone, ref: main}}
        """,
    )
    code, statuses, stderr = check_json(config)
    assert code == 1
    gone, hello = statuses
    assert (gone["status"], hello["status"]) == ("error", "outdated")
    assert "/repos/acme/gone/releases?per_page=100: 404 Not Found" in gone["error"]
    assert "error: gone (gone): upstream: GET" in stderr


def test_named_apps_only_are_checked_and_unknown_names_exit_2(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES)
    config = catalog(tmp_path, target, upstream)
    code, statuses, _ = check_json(config, "hello")
    assert (code, [s["app"] for s in statuses]) == (0, ["hello"])
    result = run_cli("--config", str(config), "check", "helo")
    assert result.returncode == 2
    assert "no app 'helo' in" in result.stderr
    assert "(apps: hello)" in result.stderr


def test_layout_target_is_listed_by_ref_names(tmp_path: Path, upstream: Upstream) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES[:1])
    config = catalog(tmp_path, "oci:./out", upstream)
    code, (status,), stderr = check_json(config)
    assert code == 0, stderr
    assert status["repository"] == f"oci:{(tmp_path / 'out').resolve()}:hello"
    assert (status["missing"], status["status"]) == (["1.2.0"], "outdated")


def test_registry_tags_source_lists_a_real_repository(
    tmp_path: Path, upstream: Upstream, target: str, registry: Registry
) -> None:
    vendor = f"{registry.host}/vendor{next(_namespaces)}/app"
    push_tags(vendor, "3.1.0", "3.0.0", "3.2.0-rc.1", "latest")
    write_app(
        tmp_path,
        "hello",
        f"""
        name: hello
        upstream: {{source: registry-tags, image: '{vendor}'}}
        images:
          - name: hello
            recipe: {{kind: dockerfile, git: /src/hello, ref: 'v{{version}}'}}
        """,
    )
    (tmp_path / "mirror.yaml").write_text(f"target: {target}\n")
    code, (status,), stderr = check_json(tmp_path / "mirror.yaml")
    assert code == 0, stderr
    assert status["upstream"] == ["3.1.0", "3.0.0"]


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            ("recipe: {kind: dockerfile,", "recipe: {knid: dockerfile, kind: dockerfile,"),
            "apps/hello/app.yaml: images[0].recipe.knid: unknown key (did you mean 'kind'?)",
        ),
        (
            ("repo: acme/hello", "repo: acme/hello\n  include: '[0-9'"),
            "apps/hello/app.yaml: upstream.include: '[0-9' is not a valid regular expression",
        ),
        (
            ("ref: 'v{version}'", "ref: 'v{version}-{flavour}'"),
            "apps/hello/app.yaml: images[0].recipe.ref: unknown placeholder {flavour}",
        ),
    ],
    ids=["typo-key", "bad-regex", "unknown-placeholder"],
)
def test_config_mistakes_exit_2_naming_file_and_key(
    tmp_path: Path, upstream: Upstream, broken: tuple[str, str], expected: str
) -> None:
    config = catalog(tmp_path, "localhost:5000/m", upstream)
    app_file = tmp_path / "apps" / "hello" / "app.yaml"
    old, new = broken
    app_file.write_text(app_file.read_text().replace(old, new.replace("\\n", "\n")))
    result = run_cli("--config", str(config), "check", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in " ".join(result.stderr.split())
    assert upstream.requests == []


def test_missing_config_file_exits_2_saying_how_to_create_one(tmp_path: Path) -> None:
    result = run_cli("plan", cwd=tmp_path)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "mirror.yaml: no mirror configuration here" in message
    assert "target: ghcr.io/<you>/mirror" in message


def test_missing_apps_dir_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "mirror.yaml").write_text("target: localhost:5000/m\napps_dir: catalog\n")
    result = run_cli("check", cwd=tmp_path)
    assert result.returncode == 2
    assert "mirror.yaml: apps_dir: directory catalog not found" in " ".join(result.stderr.split())


def test_bad_target_exits_2_saying_what_a_target_looks_like(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "mirror.yaml").write_text("target: ghcr.io/acme/mirror:latest\n")
    result = run_cli("check", cwd=tmp_path)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "mirror.yaml: target: 'ghcr.io/acme/mirror:latest' is not a target" in message
    assert "oci:./mirror-out" in message


def test_check_table_says_which_versions_a_gate_holds_back(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES[:2])
    upstream.file("/files/hello-amd64-1.1.0")
    upstream.file("/files/hello-arm64-1.1.0")
    upstream.file("/files/hello-amd64-1.2.0")
    config = catalog(tmp_path, target, upstream)
    app_file = tmp_path / "apps" / "hello" / "app.yaml"
    app_file.write_text(
        app_file.read_text().replace(
            "  base_url:",
            f"  gates: [{{url_exists: '{upstream.url}/files/hello-{{arch}}-{{version}}'}}]\n"
            "  base_url:",
        )
    )
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 0, result.stderr
    assert f"hello 1.2.0 held back: {upstream.url}/files/hello-arm64-1.2.0 is not there yet" in (
        " ".join(result.stdout.split())
    )
    _, (status,), _ = check_json(config)
    assert (status["upstream"], status["missing"]) == (["1.1.0"], ["1.1.0"])
    assert status["held_back"] == [
        {"version": "1.2.0", "reason": f"{upstream.url}/files/hello-arm64-1.2.0 is not there yet"}
    ]


def test_plan_without_output_file_prints_the_plan_json(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES[:1])
    config = catalog(tmp_path, target, upstream)
    result = run_cli("--config", str(config), "plan")
    assert result.returncode == 0, result.stderr
    assert [job["id"] for job in json.loads(result.stdout)["jobs"]] == [
        "hello-hello-1.2.0-linux-amd64",
        "hello-hello-1.2.0-linux-arm64",
    ]


def test_apps_sharing_an_upstream_share_one_request(
    tmp_path: Path, upstream: Upstream, target: str
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES)
    config = catalog(tmp_path, target, upstream)
    write_app(
        tmp_path,
        "twin",
        f"""
        name: twin
        upstream: {{source: github-releases, repo: acme/hello, base_url: {upstream.url}}}
        images:
          - name: twin
            recipe: {{kind: dockerfile, git: /src/twin, ref: main}}
        """,
    )
    code, statuses, stderr = check_json(config)
    assert code == 0, stderr
    assert [(s["app"], s["missing"]) for s in statuses] == [
        ("hello", ["1.2.0", "1.1.0", "1.0.0"]),
        ("twin", ["1.2.0", "1.1.0", "1.0.0"]),
    ]
    assert len(upstream.requests_to("/repos/acme/hello/releases")) == 1


def test_a_target_that_cannot_be_listed_claims_nothing_missing(
    tmp_path: Path, upstream: Upstream
) -> None:
    upstream.json("/repos/acme/hello/releases", RELEASES[:1])
    config = catalog(tmp_path, "oci:./out", upstream)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / "out" / "index.json").write_text("{not json")
    code, (status,), _ = check_json(config)
    assert code == 1
    assert status["status"] == "error"
    assert "index.json" in status["error"]
    assert status["upstream"] == ["1.2.0"]
    assert (status["missing"], status["latest"]) == ([], None)
    code, plan, _ = plan_json(config, tmp_path)
    assert (code, plan) == (1, {"jobs": []})
