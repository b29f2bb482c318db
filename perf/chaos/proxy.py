"""A loopback TCP chaos proxy: forwards one listening port to an upstream address and, on
command, stalls one or both directions (a blackhole: bytes wait, nothing is refused), delays
them (a slow link), or resets every open connection. The pods reach each engine through one of these, so network
faults hit exactly one pod-to-engine path without touching the shared services."""

import socket
import struct
import threading
import time


class Proxy:
    def __init__(self, upstream_port, host="127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        # Set = that direction flows. "up": client -> upstream, "down": upstream -> client.
        self.flow = {"up": threading.Event(), "down": threading.Event()}
        for e in self.flow.values():
            e.set()
        # Seconds each chunk of a direction is held before it is forwarded (0: none).
        self.delay = {"up": 0.0, "down": 0.0}
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self, seconds, direction="both"):
        """Holds the bytes of `direction` ("up", "down" or "both") for `seconds`."""
        dirs = ["up", "down"] if direction == "both" else [direction]
        for d in dirs:
            self.flow[d].clear()
        time.sleep(seconds)
        for d in dirs:
            self.flow[d].set()

    def latency(self, delay, seconds, direction="both"):
        """Holds every chunk of `direction` for `delay` seconds before forwarding it, for
        `seconds`. The pump reads again only after forwarding, so bytes that arrive meanwhile
        wait in the kernel for the next chunk: each byte is late by one to two `delay`s, and
        a direction carries at most a socket buffer per `delay`, as over a long thin link."""
        dirs = ["up", "down"] if direction == "both" else [direction]
        for d in dirs:
            self.delay[d] = delay
        time.sleep(seconds)
        for d in dirs:
            self.delay[d] = 0.0

    def reset(self):
        """Closes every open connection with a RST on both sides. SO_LINGER 0 makes the
        close a reset, but only the last close of the socket: a pump blocked in recv()
        holds it, so the pumps are woken first (shutdown of the read side sends nothing)
        and told not to end the connection politely."""
        with self.lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            conn["reset"] = True
            for s in conn["socks"]:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
        for conn in conns:
            for t in conn["pumps"]:
                t.join(timeout=2)
            for s in conn["socks"]:
                s.close()

    def close(self):
        self.closed = True
        self.listener.close()
        self.reset()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client):
        self.flow["up"].wait()
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = {"socks": (client, upstream), "reset": False}
        conn["pumps"] = [
            threading.Thread(target=self._pump, args=(conn, client, upstream, "up"), daemon=True),
            threading.Thread(target=self._pump, args=(conn, upstream, client, "down"), daemon=True)]
        # Started under the lock: a reset that sees the connection must find its pumps
        # running (joining one not yet started raised and ended a 30-minute soak).
        with self.lock:
            self.conns = [c for c in self.conns if not c.get("done")] + [conn]
            for t in conn["pumps"]:
                t.start()

    def _pump(self, conn, src, dst, direction):
        gate = self.flow[direction]
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                delay = self.delay[direction]
                if delay:
                    time.sleep(delay)
                gate.wait()
                dst.sendall(data)
        except OSError:
            pass
        if conn["reset"]:
            return
        conn["done"] = True
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
