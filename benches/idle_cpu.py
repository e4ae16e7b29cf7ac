#!/usr/bin/env python3
"""What idle players cost the server: CPU time of a `remotefn serve` process over a window in
which N connected players (handshake done) send nothing.

Usage (after `cargo build --release --features cli`):

    python3 benches/idle_cpu.py [--players 10000] [--window 30] [--binary PATH]

Opens N connections, completes each handshake (preface, HELLO, WELCOME), then samples the
server's user + system time (/proc/PID/stat) at the start and end of the window and prints
the share of one core it used. The players answer nothing, not even pings, so the window must
stay under the server's idle timeout (60 s by default, pings at 20 s).
"""
import argparse
import re
import resource
import selectors
import socket
import struct
import subprocess
import time

from harness import cpu_seconds


def hello():
    # Preface "RMFN" + version 1, then HELLO: empty place (u16 length) and empty token (u32).
    body = bytes([0x01]) + struct.pack("<H", 0) + struct.pack("<I", 0)
    return b"RMFN" + struct.pack("<H", 1) + struct.pack("<I", len(body)) + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--players", type=int, default=10000)
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--binary", default="./target/release/remotefn")
    args = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.players + 1000), hard))
    server = subprocess.Popen([args.binary, "serve", "--listen", "127.0.0.1:0", "--log", "error",
                               "--max-players", str(args.players + 10)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    host, port = re.search(r"(\d+\.\d+\.\d+\.\d+):(\d+)", server.stdout.readline()).groups()
    players = []
    try:
        for _ in range(args.players):
            s = socket.create_connection((host, int(port)))
            s.sendall(hello())
            players.append(s)
        # Every player is welcomed (a WELCOME waits on each socket) before the window starts.
        waiting = selectors.DefaultSelector()
        for s in players:
            waiting.register(s, selectors.EVENT_READ)
        left, deadline = len(players), time.time() + 60
        while left and time.time() < deadline:
            for key, _ in waiting.select(timeout=1):
                key.fileobj.recv(4096)
                waiting.unregister(key.fileobj)
                left -= 1
        if left:
            raise SystemExit(f"{left} players were not welcomed")
        time.sleep(1)
        before = cpu_seconds(server.pid)
        time.sleep(args.window)
        used = cpu_seconds(server.pid) - before
        print(f"{args.players} idle players: server CPU {used:.3f} s in {args.window:.0f} s "
              f"= {100 * used / args.window:.2f}% of one core")
    finally:
        for s in players:
            s.close()
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
