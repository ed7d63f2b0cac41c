"""A stand-in for a Service as kube-proxy implements it, on loopback, for rollout tests.

What it copies from kube-proxy (iptables or IPVS mode): each new TCP connection goes to one of
the endpoints kube-proxy knows at that moment (round robin), and stays with it for its life
(conntrack), so an open keep-alive connection keeps reaching a pod after the pod has left the
endpoints; and a change of the endpoints reaches the proxy only after a propagation delay (the
EndpointSlice controller, the watch, kube-proxy's sync). A connection to an endpoint that no
longer listens is closed, as a reset would be.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field

from support.loopback import free_port

BUFFER = 65536


@dataclass
class ServiceProxy:
    """Listens on `port`; forwards each new connection to one endpoint (a loopback port) of the
    set as it was `delay` seconds ago."""

    delay: float
    port: int = field(default_factory=free_port)
    _changes: list[tuple[float, frozenset[int]]] = field(
        default_factory=list[tuple[float, frozenset[int]]]
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _listener: socket.socket | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def set_endpoints(self, ports: set[int], *, now: bool = False) -> None:
        """The API server's endpoints become `ports`; the proxy acts on it after `delay` (at once
        with `now`: the state before the test starts)."""
        with self._lock:
            self._changes.append((time.monotonic() + (0 if now else self.delay), frozenset(ports)))

    def endpoints(self) -> frozenset[int]:
        """The endpoints the proxy uses now."""
        moment = time.monotonic()
        with self._lock:
            seen = [ports for at, ports in self._changes if at <= moment]
        return seen[-1] if seen else frozenset()

    def start(self) -> ServiceProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        ports = sorted(self.endpoints())
        if not ports:
            client.close()
            return
        port = ports[next(self._turn) % len(ports)]
        try:
            backend = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            client.close()
            return
        backend.settimeout(None)
        threading.Thread(target=_pump, args=(backend, client), daemon=True).start()
        _pump(client, backend)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy `source` to `sink` until either side closes; then close both."""
    try:
        while data := source.recv(BUFFER):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
