#!/usr/bin/env python3
"""remotefn against Redis, side by side, with the same generator.

Usage (from the repository root, after `cargo build --release --features cli`; needs
`redis-server` on the PATH, e.g. `apt-get install redis-server`, and skips with a note
otherwise):

    python3 benches/vs_redis.py [--rounds 5] [--duration 5]

Each round starts two remotefn servers (`serve`, rate and in-flight limits lifted, default
workers; one with `--inline`, its Echo run on the event loop) and a Redis server (no
persistence), then loads each in turn with `remotefn bench`:
1,000 players x 1 in flight, 5,000 x 1, 10,000 x 1, 100 x 16 (pipelined) and 1 x 1. remotefn answers a
32-byte echo (INVOKE "Echo"); Redis answers PING. For each it reports calls/s, p50 and p99, and
the server's CPU time per call (user + system of the server process over a window inside the
measured run, divided by the calls answered in it), then the medians and remotefn's ratios.
"""
import argparse
import shutil
import statistics

from harness import GENERATOR, interleaved_rounds, start, start_redis

LOADS = ((1000, 1), (5000, 1), (10000, 1), (100, 16), (1, 1))


def start_remotefn(*flags):
    proc, addrs = start([GENERATOR, "serve", "--listen", "127.0.0.1:0", "--log", "error",
                         "--rate-per-sec", "0", "--max-inflight-per-player", "10000",
                         "--max-players", "200000", *flags])
    return proc, addrs[0]


# What each server is called in the output, and the protocol the generator speaks to it.
SERVERS = {"workers": "remotefn", "inline": "remotefn", "redis": "resp"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not installed: skipped (apt-get install redis-server)")
        return
    def servers():
        return {"workers": start_remotefn(), "inline": start_remotefn("--inline"),
                "redis": start_redis()}

    runs = interleaved_rounds(args.rounds, servers, LOADS, args.duration, SERVERS.get)
    med = statistics.median
    print("\n| players x in flight | handlers | remotefn calls/s | Redis calls/s | ratio | "
          "p99 remotefn / Redis | CPU/call remotefn | CPU/call Redis | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (players, inflight), mode in ((load, mode) for load in LOADS
                                      for mode in ("workers", "inline")):
        a, b = runs[(mode, players, inflight)], runs[("redis", players, inflight)]
        ca, cb = med(x["calls_per_sec"] for x in a), med(x["calls_per_sec"] for x in b)
        pa, pb = med(x["p99_us"] for x in a), med(x["p99_us"] for x in b)
        ua, ub = med(x["cpu_us_per_call"] for x in a), med(x["cpu_us_per_call"] for x in b)
        extra = ""
        if (players, inflight) == (1, 1):
            extra = (f" (p50 {med(x['p50_us'] for x in a)} vs {med(x['p50_us'] for x in b)} us)")
        # A window that fell past the run (many players, a short --duration) sampled nothing.
        cpu_ratio = f"{ua / ub:.2f}" if ua > 0.5 and ub > 0.5 else "not sampled (longer --duration)"
        print(f"| {players:,} x {inflight} | {mode} | {ca:,.0f} | {cb:,.0f} | {ca / cb:.2f} | "
              f"{pa / 1000:.2f} / {pb / 1000:.2f} ms ({pa / pb:.2f}){extra} | {ua:.2f} us | "
              f"{ub:.2f} us | {cpu_ratio} |")
    print(f"\nmedians of {args.rounds} interleaved rounds")


if __name__ == "__main__":
    main()
