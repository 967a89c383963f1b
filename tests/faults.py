"""A fault-injecting TCP proxy, in front of a database server: it passes bytes both
ways until the client sends a given marker (a COMMIT), then cuts the connection, either before
that message reaches the server or right after, so that the server's answer is lost."""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    """Listens on a free port of `listen` (127.0.0.1, or an address of a network namespace's
    link the test made) and forwards to `server` (host, port). While `cut_on`
    is set, the first client message holding it closes both sides: with `deliver`, after
    forwarding it (the server acts on it, its answer is lost), else instead of forwarding it.
    With `refuse_after_cut`, every connection made after a cut is reset at once (the server
    stays out of reach)."""

    server: tuple[str, int]
    cut_on: bytes | None = None
    deliver: bool = True
    refuse_after_cut: bool = False
    listen: str = "127.0.0.1"
    cuts: int = 0
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
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse_after_cut and self.cuts:
                _reset(client)
                continue
            upstream = socket.create_connection(self.server)
            self._open.extend((client, upstream))
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
