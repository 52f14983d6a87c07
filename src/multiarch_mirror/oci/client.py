"""The OCI distribution API over HTTP (httpx, async): auth, retries, verified transfers.

One `RegistryClient` holds one connection pool, one auth state and one backoff state per
registry host, so a 429 from a host slows every request to that host.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from multiarch_mirror.errors import MirrorError
from multiarch_mirror.oci.auth import (
    Credentials,
    explicit_credentials,
    find_credentials,
    login_hint,
)
from multiarch_mirror.oci.media import (
    ACCEPT_MANIFESTS,
    Descriptor,
    ImageIndex,
    MediaType,
    parse_manifest,
    sha256_digest,
)
from multiarch_mirror.oci.reference import DOCKER_HUB, DOCKER_HUB_API, is_loopback_host

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Some registries refuse PATCH bodies over 4 MiB; the spec lets them demand a minimum.
DEFAULT_CHUNK_SIZE = 4 * MiB
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TOKEN_MARGIN = 10.0

BlobSource = Callable[[], AsyncIterable[bytes]]
"""Opens a blob's bytes from the first one; called again when an upload must restart."""


class RegistryError(MirrorError):
    """A registry answered with an error (or not at all); names the host and repository."""

    def __init__(
        self, message: str, *, host: str, repository: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.host = host
        self.repository = repository
        self.status = status


class AuthenticationError(RegistryError):
    """401/403: no credentials, or the registry refused them; says how to log in."""


class NotFoundError(RegistryError):
    """The manifest, blob or repository does not exist."""


class DigestMismatchError(RegistryError):
    """Bytes did not hash to the digest (or size) they were asked for; nothing was kept."""


class RegistryUnavailableError(RegistryError):
    """Retries were exhausted (connection errors, 408, 429, 5xx) within the retry budget."""


class TransferInterruptedError(RegistryError):
    """An upload failed after its one-shot byte stream was consumed; retry with a fresh stream."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in attempts and in total time per operation."""

    max_attempts: int = 6
    max_seconds: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 10.0


def _default_ca_file() -> Path | None:
    value = os.environ.get("SSL_CERT_FILE")
    return Path(value) if value else None


@dataclass(frozen=True)
class RegistrySettings:
    """How to reach registries. The CLI builds this from its global options.

    `credentials` maps a registry (`ghcr.io`, `host:5000`) to explicit credentials; they win
    over config files. `from_env` reads `MIRROR_REGISTRY_USERNAME`, `MIRROR_REGISTRY_PASSWORD`
    and `MIRROR_REGISTRY_HOST`.
    """

    insecure_registries: frozenset[str] = frozenset()
    ca_file: Path | None = field(default_factory=_default_ca_file)
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()
    timeout: float = 60.0
    #: Blob uploads use one streamed PUT unless this is set (or the registry refuses it).
    chunked_uploads: bool = False
    chunk_size: int = DEFAULT_CHUNK_SIZE
    #: Generous, because a copy within one registry holds a reading and a writing connection
    #: per blob in flight; the copy engine bounds how many blobs are in flight.
    max_connections_per_host: int = 32

    @classmethod
    def from_env(cls, **kwargs: Any) -> RegistrySettings:
        return cls(credentials=explicit_credentials(os.environ), **kwargs)


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` header."""

    scheme: str
    params: Mapping[str, str]

    @classmethod
    def parse(cls, header: str) -> Challenge | None:
        match = re.match(r"\s*(\w+)\s*(.*)", header)
        if not match:
            return None
        params = {
            key.lower(): quoted if quoted or not bare else bare
            for key, quoted, bare in re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]+))', match[2])
        }
        return cls(scheme=match[1].lower(), params=params)


def _merge_scopes(*scope_lists: tuple[str, ...]) -> tuple[str, ...]:
    """Union of `type:name:actions` scopes, actions merged per resource, in a stable order."""
    actions: dict[str, set[str]] = {}
    for scopes in scope_lists:
        for scope in scopes:
            for part in scope.split(" "):
                resource, _, acts = part.rpartition(":")
                if resource:
                    actions.setdefault(resource, set()).update(a for a in acts.split(",") if a)
    return tuple(f"{res}:{','.join(sorted(acts))}" for res, acts in sorted(actions.items()))


def _pull(repository: str) -> tuple[str, ...]:
    return (f"repository:{repository}:pull",)


def _push(repository: str) -> tuple[str, ...]:
    return (f"repository:{repository}:pull,push",)


def _error_detail(response: httpx.Response) -> str:
    """The registry's `{"errors": [{code, message}]}` quoted, or a short body excerpt."""
    try:
        body = response.content
    except httpx.ResponseNotRead:
        return ""
    try:
        errors = json.loads(body).get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors if e]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    text = body[:200].decode(errors="replace").strip()
    return text


def _tls_error(exc: httpx.TransportError, host: _Host) -> RegistryError | None:
    """A certificate problem is not worth retrying: say so, and how to fix it."""
    if "CERTIFICATE_VERIFY_FAILED" not in str(exc):
        return None
    return RegistryError(
        f"the TLS certificate of {host.host} is not trusted ({exc}); pass its CA with "
        "--ca-file (or SSL_CERT_FILE)",
        host=host.host,
    )


async def _failure_reason(response: httpx.Response) -> str:
    """Read (and close) a failed response, for the message of a final failure."""
    try:
        await response.aread()
    except httpx.TransportError:
        pass
    finally:
        await response.aclose()
    return f"{response.status_code} {_error_detail(response)}".strip()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Backoff:
    """One host's backoff: every request to the host waits until `resume_at`."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.resume_at = 0.0

    async def wait(self) -> None:
        delay = self.resume_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def failed(self, retry_after: float | None) -> float:
        self.failures += 1
        if retry_after is not None:
            delay = retry_after
        else:
            exp = min(self.policy.max_delay, self.policy.base_delay * 2 ** (self.failures - 1))
            delay = exp * random.uniform(0.5, 1.0)
        self.resume_at = max(self.resume_at, time.monotonic() + delay)
        return self.resume_at - time.monotonic()

    def succeeded(self) -> None:
        self.failures = 0


class _Attempts:
    """Counts one operation's attempts against the policy's attempt and time budget."""

    def __init__(self, policy: RetryPolicy, what: str, host: str) -> None:
        self.policy = policy
        self.what = what
        self.host = host
        self.started = time.monotonic()
        self.count = 0
        self.last = ""

    def next(self) -> None:
        self.count += 1

    def give_up(self, backoff: _Backoff, retry_after: float | None, reason: str) -> bool:
        """Record a failure; True when the budget is spent (the caller then raises)."""
        self.last = reason
        delay = backoff.failed(retry_after)
        elapsed = time.monotonic() - self.started
        return self.count >= self.policy.max_attempts or elapsed + delay > self.policy.max_seconds

    def error(self, repository: str | None, status: int | None) -> RegistryUnavailableError:
        elapsed = time.monotonic() - self.started
        return RegistryUnavailableError(
            f"{self.what} on {self.host} failed after {self.count} attempt(s) in {elapsed:.1f}s "
            f"(last: {self.last}); the registry is unreachable or overloaded, try again later",
            host=self.host,
            repository=repository,
            status=status,
        )


class _Host:
    """Per-host state: connection pool, scheme, challenge, tokens, backoff."""

    def __init__(self, client: RegistryClient, host: str) -> None:
        self.host = host
        self.settings = client.settings
        # Loopback and --insecure-registry hosts may speak plain HTTP: probed on first use.
        # As with Docker, a host named insecure is also spoken to over unverified HTTPS.
        loopback = is_loopback_host(host)
        insecure = host in self.settings.insecure_registries
        self.plain_allowed = loopback or insecure
        self.base = f"https://{host}"
        self.http = client.http_client(verify=not insecure, use_proxy_env=not loopback)
        self.backoff = _Backoff(self.settings.retry)
        self.challenge: Challenge | None = None
        self.pinged = False
        self.ping_lock = asyncio.Lock()
        self.tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self.token_lock = asyncio.Lock()
        self.credentials: Credentials | None = None
        self._credentials_looked_up = False
        self._credentials_lock = asyncio.Lock()
        self.registry = DOCKER_HUB if host == DOCKER_HUB_API else host

    async def lookup_credentials(self) -> Credentials | None:
        """Find credentials once, when the registry first asks; helpers run off the loop."""
        async with self._credentials_lock:
            if not self._credentials_looked_up:
                self.credentials = await asyncio.to_thread(
                    find_credentials, self.registry, self.settings.credentials
                )
                self._credentials_looked_up = True
        return self.credentials


@dataclass(frozen=True)
class UploadSession:
    """Where the registry said the rest of an upload goes, and its chunking demand."""

    location: str
    min_chunk: int


class RegistryClient:
    """The distribution API for every registry a run talks to; use as `async with`."""

    def __init__(self, settings: RegistrySettings | None = None) -> None:
        self.settings = settings or RegistrySettings()
        self._hosts: dict[str, _Host] = {}
        self._ssl: ssl.SSLContext | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        hosts, self._hosts = self._hosts, {}
        for host in hosts.values():
            await host.http.aclose()

    def http_client(self, *, verify: bool = True, use_proxy_env: bool = True) -> httpx.AsyncClient:
        """A pool for one host; `HTTPS_PROXY`/`NO_PROXY` apply except on loopback."""
        if self._ssl is None:
            ca = self.settings.ca_file
            self._ssl = ssl.create_default_context(cafile=str(ca) if ca else None)
        limit = self.settings.max_connections_per_host
        return httpx.AsyncClient(
            verify=self._ssl if verify else False,
            timeout=httpx.Timeout(self.settings.timeout, connect=min(10.0, self.settings.timeout)),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            headers={"User-Agent": "multiarch-mirror"},
            trust_env=use_proxy_env,
        )

    def _host(self, registry: str) -> _Host:
        api = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        if api not in self._hosts:
            self._hosts[api] = _Host(self, api)
        return self._hosts[api]

    # -- transport: retries and auth -------------------------------------------------------

    async def _ping(self, host: _Host) -> None:
        async with host.ping_lock:
            if host.pinged:
                return
            if host.plain_allowed and not await self._speaks_tls(host):
                host.base = f"http://{host.host}"
            response = await self._send(host, "GET", "/v2/", scopes=(), authorize=False)
            await response.aclose()
            if response.status_code == 401:
                host.challenge = Challenge.parse(response.headers.get("WWW-Authenticate", ""))
            elif response.status_code >= 400:
                raise RegistryError(
                    f"{host.host} does not look like an OCI registry: GET /v2/ answered "
                    f"{response.status_code}",
                    host=host.host,
                    status=response.status_code,
                )
            host.pinged = True

    async def _speaks_tls(self, host: _Host) -> bool:
        """One HTTPS attempt, as Docker does for insecure registries, before plain HTTP."""
        try:
            response = await host.http.get(f"https://{host.host}/v2/", timeout=5.0)
        except httpx.TransportError as exc:
            if (error := _tls_error(exc, host)) is not None:
                raise error from None
            return False
        await response.aclose()
        return True

    async def _token(self, host: _Host, scopes: tuple[str, ...], repository: str | None) -> str:
        challenge = host.challenge
        assert challenge is not None
        key = _merge_scopes(scopes)
        async with host.token_lock:
            cached = host.tokens.get(key)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            realm = challenge.params.get("realm")
            if not realm:
                raise AuthenticationError(
                    f"{host.host} sent a bearer challenge without a realm; cannot authenticate",
                    host=host.host,
                    repository=repository,
                )
            creds = await host.lookup_credentials()
            form: list[tuple[str, str]] = []
            if challenge.params.get("service"):
                form.append(("service", challenge.params["service"]))
            form += [("scope", scope) for scope in key]
            realm_host = self._host(urlsplit(realm).netloc)
            if creds and creds.identity_token:
                form += [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", creds.identity_token),
                    ("client_id", "multiarch-mirror"),
                ]
                request = realm_host.http.build_request(
                    "POST",
                    realm,
                    content=urlencode(form),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            else:
                headers = {"Authorization": creds.basic_header()} if creds else {}
                request = realm_host.http.build_request(
                    "GET", _with_query(realm, form), headers=headers
                )
            response = await self._send_built(realm_host, request, what="token request")
            await response.aread()
            if response.status_code in (401, 403):
                raise self._auth_error(host, repository, response.status_code, rejected=True)
            if response.status_code != 200:
                raise RegistryError(
                    f"token request to {urlsplit(realm).netloc} for {host.registry} failed: "
                    f"{response.status_code} {_error_detail(response)}",
                    host=host.host,
                    repository=repository,
                    status=response.status_code,
                )
            try:
                doc = response.json()
                token = doc.get("token") or doc.get("access_token")
                expires = float(doc.get("expires_in") or 60)
            except (ValueError, AttributeError):
                token = None
            if not isinstance(token, str) or not token:
                raise RegistryError(
                    f"token endpoint {urlsplit(realm).netloc} returned no token",
                    host=host.host,
                    repository=repository,
                )
            host.tokens[key] = (token, time.monotonic() + max(1.0, expires - _TOKEN_MARGIN))
            return token

    def _auth_error(
        self, host: _Host, repository: str | None, status: int, *, rejected: bool
    ) -> AuthenticationError:
        where = f"{host.registry} for {repository}" if repository else host.registry
        creds = host.credentials
        if creds is None:
            why = "no credentials found"
        elif rejected or status == 401:
            why = f"the credentials from {creds.source} were rejected or lack access to it"
        else:
            why = f"the credentials from {creds.source} do not grant access"
        return AuthenticationError(
            f"{status} from {where}: {why}; {login_hint(host.registry)}",
            host=host.host,
            repository=repository,
            status=status,
        )

    async def _authorization(
        self, host: _Host, scopes: tuple[str, ...], repository: str | None
    ) -> str | None:
        challenge = host.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = await host.lookup_credentials()
            if creds is None:
                raise self._auth_error(host, repository, 401, rejected=False)
            return creds.basic_header()
        if challenge.scheme == "bearer":
            return f"Bearer {await self._token(host, scopes, repository)}"
        raise AuthenticationError(
            f"{host.host} asks for unsupported auth scheme {challenge.scheme!r}",
            host=host.host,
            repository=repository,
        )

    async def _send_built(
        self, host: _Host, request: httpx.Request, *, what: str, stream: bool = False
    ) -> httpx.Response:
        """Send a request without auth, retrying transport errors and retryable statuses."""
        attempts = _Attempts(self.settings.retry, what, host.host)
        while True:
            attempts.next()
            await host.backoff.wait()
            try:
                response = await host.http.send(request, stream=True)
            except httpx.TransportError as exc:
                if (error := _tls_error(exc, host)) is not None:
                    raise error from None
                if attempts.give_up(host.backoff, None, f"{type(exc).__name__}: {exc}"):
                    raise attempts.error(None, None) from None
                continue
            if response.status_code in _RETRY_STATUS:
                reason = await _failure_reason(response)
                if attempts.give_up(host.backoff, _retry_after(response), reason):
                    raise attempts.error(None, response.status_code)
                continue
            host.backoff.succeeded()
            if not stream:
                await response.aread()
            return response

    async def _send(
        self,
        host: _Host,
        method: str,
        url: str,
        *,
        scopes: tuple[str, ...],
        repository: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        stream: bool = False,
        authorize: bool = True,
        follow_redirects: bool = False,
        what: str | None = None,
    ) -> httpx.Response:
        """One API call: auth (re-authenticating on 401 for a wider scope) and retries.

        A request whose body is a one-shot stream is sent once: retrying it is the caller's
        business (an upload restarts a fresh session).
        """
        if authorize:
            await self._ping(host)
        what = what or f"{method} {url.split('?', 1)[0]}"
        replayable = not isinstance(content, AsyncIterable)
        attempts = _Attempts(self.settings.retry, what, host.host)
        reauthed = False
        while True:
            attempts.next()
            request_headers = dict(headers or {})
            if authorize:
                value = await self._authorization(host, scopes, repository)
                if value:
                    request_headers["Authorization"] = value
            full = url if url.startswith(("http://", "https://")) else host.base + url
            request = host.http.build_request(
                method, full, headers=request_headers, params=params, content=content
            )
            await host.backoff.wait()
            try:
                response = await host.http.send(
                    request, stream=True, follow_redirects=follow_redirects
                )
            except httpx.TransportError as exc:
                if (error := _tls_error(exc, host)) is not None:
                    raise error from None
                if not replayable:
                    raise TransferInterruptedError(
                        f"{what} on {host.host} was interrupted: {type(exc).__name__}: {exc}",
                        host=host.host,
                        repository=repository,
                    ) from None
                if attempts.give_up(host.backoff, None, f"{type(exc).__name__}: {exc}"):
                    raise attempts.error(repository, None) from None
                continue
            status = response.status_code
            if status == 401 and authorize:
                challenge = Challenge.parse(response.headers.get("WWW-Authenticate", ""))
                await response.aclose()
                wider = challenge.params.get("scope") if challenge else None
                if not reauthed and challenge is not None and challenge.scheme == "bearer":
                    # The registry wants a scope we didn't ask for (e.g. a mount's source),
                    # or our token expired: fetch a fresh one, once.
                    reauthed = True
                    host.challenge = challenge
                    host.tokens.pop(_merge_scopes(scopes), None)
                    scopes = _merge_scopes(scopes, (wider,) if wider else ())
                    host.tokens.pop(scopes, None)
                    if not replayable:
                        raise TransferInterruptedError(
                            f"{what} on {host.host} needs a fresh token",
                            host=host.host,
                            repository=repository,
                            status=status,
                        )
                    continue
                await host.lookup_credentials()
                raise self._auth_error(host, repository, 401, rejected=host.credentials is not None)
            if status == 403 and authorize:
                await response.aclose()
                await host.lookup_credentials()
                raise self._auth_error(host, repository, 403, rejected=False)
            if status in _RETRY_STATUS:
                reason = await _failure_reason(response)
                if not replayable:
                    raise TransferInterruptedError(
                        f"{what} on {host.host} failed: {reason}",
                        host=host.host,
                        repository=repository,
                        status=status,
                    )
                if attempts.give_up(host.backoff, _retry_after(response), reason):
                    raise attempts.error(repository, status)
                continue
            host.backoff.succeeded()
            if not stream:
                try:
                    await response.aread()
                except httpx.TransportError as exc:
                    await response.aclose()
                    if attempts.give_up(host.backoff, None, f"{type(exc).__name__}: {exc}"):
                        raise attempts.error(repository, None) from None
                    continue
            return response

    def _fail(
        self, response: httpx.Response, host: _Host, repository: str | None, what: str
    ) -> RegistryError:
        status = response.status_code
        detail = _error_detail(response)
        message = f"{what} on {host.host}/{repository or ''}: {status}" + (
            f" ({detail})" if detail else ""
        )
        if status == 404:
            return NotFoundError(message, host=host.host, repository=repository, status=status)
        return RegistryError(message, host=host.host, repository=repository, status=status)

    # -- manifests -----------------------------------------------------------------------

    async def resolve(self, registry: str, repository: str, reference: str) -> Descriptor | None:
        """HEAD a manifest by tag or digest; None if absent."""
        host = self._host(registry)
        response = await self._send(
            host,
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scopes=_pull(repository),
            repository=repository,
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, host, repository, f"HEAD manifest {reference}")
        digest = response.headers.get("Docker-Content-Digest")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        length = response.headers.get("Content-Length")
        if digest and length and media_type:
            return Descriptor(media_type=media_type, digest=digest, size=int(length))
        desc, _ = await self.get_manifest(registry, repository, reference)
        return desc

    async def get_manifest(
        self, registry: str, repository: str, reference: str
    ) -> tuple[Descriptor, bytes]:
        """A manifest's bytes, verified against the digest asked for (or the one announced)."""
        host = self._host(registry)
        response = await self._send(
            host,
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scopes=_pull(repository),
            repository=repository,
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        if response.status_code != 200:
            raise self._fail(response, host, repository, f"manifest {reference}")
        data = response.content
        actual = sha256_digest(data)
        expected = reference if reference.startswith("sha256:") else None
        expected = expected or response.headers.get("Docker-Content-Digest")
        if expected and expected.startswith("sha256:") and expected != actual:
            raise DigestMismatchError(
                f"manifest {reference} from {host.host}/{repository} hashes to {actual}, "
                f"not {expected}: the registry served wrong bytes",
                host=host.host,
                repository=repository,
            )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip() or None
        document = parse_manifest(data, content_type)
        media_type = document.media_type or content_type
        if media_type is None:
            media_type = (
                MediaType.OCI_INDEX if isinstance(document, ImageIndex) else MediaType.OCI_MANIFEST
            )
        return Descriptor(media_type=media_type, digest=actual, size=len(data)), data

    async def put_manifest(
        self, registry: str, repository: str, data: bytes, media_type: str, reference: str
    ) -> Descriptor:
        """PUT a manifest under `reference` (its digest, or exactly the tag asked for)."""
        host = self._host(registry)
        desc = Descriptor(media_type=media_type, digest=sha256_digest(data), size=len(data))
        if reference.startswith("sha256:") and reference != desc.digest:
            raise DigestMismatchError(
                f"refusing to put a manifest hashing to {desc.digest} as {reference}",
                host=host.host,
                repository=repository,
            )
        response = await self._send(
            host,
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scopes=_push(repository),
            repository=repository,
            headers={"Content-Type": media_type},
            content=data,
        )
        if response.status_code not in (200, 201, 202):
            raise self._fail(response, host, repository, f"PUT manifest {reference}")
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != desc.digest:
            raise DigestMismatchError(
                f"{host.host}/{repository} stored the manifest as {announced}, "
                f"expected {desc.digest}",
                host=host.host,
                repository=repository,
            )
        return desc

    async def delete_manifest(self, registry: str, repository: str, reference: str) -> None:
        """DELETE a manifest by digest, or a tag where the registry supports it."""
        await self._delete(registry, repository, "manifests", reference)

    async def delete_blob(self, registry: str, repository: str, digest: str) -> None:
        await self._delete(registry, repository, "blobs", digest)

    async def _delete(self, registry: str, repository: str, kind: str, reference: str) -> None:
        host = self._host(registry)
        response = await self._send(
            host,
            "DELETE",
            f"/v2/{repository}/{kind}/{reference}",
            scopes=(f"repository:{repository}:delete",),
            repository=repository,
        )
        if kind == "manifests" and response.status_code in (400, 405) and ":" not in reference:
            raise RegistryError(
                f"{host.host} cannot delete tag {reference!r} of {repository} on its own "
                f"({response.status_code} {_error_detail(response)}); delete the manifest by "
                "digest instead, which removes every tag pointing at it",
                host=host.host,
                repository=repository,
                status=response.status_code,
            )
        if response.status_code not in (200, 202):
            raise self._fail(response, host, repository, f"DELETE {kind} {reference}")

    async def list_tags(
        self, registry: str, repository: str, *, page_size: int = 1000
    ) -> list[str]:
        """Every tag, following `Link: <…>; rel="next"` (with `n` and `last`) across pages.

        A repository the registry doesn't know (404) has no tags.
        """
        host = self._host(registry)
        url: str | None = f"/v2/{repository}/tags/list?n={page_size}"
        tags: list[str] = []
        while url:
            response = await self._send(
                host, "GET", url, scopes=_pull(repository), repository=repository
            )
            if response.status_code == 404 and not tags:
                return []  # the repository does not exist yet: nothing is tagged there
            if response.status_code != 200:
                raise self._fail(response, host, repository, "tag list")
            page = response.json().get("tags") or []
            tags.extend(page)
            url = _next_link(response.headers.get("Link"), str(response.url))
            if url is None and len(page) >= page_size and page_size > 0:
                # Registries that page by `n` without a Link header: ask for what follows.
                url = f"/v2/{repository}/tags/list?" + urlencode({"n": page_size, "last": page[-1]})
                if page[-1] in tags[:-1]:
                    break
        return list(dict.fromkeys(tags))

    async def referrers(
        self, registry: str, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Manifests whose `subject` is `digest`: the referrers API, else the tag schema."""
        host = self._host(registry)
        params = {"artifactType": artifact_type} if artifact_type else None
        response = await self._send(
            host,
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            scopes=_pull(repository),
            repository=repository,
            params=params,
            headers={"Accept": MediaType.OCI_INDEX},
        )
        if response.status_code == 200:
            index = ImageIndex.model_validate_json(response.content)
        elif response.status_code in (404, 405):
            fallback = digest.replace(":", "-", 1)
            try:
                _, data = await self.get_manifest(registry, repository, fallback)
            except NotFoundError:
                return []
            document = parse_manifest(data)
            if not isinstance(document, ImageIndex):
                return []
            index = document
        else:
            raise self._fail(response, host, repository, f"referrers of {digest}")
        found = index.manifests
        if artifact_type:
            found = [d for d in found if d.artifact_type == artifact_type]
        return found

    # -- blobs ---------------------------------------------------------------------------

    async def blob_exists(self, registry: str, repository: str, digest: str) -> bool:
        host = self._host(registry)
        response = await self._send(
            host,
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scopes=_pull(repository),
            repository=repository,
        )
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise self._fail(response, host, repository, f"HEAD blob {digest}")
        return True

    @asynccontextmanager
    async def read_blob(
        self, registry: str, repository: str, desc: Descriptor
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Stream a blob, hashing as it goes; raises at the end if digest or size are wrong.

        A connection lost mid-body is resumed with a `Range` request; the hash covers every
        byte in order, so the verification at the end still holds.
        """
        chunks = self._blob_chunks(self._host(registry), repository, desc)
        try:
            yield chunks
        finally:
            await chunks.aclose()

    async def _blob_chunks(
        self, host: _Host, repository: str, desc: Descriptor
    ) -> AsyncGenerator[bytes, None]:
        hasher = hashlib.sha256()
        received = 0
        attempts = _Attempts(self.settings.retry, f"GET blob {desc.digest}", host.host)
        while True:
            headers = {"Range": f"bytes={received}-"} if received else {}
            response = await self._send(
                host,
                "GET",
                f"/v2/{repository}/blobs/{desc.digest}",
                scopes=_pull(repository),
                repository=repository,
                headers=headers,
                stream=True,
                follow_redirects=True,
            )
            try:
                if response.status_code not in (200, 206):
                    await response.aread()
                    raise self._fail(response, host, repository, f"blob {desc.digest}")
                # A 200 to a Range request restarts from byte 0: skip what we already hashed.
                skip = received if response.status_code == 200 else 0
                try:
                    async for chunk in response.aiter_raw():
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                            if not chunk:
                                continue
                        received += len(chunk)
                        if received > desc.size:
                            raise DigestMismatchError(
                                f"blob {desc.digest} from {host.host}/{repository} is larger "
                                f"than its descriptor's {desc.size} bytes",
                                host=host.host,
                                repository=repository,
                            )
                        hasher.update(chunk)
                        yield chunk
                except httpx.TransportError as exc:
                    attempts.next()
                    if attempts.give_up(host.backoff, None, f"{type(exc).__name__}: {exc}"):
                        raise attempts.error(repository, None) from None
                    continue
            finally:
                await response.aclose()
            break
        actual = "sha256:" + hasher.hexdigest()
        if received != desc.size or actual != desc.digest:
            raise DigestMismatchError(
                f"blob from {host.host}/{repository} does not match its descriptor: expected "
                f"{desc.digest} ({desc.size} bytes), got {actual} ({received} bytes)",
                host=host.host,
                repository=repository,
            )

    async def mount_blob(
        self, registry: str, repository: str, digest: str, from_repository: str
    ) -> bool:
        """Cross-repository mount; False (session cancelled) when the registry declines."""
        host = self._host(registry)
        response = await self._send(
            host,
            "POST",
            f"/v2/{repository}/blobs/uploads/?"
            + urlencode({"mount": digest, "from": from_repository}),
            scopes=_merge_scopes(_push(repository), _pull(from_repository)),
            repository=repository,
        )
        if response.status_code == 201:
            return True
        if response.status_code == 202:
            await self._cancel_upload(host, repository, response)
            return False
        raise self._fail(response, host, repository, f"mount of {digest} from {from_repository}")

    async def _cancel_upload(self, host: _Host, repository: str, response: httpx.Response) -> None:
        location = response.headers.get("Location")
        if not location:
            return
        try:
            cancel = await self._send(
                host,
                "DELETE",
                urljoin(str(response.url), location),
                scopes=_push(repository),
                repository=repository,
            )
            await cancel.aclose()
        except RegistryError as exc:
            log.debug("could not cancel upload session on %s: %s", host.host, exc)

    async def upload_blob(
        self,
        registry: str,
        repository: str,
        desc: Descriptor,
        source: BlobSource | AsyncIterable[bytes],
        *,
        mount_from: str | None = None,
    ) -> bool:
        """Upload a blob, verified by the registry against `desc.digest` before it exists.

        `source` is ideally a callable opening the bytes from the start: an interrupted upload
        then restarts with a fresh session (never resuming blindly). A one-shot iterable is
        sent once and an interruption raises `TransferInterruptedError`. With `mount_from`, a
        cross-repository mount is tried first and, if declined, its session is used for the
        upload. Returns True when the blob was mounted (no bytes moved).
        """
        host = self._host(registry)
        attempts = _Attempts(self.settings.retry, f"upload of {desc.digest}", host.host)
        chunked = self.settings.chunked_uploads
        consumed = False
        while True:
            attempts.next()
            if consumed and not callable(source):
                raise TransferInterruptedError(
                    f"upload of {desc.digest} to {host.host}/{repository} did not complete "
                    f"(last: {attempts.last}) and its byte stream cannot be replayed; "
                    "retry the copy",
                    host=host.host,
                    repository=repository,
                )
            session = await self._start_upload(host, repository, desc.digest, mount_from)
            if session is None:
                return True
            mount_from = None
            consumed = True
            chunks = source() if callable(source) else source
            try:
                if chunked:
                    await self._upload_chunked(host, repository, desc, session, chunks)
                    return False
                if await self._upload_monolithic(host, repository, desc, session, chunks):
                    return False
                chunked = True
                attempts.last = "the registry refused a single-request upload"
            except TransferInterruptedError as exc:
                # The commit may have happened with only its answer lost: the registry only
                # accepts the blob under its verified digest, so its presence settles it.
                if await self.blob_exists(registry, repository, desc.digest):
                    return False
                if attempts.give_up(host.backoff, None, str(exc)):
                    raise attempts.error(repository, exc.status) from None

    async def check_push(self, registry: str, repository: str) -> None:
        """Prove the credentials may push to `repository`: open a blob upload session, then
        cancel it; nothing is written. Raises `RegistryError` saying what was refused."""
        host = self._host(registry)
        session = await self._start_upload(host, repository, "a push-permission check", None)
        assert session is not None  # no mount was asked for, so a session always opens
        cancel = await self._send(
            host, "DELETE", session.location, scopes=_push(repository), repository=repository
        )
        await cancel.aclose()

    async def _start_upload(
        self, host: _Host, repository: str, digest: str, mount_from: str | None
    ) -> UploadSession | None:
        query = "?" + urlencode({"mount": digest, "from": mount_from}) if mount_from else ""
        scopes = _push(repository) + (_pull(mount_from) if mount_from else ())
        response = await self._send(
            host,
            "POST",
            f"/v2/{repository}/blobs/uploads/{query}",
            scopes=_merge_scopes(scopes),
            repository=repository,
        )
        if response.status_code == 201 and mount_from:
            return None
        location = response.headers.get("Location")
        if response.status_code != 202 or not location:
            raise self._fail(response, host, repository, f"starting the upload of {digest}")
        min_chunk = int(response.headers.get("OCI-Chunk-Min-Length") or 0)
        return UploadSession(location=urljoin(str(response.url), location), min_chunk=min_chunk)

    async def _upload_monolithic(
        self,
        host: _Host,
        repository: str,
        desc: Descriptor,
        session: UploadSession,
        chunks: AsyncIterable[bytes],
    ) -> bool:
        """One streamed PUT; False when the registry wants chunks instead."""
        hashing = _HashingBody(desc, host, repository)
        response = await self._send(
            host,
            "PUT",
            _with_query(session.location, {"digest": desc.digest}),
            scopes=_push(repository),
            repository=repository,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            content=hashing.wrap(chunks),
            what=f"upload of {desc.digest}",
        )
        if response.status_code in (413, 416) or (
            response.status_code in (400, 405) and "UNSUPPORTED" in _error_detail(response)
        ):
            return False
        self._check_committed(response, host, repository, desc)
        return True

    def _check_committed(
        self, response: httpx.Response, host: _Host, repository: str, desc: Descriptor
    ) -> None:
        if response.status_code != 201:
            error = self._fail(response, host, repository, f"upload of {desc.digest}")
            if "DIGEST_INVALID" in str(error) or "SIZE_INVALID" in str(error):
                raise DigestMismatchError(str(error), host=host.host, repository=repository)
            raise error
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != desc.digest:
            raise DigestMismatchError(
                f"{host.host}/{repository} stored blob {announced}, expected {desc.digest}",
                host=host.host,
                repository=repository,
            )

    async def _upload_chunked(
        self,
        host: _Host,
        repository: str,
        desc: Descriptor,
        session: UploadSession,
        chunks: AsyncIterable[bytes],
    ) -> None:
        """PATCH chunks of `chunk_size` (at least the registry's minimum), then PUT the digest.

        Each chunk is held in memory only while it is sent, so memory stays bounded by the
        chunk size. A failed PATCH is not re-sent: the whole upload restarts.
        """
        size = max(self.settings.chunk_size, session.min_chunk)
        hashing = _HashingBody(desc, host, repository)
        location = session.location
        offset = 0
        buffer = bytearray()

        async def patch(data: bytes) -> str:
            response = await self._send(
                host,
                "PATCH",
                location,
                scopes=_push(repository),
                repository=repository,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(data) - 1}",
                    "Content-Length": str(len(data)),
                },
                content=_once(data),
                what=f"upload of {desc.digest}",
            )
            if response.status_code != 202 or "Location" not in response.headers:
                raise self._fail(response, host, repository, f"chunk upload of {desc.digest}")
            return urljoin(str(response.url), response.headers["Location"])

        async for chunk in hashing.wrap(chunks):
            buffer += chunk
            while len(buffer) >= size:
                data = bytes(buffer[:size])
                del buffer[:size]
                location = await patch(data)
                offset += len(data)
        if buffer:
            location = await patch(bytes(buffer))
            offset += len(buffer)
        response = await self._send(
            host,
            "PUT",
            _with_query(location, {"digest": desc.digest}),
            scopes=_push(repository),
            repository=repository,
            headers={"Content-Length": "0"},
            content=_once(b""),
            what=f"upload of {desc.digest}",
        )
        self._check_committed(response, host, repository, desc)


class _HashingBody:
    """Hashes a blob's bytes as they are sent, and refuses them (ending the request before it
    completes) when they run past the descriptor's size or don't hash to its digest."""

    def __init__(self, desc: Descriptor, host: _Host, repository: str) -> None:
        self.desc = desc
        self.where = f"{host.host}/{repository}"
        self.host = host.host
        self.repository = repository
        self.hasher = hashlib.sha256()
        self.size = 0

    async def wrap(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.size += len(chunk)
            if self.size > self.desc.size:
                raise self._mismatch(f"the bytes run past its {self.desc.size}-byte size")
            self.hasher.update(chunk)
            yield chunk
        self.check()

    def check(self) -> None:
        actual = "sha256:" + self.hasher.hexdigest()
        if actual != self.desc.digest or self.size != self.desc.size:
            raise self._mismatch(
                f"the bytes hash to {actual} ({self.size} bytes), not its digest "
                f"({self.desc.size} bytes)"
            )

    def _mismatch(self, why: str) -> DigestMismatchError:
        return DigestMismatchError(
            f"refusing to upload {self.desc.digest} to {self.where}: {why}",
            host=self.host,
            repository=self.repository,
        )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    """A body sent once: a failed PATCH aborts the session rather than being re-sent blindly."""
    yield data


def _with_query(url: str, params: Mapping[str, str] | list[tuple[str, str]]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _next_link(header: str | None, current: str) -> str | None:
    if not header:
        return None
    for part in header.split(","):
        match = re.match(r'\s*<([^>]*)>\s*;.*rel="?next"?', part)
        if match:
            return urljoin(current, str(match[1]))
    return None
