"""Where credentials come from, in the order users expect, and that secrets stay hidden."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from multiarch_mirror.errors import ConfigError
from multiarch_mirror.oci.auth import (
    CredentialHelperError,
    Credentials,
    explicit_credentials,
    find_credentials,
    login_hint,
)


def write_config(directory: Path, doc: dict[str, object]) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(doc))
    return {"DOCKER_CONFIG": str(directory), "PATH": os.environ["PATH"]}


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def install_helper(bin_dir: Path, name: str, script: str) -> str:
    """A `docker-credential-<name>` script on a PATH of its own; returns that PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\n" + script)
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_config_json_auth_entry_gives_username_and_password(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {"registry.example:5000": {"auth": basic("u", "p")}}})

    creds = find_credentials("registry.example:5000", env=env)

    assert creds is not None
    assert (creds.username, creds.password) == ("u", "p")


def test_docker_hub_credentials_are_found_under_dockers_v1_key(tmp_path: Path) -> None:
    env = write_config(
        tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": basic("hub", "pw")}}}
    )

    creds = find_credentials("docker.io", env=env)

    assert creds is not None and creds.username == "hub"


def test_config_json_keys_with_a_scheme_match_the_bare_host(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {"https://ghcr.io": {"auth": basic("me", "tok")}}})

    creds = find_credentials("ghcr.io", env=env)

    assert creds is not None and creds.password == "tok"


def test_identity_token_is_kept_as_an_identity_token(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {"r.example": {"identitytoken": "refresh-me"}}})

    creds = find_credentials("r.example", env=env)

    assert creds is not None
    assert creds.identity_token == "refresh-me" and creds.password is None


def test_other_registries_get_nothing_from_config_json(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {"r.example": {"auth": basic("u", "p")}}})

    assert find_credentials("other.example", env=env) is None


def test_malformed_auth_entry_names_the_file(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {"r.example": {"auth": "%%%not base64"}}})

    with pytest.raises(ConfigError, match=r"config\.json"):
        find_credentials("r.example", env=env)


def test_cred_helper_for_the_host_is_asked_with_the_server_url(tmp_path: Path) -> None:
    env = write_config(tmp_path / "cfg", {"credHelpers": {"r.example": "fake"}})
    env["PATH"] = install_helper(
        tmp_path / "bin",
        "fake",
        'read server\necho "{\\"Username\\": \\"from-$server\\", \\"Secret\\": \\"s3\\"}"\n',
    )

    creds = find_credentials("r.example", env=env)

    assert creds is not None
    assert (creds.username, creds.password, creds.source) == (
        "from-r.example",
        "s3",
        "docker-credential-fake",
    )


def test_creds_store_is_asked_for_docker_hub_with_dockers_v1_key(tmp_path: Path) -> None:
    env = write_config(tmp_path / "cfg", {"credsStore": "fake"})
    env["PATH"] = install_helper(
        tmp_path / "bin",
        "fake",
        'read server\necho "{\\"Username\\": \\"$server\\", \\"Secret\\": \\"s\\"}"\n',
    )

    creds = find_credentials("docker.io", env=env)

    assert creds is not None and creds.username == "https://index.docker.io/v1/"


def test_helper_with_nothing_stored_means_no_credentials(tmp_path: Path) -> None:
    env = write_config(tmp_path / "cfg", {"credsStore": "fake"})
    env["PATH"] = install_helper(
        tmp_path / "bin", "fake", "echo 'credentials not found in native keychain'\nexit 1\n"
    )

    assert find_credentials("r.example", env=env) is None


def test_helper_token_username_means_identity_token(tmp_path: Path) -> None:
    env = write_config(tmp_path / "cfg", {"credsStore": "fake"})
    env["PATH"] = install_helper(
        tmp_path / "bin", "fake", 'echo \'{"Username": "<token>", "Secret": "refresh"}\'\n'
    )

    creds = find_credentials("r.example", env=env)

    assert creds is not None and creds.identity_token == "refresh"


