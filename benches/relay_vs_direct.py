#!/usr/bin/env python3
"""Through a relay against direct, side by side, for one or two builds of the binary.

Usage (from the repository root, after `cargo build --release --features cli`):

    python3 benches/relay_vs_direct.py [--rounds 3] [--duration 4] [--before PATH_TO_OLD_BINARY]

Each round starts, for each build, a relay with a game server attached to it and a game server
of its own (rate and in-flight limits lifted), then loads each with the same generator (this
tree's `remotefn bench`): 100 players x 16 calls in flight (pipelined) and 1,000 x 1, 32-byte
echo. It prints calls/s through the relay, directly, and their ratio, then the medians. With
`--before`, the two builds alternate which goes first, so they share the machine's state.
"""
import argparse
import json
import re
import statistics
import subprocess
import time

NEW = "./target/release/remotefn"
LIFT = ["--rate-per-sec", "0", "--max-inflight-per-player", "10000"]
LOADS = ((100, 16), (1000, 1))


def start(args):
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addrs = re.findall(r"\d+\.\d+\.\d+\.\d+:\d+", proc.stdout.readline())
    return proc, addrs


def bench(target, players, inflight, duration, place=None):
    cmd = [NEW, "bench", "--target", target, "--players", str(players), "--inflight", str(inflight),
           "--duration", str(duration), "--warmup", "1", "--json"]
    if place:
        cmd += ["--place", place]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["calls_per_sec"]


def one_build(binary, duration):
    relay, relay_addrs = start([binary, "relay", "--players", "127.0.0.1:0", "--hosts", "127.0.0.1:0",
                                "--secret", "s3", "--log", "error", *LIFT])
    host, _ = start([binary, "serve", "--attach", relay_addrs[1], "--place", "p", "--secret", "s3",
                     "--log", "error", *LIFT])
    direct, direct_addrs = start([binary, "serve", "--listen", "127.0.0.1:0", "--log", "error", *LIFT])
    time.sleep(0.3)
    try:
        return {load: (bench(relay_addrs[0], *load, duration, place="p"),
                       bench(direct_addrs[0], *load, duration)) for load in LOADS}
    finally:
        for proc in (relay, host, direct):
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--before", help="an older build of the binary to compare with")
    args = ap.parse_args()
    builds = {"this": NEW}
    if args.before:
        builds["before"] = args.before
    results = {}
    for r in range(args.rounds):
        order = list(builds.items()) if r % 2 == 0 else list(reversed(builds.items()))
        for name, binary in order:
            for (players, inflight), (via, direct) in one_build(binary, args.duration).items():
                results.setdefault((name, players, inflight), []).append((via, direct))
                print(f"round {r} {name:6} {players}x{inflight}: relay {via:,.0f}  direct {direct:,.0f}  "
                      f"ratio {via / direct:.3f}", flush=True)
    print()
    for (name, players, inflight), runs in sorted(results.items()):
        print(f"{name:6} {players}x{inflight}: median relay {statistics.median(v for v, _ in runs):,.0f}  "
              f"median direct {statistics.median(d for _, d in runs):,.0f}  "
              f"median ratio {statistics.median(v / d for v, d in runs):.3f}")


if __name__ == "__main__":
    main()
