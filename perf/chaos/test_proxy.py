#!/usr/bin/env python3
"""Tests of the chaos proxy: bytes flow, a stall holds them, latency delays them, a reset
reaches both ends as a reset (not a silent hang and not a polite close)."""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy import Proxy  # noqa: E402


class Echo:
    """An upstream that echoes and remembers how each connection ended."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.ends = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            c, _ = self.sock.accept()
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        try:
            while data := c.recv(4096):
                c.sendall(data)
            self.ends.append("eof")
        except ConnectionResetError:
            self.ends.append("reset")


class ProxyTest(unittest.TestCase):
    def setUp(self):
        self.echo = Echo()
        self.proxy = Proxy(self.echo.port)
        self.client = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5)

    def tearDown(self):
        self.client.close()
        self.proxy.close()

    def test_bytes_flow_both_ways(self):
        self.client.sendall(b"ping")
        self.assertEqual(self.client.recv(4), b"ping")

    def test_a_stall_holds_bytes_until_it_ends(self):
        self.client.sendall(b"a")
        self.assertEqual(self.client.recv(1), b"a")
        t = threading.Thread(target=self.proxy.stall, args=(0.5, "down"))
        t.start()
        self.client.settimeout(0.2)
        self.client.sendall(b"b")
        with self.assertRaises(socket.timeout):
            self.client.recv(1)
        t.join()
        self.client.settimeout(5)
        self.assertEqual(self.client.recv(1), b"b")

    def test_latency_delays_bytes_and_keeps_them(self):
        t = threading.Thread(target=self.proxy.latency, args=(0.3, 1.0, "up"))
        t.start()
        time.sleep(0.05)  # The fault is on before the bytes are sent: no race with its start.
        started = time.time()
        self.client.sendall(b"late")
        got = b""
        while len(got) < 4:
            got += self.client.recv(4)
        self.assertEqual(got, b"late")
        self.assertGreaterEqual(time.time() - started, 0.3)
        t.join()
        started = time.time()
        self.client.sendall(b"on")
        self.assertEqual(self.client.recv(2), b"on")
        self.assertLess(time.time() - started, 0.3, "the delay ended with the fault")

    def test_a_reset_resets_both_ends(self):
        self.client.sendall(b"x")
        self.assertEqual(self.client.recv(1), b"x")
        self.proxy.reset()
        with self.assertRaises(ConnectionResetError):
            self.client.recv(1)
        deadline = time.time() + 5
        while not self.echo.ends and time.time() < deadline:
            time.sleep(0.01)
        self.assertEqual(self.echo.ends, ["reset"])


if __name__ == "__main__":
    unittest.main()
