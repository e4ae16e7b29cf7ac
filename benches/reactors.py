#!/usr/bin/env python3
"""One event loop against two, side by side, with the same generator.

Usage (from the repository root, after `cargo build --release --features cli`):

    python3 benches/reactors.py [--rounds 3] [--duration 4] [--scheduler]

Each round starts `serve --reactors 1` and `serve --reactors 2` (rate and in-flight limits
lifted; Echo inline, so that the loops are the whole of the server's work), then loads each in
turn with `remotefn bench`: 1,000 players x 1 in flight and 100 x 16 (pipelined), 32-byte echo.
It prints calls/s and the server's CPU time per call (user + system of the server process over
a window inside the measured run, divided by the calls answered in it), then the medians and
the ratio of two loops to one; with `--scheduler`, then how often each server's loops sleep
and wake (context switches and `epoll_wait`s per second, by `perf stat`). On a 2-core machine
the generator takes one core: the question it answers is whether a second loop costs
anything per call, not how far it scales.
"""
import argparse
import statistics

from harness import GENERATOR, interleaved_rounds, load, perf_counts, start, stop

LOADS = ((1000, 1), (100, 16))
LIFT = ["--rate-per-sec", "0", "--max-inflight-per-player", "10000", "--inline"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--scheduler", action="store_true",
                    help="then count each server's context switches and epoll_waits at 100 x 16")
    args = ap.parse_args()
    def servers():
        started = {}
        for n in (1, 2):
            proc, addrs = start([GENERATOR, "serve", "--listen", "127.0.0.1:0", "--log", "error",
                                 "--reactors", str(n), *LIFT])
            started[f"reactors {n}"] = (proc, addrs[0])
        return started

    runs = interleaved_rounds(args.rounds, servers, LOADS, args.duration)
    med = statistics.median
    print("\n| players x in flight | calls/s, 1 loop | calls/s, 2 loops | CPU/call, 1 loop "
          "| CPU/call, 2 loops | CPU ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for players, inflight in LOADS:
        one, two = runs[("reactors 1", players, inflight)], runs[("reactors 2", players, inflight)]
        c1, c2 = med(x["calls_per_sec"] for x in one), med(x["calls_per_sec"] for x in two)
        u1, u2 = med(x["cpu_us_per_call"] for x in one), med(x["cpu_us_per_call"] for x in two)
        print(f"| {players:,} x {inflight} | {c1:,.0f} | {c2:,.0f} | {u1:.2f} us | {u2:.2f} us "
              f"| {u2 / u1:.2f} |")
    print(f"\nmedians of {args.rounds} interleaved rounds")
    if args.scheduler:
        for n in (1, 2):
            scheduler(n, args.duration)


SCHEDULER_EVENTS = ["context-switches", "syscalls:sys_enter_epoll_wait"]


def scheduler(loops, duration):
    """How often a server on `loops` loops sleeps and wakes under 100 x 16 (perf stat)."""
    proc, addrs = start([GENERATOR, "serve", "--listen", "127.0.0.1:0", "--log", "error",
                         "--reactors", str(loops), *LIFT])
    try:
        run = load(addrs[0], 100, 16, duration, [proc.pid],
                   during=lambda seconds: perf_counts(proc.pid, SCHEDULER_EVENTS, seconds))
    finally:
        stop(proc)
    per_second = {e: n / run["window_seconds"] for e, n in run["during"].items()}
    print(f"{loops} loop(s), 100 x 16: {run['calls_per_sec']:,.0f} calls/s, "
          + ", ".join(f"{e} {n:,.0f}/s" for e, n in per_second.items()))


if __name__ == "__main__":
    main()
