"""A static file server on loopback, with a switch to cut chosen bodies short."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .net import free_port


@dataclass
class FileServer:
    """Serves `files` (path → bytes); `truncate` makes chosen responses send half their body."""

    server: ThreadingHTTPServer
    files: dict[str, bytes] = field(default_factory=dict)
    #: Path → how many more responses are cut short (None: every one).
    truncated: dict[str, int | None] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def truncate(self, path: str, times: int | None = None) -> None:
        """Cut the next `times` responses for `path` short (every one when None)."""
        self.truncated[path] = times

    def cut_short(self, path: str) -> bool:
        """Whether this response for `path` is to be cut short; counts it."""
        if path not in self.truncated:
            return False
        left = self.truncated[path]
        if left is not None:
            if left <= 1:
                del self.truncated[path]
            else:
                self.truncated[path] = left - 1
        return True

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_file_server() -> FileServer:
    state: FileServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state.requests.append(path)
            body = state.files.get(path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_short(path):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    state = FileServer(server)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return state
