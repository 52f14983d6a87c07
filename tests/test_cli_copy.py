"""`copy`: one-line summary or JSON, tags defaulting from the source, usage errors exit 2."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from multiarch_mirror.cli import app
from tests.support.fixture_images import FixtureImage, skopeo
from tests.support.registry import Registry, start_registry
from tests.support.tls import make_certificates

runner = CliRunner()


def test_copy_prints_a_one_line_summary_when_not_on_a_terminal(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    result = runner.invoke(app, ["copy", fixture_image.location, f"oci:{tmp_path}:app:1.0"])

    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert fixture_image.digest in result.stdout
    assert "moved" in result.stdout and "skipped" in result.stdout and "mounted" in result.stdout


def test_copy_json_reports_digest_platforms_and_blob_counts(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    dest = f"oci:{tmp_path}:app:1.0"
    first = runner.invoke(app, ["--json", "copy", fixture_image.location, dest])
    second = runner.invoke(app, ["--json", "copy", fixture_image.location, dest])

    doc, again = json.loads(first.stdout), json.loads(second.stdout)
    assert doc["digest"] == fixture_image.digest
    assert doc["platforms"] == fixture_image.platforms
    assert doc["tags"] == ["app:1.0"]
    assert doc["blobsCopied"] + doc["blobsMounted"] == len(fixture_image.blobs)
    assert again["bytesMoved"] == 0
    assert again["blobsSkipped"] == len(fixture_image.blobs)


def test_copy_with_platform_filter_writes_an_index_of_just_those(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    result = runner.invoke(
        app,
        ["copy", fixture_image.location, f"oci:{tmp_path}:amd", "--platform", "linux/amd64"],
    )

    assert result.exit_code == 0, result.stderr
    index = json.loads(skopeo("inspect", "--raw", f"oci:{tmp_path}:amd"))
    assert [m["digest"] for m in index["manifests"]] == [fixture_image.platforms["linux/amd64"]]


def test_copy_to_a_layout_without_ref_reuses_the_source_tag(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    result = runner.invoke(app, ["copy", fixture_image.location, f"oci:{tmp_path}"])

    assert result.exit_code == 0, result.stderr
    assert json.loads(skopeo("inspect", f"oci:{tmp_path}:{fixture_image.ref}"))["Digest"] == (
        fixture_image.digest
    )


def test_copy_with_a_malformed_destination_exits_2_quoting_it(
    fixture_image: FixtureImage,
) -> None:
    result = runner.invoke(app, ["copy", fixture_image.location, "localhost:5000/Bad_Name:x"])

    assert result.exit_code == 2
    assert "'localhost:5000/Bad_Name:x'" in result.stderr


def test_copy_with_a_malformed_platform_exits_2_quoting_it(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    result = runner.invoke(
        app, ["copy", fixture_image.location, f"oci:{tmp_path}:x", "--platform", "arm64"]
    )

    assert result.exit_code == 2
    assert "invalid platform 'arm64'" in result.stderr
    assert not (tmp_path / "index.json").exists()


def test_copy_between_repositories_of_a_registry_reports_mounted_blobs(
    registry: Registry, fixture_image: FixtureImage
) -> None:
    first = f"{registry.host}/cli-copy/a:1.0"
    runner.invoke(app, ["copy", fixture_image.location, first])

    result = runner.invoke(app, ["--json", "copy", first, f"{registry.host}/cli-copy/b"])

    doc = json.loads(result.stdout)
    assert doc["digest"] == fixture_image.digest
    assert doc["tags"] == ["1.0"]
    assert doc["bytesMoved"] == 0
    assert doc["blobsMounted"] == len(fixture_image.blobs)
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/cli-copy/b:1.0"
    )
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == fixture_image.digest


def test_copy_on_a_terminal_draws_progress_bars_on_stderr(
    tmp_path: Path, fixture_image: FixtureImage
) -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multiarch_mirror",
            "copy",
            fixture_image.location,
            f"oci:{tmp_path}",
        ],
        stdout=subprocess.PIPE,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(secondary)
    drawn = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the process closed its end of the terminal
            break
        if not data:
            break
        drawn += data
    os.close(primary)
    stdout = process.communicate(timeout=30)[0].decode()

    assert process.returncode == 0
    assert "total" in drawn.decode() and "━" in drawn.decode()
    assert fixture_image.digest in stdout


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """HTTPS with a CA made here, and htpasswd basic auth."""
    root = tmp_path_factory.mktemp("cli-tls-registry")
    certs = make_certificates(root / "certs")
    registry = start_registry(
        root, tls_cert=certs.cert, tls_key=certs.key, tls_ca=certs.ca, htpasswd=("mirror", "s3cret")
    )
    yield registry
    registry.stop()


@pytest.fixture
def docker_login(tmp_path: Path, tls_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config.json holding the registry's credentials, as `docker login` writes it."""
    auth = base64.b64encode(b"mirror:s3cret").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {tls_registry.host: {"auth": auth}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


def test_copy_to_an_https_registry_trusts_the_ca_file_and_logs_in(
    tls_registry: Registry, docker_login: None, fixture_image: FixtureImage
) -> None:
    dest = f"{tls_registry.host}/private/busybox:1.0"
    ca = ["--ca-file", str(tls_registry.tls_ca)]

    copied = runner.invoke(app, [*ca, "copy", fixture_image.location, dest])
    inspected = runner.invoke(app, [*ca, "--json", "inspect", dest])

    assert copied.exit_code == 0, copied.stderr
    assert json.loads(inspected.stdout)["digest"] == fixture_image.digest


def test_copy_to_an_https_registry_with_an_untrusted_certificate_fails_naming_it(
    tls_registry: Registry, docker_login: None, fixture_image: FixtureImage
) -> None:
    result = runner.invoke(
        app, ["copy", fixture_image.location, f"{tls_registry.host}/private/busybox:2.0"]
    )

    assert result.exit_code == 1
    assert tls_registry.host in result.stderr
    assert "certificate" in result.stderr.lower()


def test_copy_to_a_digest_pushes_by_digest_without_a_tag(
    registry: Registry, fixture_image: FixtureImage
) -> None:
    repo = f"{registry.host}/cli-by-digest/busybox"

    pushed = runner.invoke(app, ["copy", fixture_image.location, f"{repo}@{fixture_image.digest}"])
    narrowed = runner.invoke(
        app,
        [
            "copy",
            fixture_image.location,
            f"{repo}@{fixture_image.digest}",
            "--platform",
            "linux/arm64",
        ],
    )
    listed = runner.invoke(app, ["--json", "tags", repo])

    assert pushed.exit_code == 0, pushed.stderr
    assert json.loads(listed.stdout) == []
    assert narrowed.exit_code == 1
    assert f"not the digest {repo}@{fixture_image.digest} names" in narrowed.stderr
