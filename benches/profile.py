#!/usr/bin/env python3
"""Where a server's time goes under load: a `perf` profile of the server process alone.

Usage (from the repository root, after `cargo build --release --features cli`; needs `perf`):

    python3 benches/profile.py [--binary PATH] [--inline] [--tls] [--players 100]
                               [--inflight 16] [--seconds 4] [--top 15]

Starts `serve` of `--binary` (this tree's build by default; an older build profiles "before"),
rate and in-flight limits lifted, one handler worker (or Echo inline with `--inline`), loads it
with this tree's generator, records the server with `perf record -F 2000 -g` for `--seconds`
of steady load, and prints the share of samples in the kernel and in the server's own code,
and the `--top` symbols by self time. With `--tls` (needs `openssl`) the server serves TLS with
a throwaway certificate, the generator speaks TLS to it, and the share of samples in rustls and
ring together is printed too.
"""
import argparse
import subprocess
import re
import tempfile
import time

from harness import GENERATOR, certificate, start, stop

LIFT = ["--rate-per-sec", "0", "--max-inflight-per-player", "10000"]


def report(data, sort, limit):
    """(share %, name) of the first `limit` rows of `perf report --sort sort`."""
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort,
                          "-g", "none", "--stdio"], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].endswith("%") and not line.startswith("#"):
            rows.append((float(parts[0][:-1]), parts[1].strip()))
    return rows[:limit]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=GENERATOR)
    ap.add_argument("--inline", action="store_true")
    ap.add_argument("--players", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--tls", action="store_true")
    args = ap.parse_args()
    flags = ["--inline"] if args.inline else []
    with tempfile.TemporaryDirectory() as tmp:
        client_tls = []
        if args.tls:
            cert, key = certificate(tmp)
            flags += ["--tls-cert", cert, "--tls-key", key]
            client_tls = ["--tls-ca", cert]
        server, addrs = start([args.binary, "serve", "--listen", "127.0.0.1:0", "--log",
                               "error", "--workers", "1", *LIFT, *flags])
        generator = subprocess.Popen([GENERATOR, "bench", "--target", addrs[0], "--players",
                                      str(args.players), "--inflight", str(args.inflight),
                                      "--duration", str(args.seconds + 3), "--warmup", "1",
                                      "--json", *client_tls],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        data = f"{tmp}/perf.data"
        try:
            time.sleep(2)
            subprocess.run(["perf", "record", "-F", "2000", "-g", "-o", data, "-p",
                            str(server.pid), "--", "sleep", str(args.seconds)],
                           capture_output=True, check=True)
            generator.communicate()
        finally:
            stop(server)
        split = report(data, "dso", 4)
        symbols = report(data, "sym", args.top)
        every = report(data, "sym", None)
    print(f"{args.binary} serve{' --inline' if args.inline else ''}{' over TLS' if args.tls else ''}, "
          f"{args.players} x {args.inflight}:")
    print("  " + ", ".join(f"{dso} {share:.1f}%" for share, dso in split))
    if args.tls:
        crypto = sum(share for share, name in every if re.search(r"rustls::|ring::|ring_core_", name))
        print(f"  rustls and ring together: {crypto:.1f}%")
    for share, symbol in symbols:
        print(f"  {share:5.2f}%  {symbol}")


if __name__ == "__main__":
    main()
