"""HTTP for upstream APIs, written once for every source: cache, tokens, rate limits, bounds.

Responses are cached under `state_dir` with their `ETag` / `Last-Modified`; the next request is
conditional, and a 304 reuses the cached body (on GitHub a 304 costs no rate limit). GitHub and
GitLab tokens come from the environment and go only to the API the app file names. A rate limit
that resets soon is waited out; one that resets later is a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from multiarch_mirror import __version__
from multiarch_mirror.errors import MirrorError

log = logging.getLogger(__name__)

USER_AGENT = f"multiarch-mirror/{__version__}"
MAX_ATTEMPTS = 3


class UpstreamError(MirrorError):
    """An upstream API failed or refused; the message names the URL and what to do."""


class RateLimitError(UpstreamError):
    """An API's rate limit is exhausted for longer than we are willing to wait."""


class Api(Enum):
    """Which token (if any) a request carries."""

    PLAIN = "plain"
    GITHUB = "github"
    GITLAB = "gitlab"


_TOKEN_VARIABLES = {Api.GITHUB: ("GITHUB_TOKEN", "GH_TOKEN"), Api.GITLAB: ("GITLAB_TOKEN",)}


@dataclass(frozen=True)
class Page:
    """One (possibly cached) response body with what pagination needs."""

    url: str
    body: str
    next_url: str | None
    from_cache: bool

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"GET {self.url}: the response is not JSON ({exc})") from None


def _next_link(link_header: str | None) -> str | None:
    """The `rel="next"` URL of an RFC 8288 `Link` header (GitHub and GitLab pagination)."""
    for part in (link_header or "").split(","):
        url, _, params = part.partition(";")
        rels = [p.strip() for p in params.split(";")]
        if 'rel="next"' in rels or "rel=next" in rels:
            return url.strip().strip("<>")
    return None


def _host(url: str) -> str:
    return urlsplit(url).netloc