def test_missing_helper_is_an_error_naming_it(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"credHelpers": {"r.example": "absent-helper"}})

    with pytest.raises(CredentialHelperError, match="docker-credential-absent-helper"):
        find_credentials("r.example", env=env)


def test_containers_auth_json_is_read_from_registry_auth_file(tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"r.example": {"auth": basic("pod", "man")}}}))
    env = {"DOCKER_CONFIG": str(tmp_path / "none"), "REGISTRY_AUTH_FILE": str(auth)}

    creds = find_credentials("r.example", env=env)

    assert creds is not None and creds.username == "pod" and creds.source == str(auth)


def test_containers_auth_json_is_read_from_xdg_runtime_dir(tmp_path: Path) -> None:
    (tmp_path / "containers").mkdir()
    auth = tmp_path / "containers" / "auth.json"
    auth.write_text(json.dumps({"auths": {"r.example": {"auth": basic("xdg", "pw")}}}))
    env = {"DOCKER_CONFIG": str(tmp_path / "none"), "XDG_RUNTIME_DIR": str(tmp_path)}

    creds = find_credentials("r.example", env=env)

    assert creds is not None and creds.username == "xdg"


def test_docker_config_wins_over_containers_auth_json(tmp_path: Path) -> None:
    env = write_config(tmp_path / "cfg", {"auths": {"r.example": {"auth": basic("docker", "x")}}})
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"r.example": {"auth": basic("podman", "y")}}}))
    env["REGISTRY_AUTH_FILE"] = str(auth)

    creds = find_credentials("r.example", env=env)

    assert creds is not None and creds.username == "docker"


def test_github_token_is_used_for_ghcr_only(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path), "GITHUB_TOKEN": "ghp_secret", "GITHUB_ACTOR": "bot"}

    creds = find_credentials("ghcr.io", env=env)

    assert creds is not None
    assert (creds.username, creds.password, creds.source) == ("bot", "ghp_secret", "GITHUB_TOKEN")
    assert find_credentials("quay.io", env=env) is None


def test_gh_token_is_used_for_ghcr_when_github_token_is_absent(tmp_path: Path) -> None:
    creds = find_credentials("ghcr.io", env={"DOCKER_CONFIG": str(tmp_path), "GH_TOKEN": "t"})

    assert creds is not None and creds.password == "t"


def test_explicit_credentials_win_over_config_files(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {"r.example": {"auth": basic("file", "x")}}})
    explicit = {"r.example": Credentials(username="explicit", password="y")}

    creds = find_credentials("r.example", explicit, env=env)

    assert creds is not None and creds.username == "explicit"


def test_explicit_env_credentials_belong_to_the_named_host() -> None:
    env = {
        "MIRROR_REGISTRY_USERNAME": "ci",
        "MIRROR_REGISTRY_PASSWORD": "pw",
        "MIRROR_REGISTRY_HOST": "https://ghcr.io",
    }

    creds = explicit_credentials(env)

    assert list(creds) == ["ghcr.io"]
    assert creds["ghcr.io"].username == "ci"


def test_explicit_env_credentials_without_a_host_are_refused() -> None:
    env = {"MIRROR_REGISTRY_USERNAME": "ci", "MIRROR_REGISTRY_PASSWORD": "pw"}

    with pytest.raises(ConfigError, match="MIRROR_REGISTRY_HOST"):
        explicit_credentials(env)


def test_credentials_never_show_their_secret() -> None:
    creds = Credentials(username="me", password="hunter2", source="env")
    token = Credentials(identity_token="refresh-secret")

    for text in (repr(creds), str(creds), repr(token), str(token), repr([creds])):
        assert "hunter2" not in text and "refresh-secret" not in text
    assert "me" in repr(creds)


def test_login_hint_for_ghcr_mentions_github_token() -> None:
    assert "docker login ghcr.io" in login_hint("ghcr.io")
    assert "GITHUB_TOKEN" in login_hint("ghcr.io")
    assert "GITHUB_TOKEN" not in login_hint("quay.io")
