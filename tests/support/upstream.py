"""A local stand-in for upstream APIs (GitHub, GitLab, npm, PyPI, download sites) on loopback.

It serves documents in the real APIs' shapes: pages with RFC 8288 `Link` headers, `ETag` with
304 on `If-None-Match`, injected rate-limit responses with their headers. Every request is
recorded so tests can count them and read their headers.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int


@dataclass
class _Route:
    pages: list[bytes]
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    path: str
    status: int
    headers: dict[str, str]
    times: int


@dataclass
class Upstream:
    """The running server; `url` is its root (use it as every source's `base_url`)."""

    server: ThreadingHTTPServer
    routes: dict[str, _Route] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0
    """Seconds each response waits, so tests can see how many requests overlap."""
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def json(
        self,
        path: str,
        document: Any,
        *,
        page_size: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Serve a JSON document; a list with `page_size` is split into linked pages."""
        if page_size and isinstance(document, list):
            chunks = [document[i : i + page_size] for i in range(0, len(document), page_size)]
            pages = [json.dumps(chunk).encode() for chunk in chunks or [[]]]
        else:
            pages = [json.dumps(document).encode()]
        with self.lock:
            self.routes[path] = _Route(pages, "application/json", dict(headers or {}))

    def file(self, path: str, data: bytes = b"binary", *, content_type: str = "text/plain") -> None:
        with self.lock:
            self.routes[path] = _Route([data], content_type)

    def remove(self, path: str) -> None:
        with self.lock:
            self.routes.pop(path, None)

    def fault(self, path: str, status: int, headers: dict[str, str], *, times: int = 1) -> None:
        """Answer the next `times` requests to `path` with `status` and `headers`."""
        with self.lock:
            self.faults.append(_Fault(path, status, headers, times))

    def requests_to(self, path: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, *, body: bool) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with upstream.lock:
                upstream.in_flight += 1
                upstream.max_in_flight = max(upstream.max_in_flight, upstream.in_flight)
            time.sleep(upstream.delay)
            with upstream.lock:
                upstream.in_flight -= 1
            status, out_headers, data = self._route(parts.path, query, headers)
            with upstream.lock:
                upstream.requests.append(Recorded(self.command, parts.path, query, headers, status))
            self.send_response(status)
            for key, value in out_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _route(
            self, path: str, query: dict[str, list[str]], headers: dict[str, str]
        ) -> tuple[int, dict[str, str], bytes]:
            with upstream.lock:
                fault = next((f for f in upstream.faults if f.path == path and f.times), None)
                if fault:
                    fault.times -= 1
                    return fault.status, fault.headers, b'{"message": "API rate limit exceeded"}'
                route = upstream.routes.get(path)
            if route is None:
                return 404, {"Content-Type": "application/json"}, b'{"message": "Not Found"}'
            page = int(query.get("page", ["1"])[0])
            if page < 1 or page > len(route.pages):
                return 200, {"Content-Type": route.content_type}, b"[]"
            data = route.pages[page - 1]
            etag = f'W/"{hashlib.sha256(data).hexdigest()[:32]}"'
            out = {"Content-Type": route.content_type, "ETag": etag, **route.headers}
            if len(route.pages) > 1:
                links = []
                flat = {k: v[0] for k, v in query.items()}
                host = self.headers.get("Host", "")
                for rel, number in (("next", page + 1), ("last", len(route.pages))):
                    if rel == "next" and page >= len(route.pages):
                        continue
                    link_query = urlencode({**flat, "page": number})
                    links.append(f'<http://{host}{path}?{link_query}>; rel="{rel}"')
                out["Link"] = ", ".join(links)
            if headers.get("if-none-match") == etag:
                return 304, {"ETag": etag}, b""
            return 200, out, data

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def running_upstream() -> Iterator[Upstream]:
    """Start the server on a free loopback port; stop it on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    upstream = Upstream(server=server)
    server.RequestHandlerClass = _handler(upstream)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        upstream.stop()
        thread.join(timeout=5)


# --- documents in the real APIs' shapes ------------------------------------------------------


def github_release(
    tag: str, *, days: int = 0, prerelease: bool = False, draft: bool = False
) -> dict[str, Any]:
    """One item of `GET /repos/{owner}/{repo}/releases`."""
    when = (EPOCH + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": abs(hash(tag)) % 10**8,
        "tag_name": tag,
        "target_commitish": "main",
        "name": tag,
        "draft": draft,
        "prerelease": prerelease,
        "created_at": when,
        "published_at": None if draft else when,
        "assets": [],
    }


def github_tag(name: str, sha: str) -> dict[str, Any]:
    """One item of `GET /repos/{owner}/{repo}/tags`."""
    return {"name": name, "commit": {"sha": sha, "url": f"https://api.invalid/commits/{sha}"}}


def gitlab_tag(name: str, sha: str, *, days: int = 0) -> dict[str, Any]:
    """One item of `GET /api/v4/projects/:id/repository/tags`."""
    when = (EPOCH + timedelta(days=days)).isoformat()
    return {
        "name": name,
        "message": "",
        "target": sha,
        "commit": {"id": sha, "short_id": sha[:8], "created_at": when, "title": name},
        "release": None,
        "protected": False,
    }


def npm_document(name: str, versions: dict[str, str | None]) -> dict[str, Any]:
    """`GET /{package}`: versions → deprecation message (None if not deprecated)."""
    items: dict[str, Any] = {}
    times: dict[str, str] = {"created": EPOCH.isoformat()}
    for i, (version, deprecated) in enumerate(versions.items()):
        items[version] = {"name": name, "version": version, "dist": {"tarball": "x"}}
        if deprecated:
            items[version]["deprecated"] = deprecated
        times[version] = (EPOCH + timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {"_id": name, "name": name, "dist-tags": {}, "versions": items, "time": times}


def pypi_document(name: str, releases: dict[str, bool]) -> dict[str, Any]:
    """`GET /pypi/{package}/json`: versions → yanked."""
    files: dict[str, Any] = {}
    for i, (version, yanked) in enumerate(releases.items()):
        when = (EPOCH + timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        files[version] = [
            {"filename": f"{name}-{version}.tar.gz", "upload_time_iso_8601": when, "yanked": yanked}
        ]
    return {"info": {"name": name}, "releases": files}
