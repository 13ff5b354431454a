"""A loopback TCP proxy in front of PostgreSQL that a test can break at will.

The service under test connects to the proxy; the proxy forwards to the real server. Three
modes, switched at any time:

    forward    pass bytes both ways (a healthy network)
    refuse     close every connection, new ones at once (the database is down: connection refused/reset)
    blackhole  keep connections open but move no bytes either way (a partition: packets vanish)

Switching to ``refuse`` also cuts the connections already open; leaving ``blackhole`` lets held
bytes through again. Nothing outside 127.0.0.1 is involved, and the PostgreSQL server itself is
never touched.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = ["TcpProxy", "proxy_to"]

Mode = Literal["forward", "refuse", "blackhole"]
_TICK = 0.05


class TcpProxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.mode: Mode = "forward"
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_TICK)
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "refuse":
            self.cut()

    def cut(self) -> None:
        """Close every open connection (both sides), as a server restart or a reset would."""
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            for end in pair:
                _close(end)

    def start(self) -> None:
        self._spawn(self._accept_loop, "db-proxy-accept")

    def stop(self) -> None:
        self._stopping.set()
        self.cut()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.mode == "refuse":
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            self._spawn(self._pump, "db-proxy-pump", pair)

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        other = {client: upstream, upstream: client}
        try:
            while not self._stopping.is_set():
                with self._lock:
                    if pair not in self._pairs:
                        return
                if self.mode == "blackhole":
                    self._stopping.wait(_TICK)
                    continue
                readable, _, _ = select.select([client, upstream], [], [], _TICK)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    other[source].sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _close(client)
            _close(upstream)


def _close(end: socket.socket) -> None:
    try:
        end.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    end.close()


@contextmanager
def proxy_to(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy((host, port))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
