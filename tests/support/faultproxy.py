"""A fault-injecting HTTP proxy on loopback, between a client and a real registry.

It relays HTTP/1.1 requests to the upstream registry and, per a schedule, injects connection
resets (before a request, or in the middle of a response body), error statuses (500, 429 with
`Retry-After`, …), slow responses, corrupted bodies, or arbitrary response rewrites. It runs
its own event loop in a thread, so sync tests (CLI, subprocesses) can use it as well as async
ones. Clients address the proxy's `host` instead of the registry's; the `Host` header is
relayed unchanged, so the registry's `Location` headers point back at the proxy.

    with FaultProxy(registry.host) as proxy:
        proxy.add(FaultPlan(Fault.error(500), match=r"PUT .*/blobs/uploads/", limit=2))
        ... talk to f"{proxy.host}/repo" ...
        assert proxy.injected == 2

Plans are checked in order and the first that fires decides; `limit=None` never stops.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from .net import free_port

FaultKind = Literal["reset", "status", "delay", "reset_midway", "corrupt"]


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; build with the class methods."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    after_bytes: int = 0

    @classmethod
    def reset(cls) -> Fault:
        """Drop the connection (TCP RST) as soon as the request head arrives."""
        return cls("reset")

    @classmethod
    def error(cls, status: int = 500, retry_after: str | None = None) -> Fault:
        """Answer `status` with a registry-style error body; the registry never sees it."""
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def throttle(cls, retry_after: str = "1") -> Fault:
        """429 Too Many Requests with `Retry-After` (seconds or an HTTP date)."""
        return cls("status", status=429, retry_after=retry_after)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Forward the request after `seconds`."""
        return cls("delay", seconds=seconds)

    @classmethod
    def reset_midway(cls, after_bytes: int = 1024) -> Fault:
        """Forward, then drop the connection after `after_bytes` of the response body."""
        return cls("reset_midway", after_bytes=after_bytes)

    @classmethod
    def corrupt(cls) -> Fault:
        """Forward, and flip the bits of the first byte of the response body (same length)."""
        return cls("corrupt")


@dataclass
class FaultPlan:
    """When to inject `fault`: on requests whose `METHOD path?query` matches `match`.

    Fires on every `every`-th matching request, with `probability` (seeded, so runs repeat),
    at most `limit` times (None: forever).
    """

    fault: Fault
    match: str = ".*"
    every: int = 1
    probability: float = 1.0
    limit: int | None = None
    seed: int = 0
    seen: int = 0
    fired: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def decide(self, line: str) -> Fault | None:
        if not re.search(self.match, line):
            return None
        self.seen += 1
        if self.limit is not None and self.fired >= self.limit:
            return None
        if self.seen % self.every or self._rng.random() >= self.probability:
            return None
        self.fired += 1
        return self.fault


@dataclass
class Response:
    """A buffered upstream response handed to a rewrite hook, which may change it in place."""

    method: str
    path: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def set_header(self, name: str, value: str | None) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            self.headers.append((name, value))


#: Decides whether to buffer a response for rewriting (by `METHOD path`), then rewrites it.
Rewrite = tuple[str, Callable[[Response], None]]


class _Reset(Exception):
    pass