class UpstreamHttp:
    """The one HTTP client every source uses; `requests` counts what went over the wire."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        max_wait: float = 60.0,
        per_host: int = 4,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self._tokens = {
            api: next((env[v] for v in names if env.get(v)), None)
            for api, names in _TOKEN_VARIABLES.items()
        }
        self._cache_dir = cache_dir
        self._max_wait = max_wait
        self._per_host = per_host
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._blocked_until: dict[str, float] = {}
        self._fetches: dict[tuple[str, Api, str | None], asyncio.Future[Page]] = {}
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )
        self.requests: Counter[str] = Counter()
        """Requests sent, per host (304s included)."""
        self.not_modified: Counter[str] = Counter()

    @classmethod
    def for_state_dir(cls, state_dir: Path, **kwargs: Any) -> UpstreamHttp:
        """The client whose cache lives in `state_dir/http-cache`."""
        return cls(state_dir / "http-cache", **kwargs)

    def __repr__(self) -> str:
        tokens = [api.value for api, token in self._tokens.items() if token]
        return f"UpstreamHttp(cache_dir={str(self._cache_dir)!r}, tokens={tokens})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> UpstreamHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- public requests ----------------------------------------------------------------

    async def get(self, url: str, *, api: Api = Api.PLAIN, accept: str | None = None) -> Page:
        """GET with the on-disk cache: conditional when cached, the cached body on 304.

        Within one client (one run) a URL is fetched once: apps sharing an upstream (Mattermost
        and Mostlymatter) share the answer.
        """
        key = (url, api, accept)
        if key not in self._fetches:
            self._fetches[key] = asyncio.ensure_future(self._fetch(url, api=api, accept=accept))
        return await self._fetches[key]

    async def _fetch(self, url: str, *, api: Api, accept: str | None) -> Page:
        cache_file = self._cache_file(url, accept)
        cached = self._read_cache(cache_file)
        headers = {"Accept": accept} if accept else {}
        if cached:
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
        response = await self._send("GET", url, api=api, headers=headers)
        if response.status_code == 304 and cached:
            self.not_modified[_host(url)] += 1
            return Page(url, cached["body"], cached.get("next"), from_cache=True)
        self._raise_for_status(response, api)
        page = Page(url, response.text, _next_link(response.headers.get("Link")), False)
        if response.headers.get("ETag") or response.headers.get("Last-Modified"):
            self._write_cache(
                cache_file,
                {
                    "url": url,
                    "etag": response.headers.get("ETag"),
                    "last_modified": response.headers.get("Last-Modified"),
                    "next": page.next_url,
                    "body": page.body,
                },
            )
        return page

    async def pages(
        self, url: str, *, api: Api = Api.PLAIN, accept: str | None = None
    ) -> AsyncIterator[Any]:
        """The JSON of each page, following `Link: rel="next"` on the same host only."""
        next_url: str | None = url
        while next_url:
            page = await self.get(next_url, api=api, accept=accept)
            yield page.json()
            next_url = page.next_url
            if next_url and _host(next_url) != _host(url):
                raise UpstreamError(
                    f"GET {page.url}: the next page is on another host ({_host(next_url)}); "
                    "refusing to follow it with this API's token"
                )

    async def exists(self, url: str, *, api: Api = Api.PLAIN) -> bool:
        """True when the URL answers 2xx, False on 404/410; anything else is an error."""
        response = await self._send("HEAD", url, api=api)
        if response.status_code in (403, 405, 501) and not self._is_rate_limited(response):
            # some servers refuse HEAD; a GET whose body we never read answers the same question
            response = await self._send("GET", url, api=api, stream=True)
        if response.status_code in (404, 410):
            return False
        self._raise_for_status(response, api)
        return True

    # --- machinery ----------------------------------------------------------------------

    def _auth_headers(self, api: Api) -> dict[str, str]:
        token = self._tokens.get(api)
        # GitLab accepts personal access tokens as Bearer too; httpx drops Authorization on
        # redirects to another origin, so a token never follows a redirect off its API.
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _slot(self, host: str) -> asyncio.Semaphore:
        if host not in self._slots:
            self._slots[host] = asyncio.Semaphore(self._per_host)
        return self._slots[host]

    async def _send(
        self,
        method: str,
        url: str,
        *,
        api: Api,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        host = _host(url)
        all_headers = {**(headers or {}), **self._auth_headers(api)}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            await self._wait_for_host(host, url, api)
            async with self._slot(host):
                self.requests[host] += 1
                try:
                    request = self._client.build_request(method, url, headers=all_headers)
                    response = await self._client.send(request, stream=stream)
                    if stream:
                        await response.aclose()
                except httpx.TransportError as exc:
                    if attempt == MAX_ATTEMPTS:
                        raise UpstreamError(
                            f"{method} {url}: {type(exc).__name__}: {exc or 'connection failed'} "
                            f"(after {attempt} attempts); check the URL and the network"
                        ) from None
                    await asyncio.sleep(0.5 * attempt)
                    continue
            log.debug("%s %s: %s", method, url, response.status_code)
            self._note_rate_limit(host, response)
            if self._is_rate_limited(response) and attempt < MAX_ATTEMPTS:
                continue  # the host is now blocked until the reset; _wait_for_host waits or fails
            if response.status_code >= 500 and attempt < MAX_ATTEMPTS:
                await asyncio.sleep(0.5 * attempt)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _is_rate_limited(response: httpx.Response) -> bool:
        if response.status_code == 429:
            return True
        return response.status_code == 403 and (
            "Retry-After" in response.headers
            or response.headers.get("X-RateLimit-Remaining") == "0"
        )

    def _note_rate_limit(self, host: str, response: httpx.Response) -> None:
        """Block the host until the limit resets, when the response says it is exhausted."""
        until: float | None = None
        retry_after = response.headers.get("Retry-After")
        if retry_after is not None and self._is_rate_limited(response):
            until = time.time() + _retry_after_seconds(retry_after)
        elif response.headers.get("X-RateLimit-Remaining") == "0":
            with contextlib.suppress(ValueError):
                until = float(response.headers.get("X-RateLimit-Reset", ""))
        elif self._is_rate_limited(response):
            until = time.time() + 1.0
        if until is not None:
            self._blocked_until[host] = max(self._blocked_until.get(host, 0.0), until)

    async def _wait_for_host(self, host: str, url: str, api: Api) -> None:
        wait = self._blocked_until.get(host, 0.0) - time.time()
        if wait <= 0:
            return
        if wait > self._max_wait:
            reset = time.strftime("%H:%M:%S UTC", time.gmtime(self._blocked_until[host]))
            hint = ""
            if api in _TOKEN_VARIABLES and not self._tokens.get(api):
                hint = f"; set {' or '.join(_TOKEN_VARIABLES[api])} for a higher limit"
            raise RateLimitError(
                f"GET {url}: rate limit of {host} exhausted until {reset} "
                f"(in {int(wait // 60)} min {int(wait % 60)} s){hint}, or run again after the reset"
            )
        log.warning("rate limit of %s: waiting %.0f s for the reset", host, wait)
        await asyncio.sleep(wait)

    def _raise_for_status(self, response: httpx.Response, api: Api) -> None:
        if response.is_success:
            return
        url = str(response.request.url)
        reason = f"{response.status_code} {response.reason_phrase}".strip()
        hint = ""
        if response.status_code in (401, 403) and api in _TOKEN_VARIABLES:
            names = " or ".join(_TOKEN_VARIABLES[api])
            hint = (
                f"; the token in {names} was refused"
                if self._tokens.get(api)
                else f"; set {names} if this needs authentication"
            )
        elif response.status_code == 404:
            hint = "; check the repository/package name and base_url in the app file"
        elif self._is_rate_limited(response):
            hint = "; the rate limit did not reset in time, run again later"
        raise UpstreamError(f"{response.request.method} {url}: {reason}{hint}")

    def _cache_file(self, url: str, accept: str | None) -> Path:
        key = hashlib.sha256(f"{url}\0{accept or ''}".encode()).hexdigest()
        return self._cache_dir / f"{key}.json"

    @staticmethod
    def _read_cache(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("body"), str) else None

    @staticmethod
    def _write_cache(path: Path, data: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(data), encoding="utf-8")
        temp.replace(path)


def _retry_after_seconds(value: str) -> float:
    """`Retry-After` is either seconds or an HTTP date."""
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time())
