"""Registry credentials, looked up where users already keep them.

Order: explicit settings (or `MIRROR_REGISTRY_*` env), Docker's `config.json` (`auths`,
`credHelpers`, `credsStore`), containers' `auth.json`, and `GITHUB_TOKEN`/`GH_TOKEN` for ghcr.io.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from multiarch_mirror.errors import ConfigError, MirrorError
from multiarch_mirror.oci.reference import DOCKER_HUB

#: The key Docker uses for Docker Hub in config.json and credential helpers.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
GHCR = "ghcr.io"
#: Env names for explicit credentials; MIRROR_REGISTRY_HOST names the registry they belong to.
ENV_USERNAME = "MIRROR_REGISTRY_USERNAME"
ENV_PASSWORD = "MIRROR_REGISTRY_PASSWORD"
ENV_HOST = "MIRROR_REGISTRY_HOST"
_HELPER_TIMEOUT = 30.0


class CredentialHelperError(MirrorError):
    """A `docker-credential-*` helper is missing or failed; the message names it."""


@dataclass(frozen=True)
class Credentials:
    """A username and a secret (password or token), or an OAuth2 identity (refresh) token.

    `repr`/`str` never show the secret; `source` says where they came from, for messages.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    source: str = "settings"

    def __repr__(self) -> str:
        secret = "identity token" if self.identity_token else "password"
        return (
            f"Credentials(username={self.username!r}, {secret}=<redacted>, source={self.source!r})"
        )

    __str__ = __repr__

    def basic_header(self) -> str:
        raw = f"{self.username or ''}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def _host_of(key: str) -> str:
    """`https://index.docker.io/v1/` → `docker.io`; `http://host:5000/x` → `host:5000`."""
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return DOCKER_HUB if host in {"index.docker.io", "registry-1.docker.io"} else host


def _docker_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _auth_json_paths(env: Mapping[str, str]) -> list[Path]:
    paths = []
    if env.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    return paths


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read registry credentials from {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"cannot read registry credentials from {path}: not a JSON object")
    return doc


def _from_auths(doc: Mapping[str, object], registry: str, path: Path) -> Credentials | None:
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if _host_of(key) != registry or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials(
                username=entry.get("username"),
                identity_token=str(entry["identitytoken"]),
                source=str(path),
            )
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise ConfigError(
                    f"{path}: the 'auth' entry for {key!r} is not base64 of 'user:password'"
                ) from None
            return Credentials(username=user, password=password, source=str(path))
        if entry.get("username") and entry.get("password"):
            return Credentials(
                username=str(entry["username"]), password=str(entry["password"]), source=str(path)
            )
    return None


def _helper_key(registry: str) -> str:
    return DOCKER_HUB_CONFIG_KEY if registry == DOCKER_HUB else registry


def run_credential_helper(
    name: str, registry: str, search_path: str | None = None
) -> Credentials | None:
    """Ask `docker-credential-<name> get` for `registry`; None when it has nothing stored."""
    program = f"docker-credential-{name}"
    path = shutil.which(program, path=search_path)
    if path is None:
        raise CredentialHelperError(
            f"credential helper {program} (configured for {registry}) is not on PATH; "
            "install it or remove it from your Docker config.json"
        )
    try:
        result = subprocess.run(
            [path, "get"],
            input=_helper_key(registry),
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CredentialHelperError(f"credential helper {program} failed: {exc}") from None
    if result.returncode != 0:
        # Helpers say "credentials not found in native keychain" when nothing is stored.
        if "not found" in (result.stdout + result.stderr).lower():
            return None
        raise CredentialHelperError(
            f"credential helper {program} failed for {registry} (exit {result.returncode})"
        )
    try:
        doc = json.loads(result.stdout)
        username, secret = doc["Username"], doc["Secret"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CredentialHelperError(
            f"credential helper {program} returned something other than "
            '{"Username": …, "Secret": …}'
        ) from None
    if username == "<token>":
        return Credentials(identity_token=secret, source=program)
    return Credentials(username=username, password=secret, source=program)


def _from_docker_config(registry: str, env: Mapping[str, str]) -> Credentials | None:
    path = _docker_config_path(env)
    doc = _read_json(path)
    if doc is None:
        return None
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if _host_of(key) == registry:
                return run_credential_helper(str(name), registry, env.get("PATH"))
    found = _from_auths(doc, registry, path)
    if found is not None:
        return found
    store = doc.get("credsStore")
    if isinstance(store, str) and store:
        return run_credential_helper(store, registry, env.get("PATH"))
    return None


def explicit_credentials(env: Mapping[str, str]) -> dict[str, Credentials]:
    """Credentials from `MIRROR_REGISTRY_USERNAME`/`_PASSWORD`, for `MIRROR_REGISTRY_HOST` only.

    The host is required so that a password is never offered to a registry it wasn't meant for
    (pulling a base image from Docker Hub must not send the target registry's password there).
    """
    username, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if not username and not password:
        return {}
    host = env.get(ENV_HOST)
    if not host:
        raise ConfigError(
            f"{ENV_USERNAME}/{ENV_PASSWORD} are set but {ENV_HOST} is not: set it to the "
            "registry these credentials are for, e.g. ghcr.io"
        )
    return {_host_of(host): Credentials(username=username, password=password, source="env")}


def find_credentials(
    registry: str,
    explicit: Mapping[str, Credentials] | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials | None:
    """The credentials for `registry` (a reference's registry, e.g. `docker.io`, `host:5000`)."""
    env = os.environ if env is None else env
    registry = _host_of(registry)
    if explicit and registry in explicit:
        return explicit[registry]
    found = _from_docker_config(registry, env)
    if found is not None:
        return found
    for path in _auth_json_paths(env):
        doc = _read_json(path)
        if doc is not None and (found := _from_auths(doc, registry, path)) is not None:
            return found
    if registry == GHCR:
        for name in ("GITHUB_TOKEN", "GH_TOKEN"):
            if env.get(name):
                # GHCR's token endpoint takes the token as Basic credentials (any username)
                # and answers with a registry bearer token; the raw token as bearer gets 401.
                user = env.get("GITHUB_ACTOR") or "github"
                return Credentials(username=user, password=env[name], source=name)
    return None


def login_hint(registry: str) -> str:
    """What to tell a user who has no (or wrong) credentials for `registry`."""
    hint = f"run `docker login {registry}`"
    if _host_of(registry) == GHCR:
        hint += " or set GITHUB_TOKEN"
    return hint + f" (or set {ENV_HOST}={registry}, {ENV_USERNAME} and {ENV_PASSWORD})"
