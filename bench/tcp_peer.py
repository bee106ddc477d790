"""Plain TCP on loopback, for scale: a server process that sends N bytes per 8-byte request.

python -m bench.tcp_peer      prints "port N", then serves one connection until it closes
"""

from __future__ import annotations

import socket
import struct
import time


def serve() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(f"port {server.getsockname()[1]}", flush=True)
        conn, _ = server.accept()
        payload = b""
        with conn:
            while True:
                header = conn.recv(8, socket.MSG_WAITALL)
                if len(header) < 8:
                    return
                (size,) = struct.unpack("!Q", header)
                if len(payload) != size:
                    payload = bytes(size)
                conn.sendall(payload)


def fetch(conn: socket.socket, size: int) -> float:
    """Ask for ``size`` bytes and receive them; returns the seconds it took."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    start = time.perf_counter()
    conn.sendall(struct.pack("!Q", size))
    got = 0
    while got < size:
        n = conn.recv_into(view[got:], size - got)
        if n == 0:
            raise ConnectionError("the TCP peer closed early")
        got += n
    return time.perf_counter() - start


if __name__ == "__main__":
    serve()
