"""Hostile clients of the address service, as a process of their own (so they cost the measuring client no CPU).

Usage: ``python hostile.py MODE HOST PORT COUNT [RATE]``

* ``idle``: keep COUNT connections open that never send a byte.
* ``slow``: keep COUNT connections that each send a request head declaring a
  1 000-byte body, then 6 bytes of it, then one byte every 0.5 s.

A connection the server closes is opened again, at most RATE (default 200)
a second, so the attack stays up. Prints ``ready`` once COUNT connections
were opened; stops when its standard input closes (or after 120 s) and
prints one JSON line: connections opened, closed by the server, the status
codes the server sent before closing, and the longest time the server let
one connection stay.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time

SLOW_HEAD = b"POST /v1/ip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
TRICKLE = 0.5
LIFETIME = 120.0


def main() -> int:
    mode, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 200.0
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    opened: dict[socket.socket, float] = {}
    stats = {"opened": 0, "closed_by_server": 0, "refused": 0}
    codes: dict[str, int] = {}
    held_max = 0.0
    tokens, last = float(count), time.monotonic()  # the first COUNT connect at once
    next_trickle = time.monotonic() + TRICKLE
    ready = False
    stop_at = time.monotonic() + LIFETIME

    def open_one() -> None:
        try:
            sock = socket.create_connection((host, port), timeout=2)
            if mode == "slow":
                sock.sendall(SLOW_HEAD + b'{"serv')
        except OSError:
            stats["refused"] += 1
            return
        sock.setblocking(False)
        opened[sock] = time.monotonic()
        sel.register(sock, selectors.EVENT_READ, None)
        stats["opened"] += 1

    while time.monotonic() < stop_at:
        now = time.monotonic()
        tokens = min(float(count), tokens + (now - last) * rate)
        last = now
        while len(opened) < count and tokens >= 1:
            tokens -= 1
            open_one()
        if not ready and len(opened) >= count:
            print("ready", flush=True)
            ready = True
        if mode == "slow" and now >= next_trickle:
            next_trickle = now + TRICKLE
            for sock in list(opened):
                try:
                    sock.send(b"x")
                except OSError:
                    pass  # closed by the server: seen as readable below
        for key, _ in sel.select(timeout=0.05):
            if key.fileobj is sys.stdin:
                if not sys.stdin.readline():
                    stop_at = 0.0
                continue
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 "):
                code = data[9:12].decode()
                codes[code] = codes.get(code, 0) + 1
            if data and b"Connection: close" not in data:
                continue
            held_max = max(held_max, time.monotonic() - opened.pop(sock))
            sel.unregister(sock)
            sock.close()
            stats["closed_by_server"] += 1
    for sock in opened:
        sock.close()
    print(json.dumps({**stats, "codes": codes, "held_max": round(held_max, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
