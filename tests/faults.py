"""TCP proxies in front of a database server. One injects a fault: it passes bytes both ways
until the client sends a given marker (a COMMIT), then cuts the connection, either before that
message reaches the server or right after, so that the server's answer is lost. The other
makes the server far: every message arrives late, so that a client's round trips show in its
time."""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    """Listens on a free port of `listen` (127.0.0.1, or an address of a network namespace's
    link the test made) and forwards to `server` (host, port). While `cut_on`
    is set, the first client message holding it closes both sides: with `deliver`, after
    forwarding it (the server acts on it, its answer is lost), else instead of forwarding it.
    With `refuse_after_cut`, every connection made after a cut is reset at once (the server
    stays out of reach). While `frozen` is set, nothing passes either way and every
    connection stays open, as with a server whose process stopped: what is sent is taken,
    nothing comes back."""

    server: tuple[str, int]
    cut_on: bytes | None = None
    deliver: bool = True
    refuse_after_cut: bool = False
    listen: str = "127.0.0.1"
    cuts: int = 0
    frozen: threading.Event = field(default_factory=threading.Event)
    _listener: socket.socket = field(init=False)
    _open: list[socket.socket] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind((self.listen, 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop listening and reset every connection still open, so that the server ends the
        sessions of clients that went dark (and their transactions' locks) now, not at its
        idle timeout."""
        self._listener.close()
        for end in self._open:
            _reset(end)

    def _accept(self) -> None:
        _accept_pairs(self._listener, self.server, self._open, self._forward, self._refusing)

    def _refusing(self) -> bool:
        return self.refuse_after_cut and bool(self.cuts)

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        cut, ends = threading.Event(), (client, upstream)
        for source, sink in (ends, ends[::-1]):
            arguments = (source, sink, source is client, cut, ends)
            threading.Thread(target=self._pump, args=arguments, daemon=True).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        from_client: bool,
        cut: threading.Event,
        ends: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while data := source.recv(65536):
                if self.frozen.is_set():
                    continue  # taken, never passed on
                if cut.is_set():
                    break  # the server's answer to the marked message: lost
                marker = self.cut_on
                if from_client and marker is not None and marker in data:
                    self.cut_on = None
                    self.cuts += 1
                    cut.set()
                    if not self.deliver:
                        break
                sink.sendall(data)
        except OSError:
            pass
        if from_client and cut.is_set() and self.deliver:
            return  # the other direction cuts, once the server has answered
        for end in ends:
            _reset(end)


def _accept_pairs(
    listener: socket.socket,
    server: tuple[str, int],
    opened: list[socket.socket],
    forward: Callable[[socket.socket, socket.socket], None],
    refusing: Callable[[], bool] = lambda: False,
) -> None:
    """Until `listener` closes: each client it accepts gets a connection of its own to
    `server` (both kept in `opened`, for the proxy to end), which `forward` then serves;
    while `refusing` says so, a client is reset at once."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        if refusing():
            _reset(client)
            continue
        upstream = socket.create_connection(server)
        opened.extend((client, upstream))
        forward(client, upstream)


def _reset(end: socket.socket) -> None:
    """Close with a reset, as a connection a network device dropped ends for the client."""
    try:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Wakes the other direction's thread from its recv on this socket: a close alone would
        # wait for it, and the client would wait for ever.
        end.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    end.close()


class DelayingProxy:
    """Forwards 127.0.0.1:<port> to `server`, each chunk of bytes `delay` seconds late in
    both directions; chunks keep their order and do not wait for each other, so a client
    that sends several messages before it reads (a pipeline) waits for one delay, not one
    per message."""

    def __init__(self, server: tuple[str, int], delay: float) -> None:
        self.server, self.delay = server, delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop listening and end every connection (the server ends their sessions now)."""
        self._listener.close()
        for end in self._sockets:
            _reset(end)

    def _accept(self) -> None:
        _accept_pairs(self._listener, self.server, self._sockets, self._forward)

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        for end in (client, upstream):
            end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for source, sink in ((client, upstream), (upstream, client)):
            held: queue.Queue[tuple[float, bytes]] = queue.Queue()
            threading.Thread(target=self._read, args=(source, held), daemon=True).start()
            threading.Thread(target=self._write, args=(sink, held), daemon=True).start()

    def _read(self, source: socket.socket, held: queue.Queue[tuple[float, bytes]]) -> None:
        try:
            while data := source.recv(65536):
                held.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        held.put((0.0, b""))

    def _write(self, sink: socket.socket, held: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            due, data = held.get()
            if not data:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                sink.sendall(data)
            except OSError:
                break
        sink.close()
