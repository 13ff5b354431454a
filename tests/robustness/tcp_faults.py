"""A loopback TCP server that misbehaves below HTTP, where a well-behaved test server cannot.

The first path segment of the request picks the fault (``http://127.0.0.1:<port>/<fault>/fhir``):

    silent     reads the request and never answers (a stalled server, connection kept open)
    drip       sends headers promising a body, then one byte every 0.2 s (reads each in time,
               the whole never: only a total deadline ends it)
    huge       sends a valid-looking searchset without end, as fast as the client reads
    headers    sends the status line and then headers one byte every 0.2 s
    hangup     closes the connection as soon as the request has arrived (no status line)
    badstatus  answers a line that is not HTTP

Every handler stops when the server is closed, so no thread outlives the test.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["FaultServer", "serve_faults", "FAULTS"]

FAULTS = ("silent", "drip", "huge", "headers", "hangup", "badstatus")
_TICK = 0.2


class FaultServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # socketserver's 5 drops a burst of connections (their SYNs retried after 1 s)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stopping = threading.Event()
        self.seen: list[str] = []  # the fault of each request, in arrival order

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def base_url(self, fault: str) -> str:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
        return f"{self.origin}/{fault}/fhir"


class _Handler(socketserver.BaseRequestHandler):
    server: FaultServer

    def handle(self) -> None:
        connection: socket.socket = self.request
        connection.settimeout(_TICK)
        request = self._read_head(connection)
        if request is None:
            return
        fault = request.split(b" ", 2)[1].split(b"/")[1].decode("ascii", "replace") if b" " in request else ""
        self.server.seen.append(fault)
        try:
            getattr(self, f"_{fault}", self._silent)(connection)
        except OSError:
            pass  # the client gave up: that is the point

    def _read_head(self, connection: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data and not self.server.stopping.is_set():
            try:
                chunk = connection.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return None
            data += chunk
        return data

    def _wait(self) -> bool:
        """Sleep one tick; False once the server is closing."""
        return not self.server.stopping.wait(_TICK)

    def _silent(self, connection: socket.socket) -> None:
        while self._wait():
            pass

    def _drip(self, connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n")
        while self._wait():
            connection.sendall(b" ")

    def _huge(self, connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n")
        entry = b'{"resource": {"resourceType": "Condition", "id": "x", "subject": {"reference": "Patient/p1"}}},' * 100
        opening = b'{"resourceType": "Bundle", "type": "searchset", "entry": ['
        connection.sendall(b"%x\r\n%s\r\n" % (len(opening), opening))
        connection.settimeout(5)
        while not self.server.stopping.is_set():
            connection.sendall(b"%x\r\n%s\r\n" % (len(entry), entry))

    def _headers(self, connection: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nX-Padding: " + b"x" * 10_000:
            if not self._wait():
                return
            connection.sendall(bytes([byte]))

    def _hangup(self, connection: socket.socket) -> None:
        connection.shutdown(socket.SHUT_RDWR)

    def _badstatus(self, connection: socket.socket) -> None:
        connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


@contextmanager
def serve_faults() -> Iterator[FaultServer]:
    server = FaultServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="tcp-faults", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
