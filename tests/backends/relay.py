"""A TCP relay on 127.0.0.1 that counts the bytes a client sends a server.

Tests and benchmarks point a client at :attr:`Relay.port` instead of the
server's port, so :attr:`Relay.sent` is what the server received from
every client, killed ones included: a part cut off by a SIGKILL counts
with the bytes that got through. Each connection is relayed by two
threads, one per direction.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Final

HOST: Final = "127.0.0.1"
#: Bytes per ``recv``; 256 KiB keeps a loopback relay well above the
#: 50-100 MB/s that moto and sshd take on the 2-core test machine.
CHUNK: Final = 256 * 1024


class Relay:
    """Forward connections on a free port to ``upstream_port``, counting."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sent = 0
        self._received = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def sent(self) -> int:
        """Bytes clients sent to the server through this relay so far."""
        with self._lock:
            return self._sent

    @property
    def received(self) -> int:
        """Bytes the server sent back to clients so far."""
        with self._lock:
            return self._received

    def reset(self) -> None:
        """Start counting again from zero."""
        with self._lock:
            self._sent = 0
            self._received = 0

    def close(self) -> None:
        """Stop accepting; open connections end when either side closes."""
        self._closed = True
        self._listener.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((HOST, self.upstream_port))
            except OSError:
                client.close()
                continue
            pumps = [
                threading.Thread(
                    target=self._pump, args=(client, server, True), daemon=True
                ),
                threading.Thread(
                    target=self._pump, args=(server, client, False), daemon=True
                ),
            ]
            for pump in pumps:
                pump.start()
            threading.Thread(
                target=_close_after, args=(pumps, client, server), daemon=True
            ).start()

    def _pump(self, source: socket.socket, target: socket.socket, upstream: bool):
        try:
            while data := source.recv(CHUNK):
                self._count(len(data), upstream)
                target.sendall(data)
        except OSError:
            pass
        # Pass the end of this direction on; a reset ends both.
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def _count(self, size: int, upstream: bool) -> None:
        with self._lock:
            if upstream:
                self._sent += size
            else:
                self._received += size


def _close_after(pumps: list[threading.Thread], *sockets: socket.socket) -> None:
    for pump in pumps:
        pump.join()
    for sock in sockets:
        sock.close()