class FaultProxy:
    """The proxy; a context manager that starts and stops its thread."""

    def __init__(self, upstream: str) -> None:
        self.upstream_host, _, port = upstream.rpartition(":")
        self.upstream_port = int(port)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.plans: list[FaultPlan] = []
        self.rewrites: list[Rewrite] = []
        #: Every request seen: (`METHOD path`, the fault kind injected or None, monotonic time).
        self.log: list[tuple[str, str | None, float]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def add(self, plan: FaultPlan) -> FaultPlan:
        self.plans.append(plan)
        return plan

    def rewrite(self, match: str, hook: Callable[[Response], None]) -> None:
        """Buffer responses to requests matching `match` and pass them through `hook`."""
        self.rewrites.append((match, hook))

    def clear(self) -> None:
        self.plans.clear()
        self.rewrites.clear()

    @property
    def injected(self) -> int:
        return sum(1 for _, kind, _ in self.log if kind)

    def requests(self, match: str = ".*") -> list[str]:
        """The `METHOD path` of every request seen that matches `match`."""
        return [line for line, _, _ in self.log if re.search(match, line)]

    def __enter__(self) -> Self:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port), self._loop
        ).result(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # -- serving ---------------------------------------------------------------------------

    def _decide(self, line: str) -> Fault | None:
        for plan in self.plans:
            fault = plan.decide(line)
            if fault is not None:
                return fault
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.read(1)
            if not first or first == b"\x16":  # a TLS ClientHello: we only speak plain HTTP
                return
            head = first + await reader.readuntil(b"\r\n\r\n")
            while head:
                await self._one(head, reader, writer)
                head = await reader.readuntil(b"\r\n\r\n")
        except (_Reset, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _one(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request_line, headers = _parse_head(head)
        method, target, _ = request_line.split(" ", 2)
        line = f"{method} {target}"
        fault = self._decide(line)
        self.log.append((line, fault.kind if fault else None, time.monotonic()))
        if fault and fault.kind == "reset":
            _reset(writer)
        if fault and fault.kind == "status":
            await _drain_body(reader, headers)
            body = json.dumps(
                {"errors": [{"code": "UNAVAILABLE", "message": "injected fault"}]}
            ).encode()
            extra = f"Retry-After: {fault.retry_after}\r\n" if fault.retry_after else ""
            writer.write(
                f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n".encode()
                + body
            )
            await writer.drain()
            return
        if fault and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            up_writer.write(head)
            await _relay_body(reader, up_writer, headers)
            await up_writer.drain()
            status_line, up_headers = _parse_head(await up_reader.readuntil(b"\r\n\r\n"))
            status = int(status_line.split(" ", 2)[1])
            hook = next((h for m, h in self.rewrites if re.search(m, line)), None)
            if hook is not None:
                await self._rewritten(
                    method, target, status_line, up_headers, up_reader, writer, hook
                )
                return
            writer.write(_head(status_line, up_headers))
            has_body = method != "HEAD" and status not in (204, 304) and status >= 200
            if has_body:
                await _relay_response_body(up_reader, writer, up_headers, fault)
            await writer.drain()
        finally:
            up_writer.close()

    async def _rewritten(
        self,
        method: str,
        target: str,
        status_line: str,
        headers: list[tuple[str, str]],
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hook: Callable[[Response], None],
    ) -> None:
        _, status, reason = [*status_line.split(" ", 2), ""][:3]
        length = _header(headers, "Content-Length")
        if method == "HEAD":
            body = b""
        elif length:
            body = await up_reader.readexactly(int(length))
        else:
            body = await _copy_chunked(up_reader, None)
        response = Response(method, target, int(status), reason, headers, body)
        response.set_header("Transfer-Encoding", None)
        hook(response)
        if method != "HEAD":
            response.set_header("Content-Length", str(len(response.body)))
        writer.write(
            _head(f"HTTP/1.1 {response.status} {response.reason}", response.headers)
            + (response.body if method != "HEAD" else b"")
        )
        await writer.drain()


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for raw in lines[1:]:
        if raw:
            name, _, value = raw.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _head(first: str, headers: list[tuple[str, str]]) -> bytes:
    return (first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode(
        "latin-1"
    )


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    raise _Reset


async def _drain_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> None:
    length = _header(headers, "Content-Length")
    if length:
        remaining = int(length)
        while remaining:
            data = await reader.read(min(remaining, 1 << 16))
            if not data:
                raise ConnectionError("client went away mid-body")
            remaining -= len(data)
    elif (_header(headers, "Transfer-Encoding") or "").lower() == "chunked":
        await _copy_chunked(reader, None)


async def _relay_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: list[tuple[str, str]]
) -> None:
    length = _header(headers, "Content-Length")
    if length:
        remaining = int(length)
        while remaining:
            data = await reader.read(min(remaining, 1 << 16))
            if not data:
                raise ConnectionError("client went away mid-body")
            writer.write(data)
            await writer.drain()
            remaining -= len(data)
    elif (_header(headers, "Transfer-Encoding") or "").lower() == "chunked":
        await _copy_chunked(reader, writer)


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> bytes:
    """Relay (or just consume) a chunked body; returns its decoded bytes."""
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        body += data[:-2]
        if writer is not None:
            writer.write(size_line + data)
            await writer.drain()
        if size == 0:
            return bytes(body)


async def _relay_response_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: list[tuple[str, str]],
    fault: Fault | None,
) -> None:
    length = _header(headers, "Content-Length")
    sent = 0
    corrupt = fault is not None and fault.kind == "corrupt"
    cut = fault.after_bytes if fault is not None and fault.kind == "reset_midway" else None

    async def send(data: bytes) -> None:
        nonlocal sent, corrupt
        if corrupt and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
            corrupt = False
        if cut is not None and sent + len(data) > cut:
            writer.write(data[: cut - sent])
            await writer.drain()
            _reset(writer)
        writer.write(data)
        await writer.drain()
        sent += len(data)

    if length is not None:
        remaining = int(length)
        while remaining:
            data = await reader.read(min(remaining, 1 << 16))
            if not data:
                raise ConnectionError("upstream went away mid-body")
            await send(data)
            remaining -= len(data)
    elif (_header(headers, "Transfer-Encoding") or "").lower() == "chunked":
        await _copy_chunked(reader, writer)
    else:
        while data := await reader.read(1 << 16):
            await send(data)
        raise _Reset  # body delimited by close: close the client side too
