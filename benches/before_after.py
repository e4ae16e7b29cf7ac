#!/usr/bin/env python3
"""This build against an older one, side by side in one run: the perf table's remotefn rows.

Usage (from the repository root, after `cargo build --release --features cli`, with the older
build made e.g. by `git worktree add /tmp/old COMMIT` and
`CARGO_TARGET_DIR=/tmp/old-target cargo build --release --features cli` there):

    python3 benches/before_after.py --before /tmp/old-target/release/remotefn [--rounds 5]

Each round runs, for each build in alternating order, that build's `remotefn bench` (which
starts that build's own server, and reads its memory for idle bytes per player) at 1,000
players x 1 and 10,000 x 1, then loads that build's `serve` (one worker, limits lifted) with
this tree's generator at 100 x 16 pipelined, reading the server's CPU time per call, and counts
that build's server syscalls per call with perf's raw_syscalls tracepoint at 1,000 x 1. It
prints the medians of calls/s, p99, CPU per call, idle bytes per player and syscalls per call,
and this build's ratio to the older.
"""
import argparse
import statistics

from harness import GENERATOR, alternating, bench, load, start, stop, syscalls_per_call

LIFT = ["--rate-per-sec", "0", "--max-inflight-per-player", "10000"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="the older build of the binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=4.0)
    args = ap.parse_args()
    builds = [("this", GENERATOR), ("before", args.before)]
    rows = {}
    for r, (name, binary) in alternating(args.rounds, builds):
        for players in (1000, 10000):
            run = bench(["--players", str(players), "--duration", str(args.duration),
                         "--warmup", "1"], binary)
            rows.setdefault((name, players), []).append(run)
            print(f"round {r + 1} {name:6} {players:>5} x 1: {run['calls_per_sec']:>9,.0f} calls/s"
                  f"  p99 {run['p99_us']:>6} us", flush=True)
        server, addrs = start([binary, "serve", "--listen", "127.0.0.1:0", "--log", "error",
                               "--workers", "1", *LIFT])
        try:
            run = load(addrs[0], 100, 16, args.duration, [server.pid])
        finally:
            stop(server)
        rows.setdefault((name, "pipelined"), []).append(run)
        print(f"round {r + 1} {name:6}   100 x 16: {run['calls_per_sec']:>9,.0f} calls/s"
              f"  {run['cpu_us_per_call'][0]:.2f} us CPU/call", flush=True)
        spc = syscalls_per_call(binary, 1000, args.duration)
        rows.setdefault((name, "syscalls"), []).append(spc)
        print(f"round {r + 1} {name:6} syscalls per call {spc:.2f}", flush=True)
    med = statistics.median
    print("\n| measure | this | before | ratio |\n| --- | --- | --- | --- |")
    for players in (1000, 10000):
        this, before = rows[("this", players)], rows[("before", players)]
        for key, label in (("calls_per_sec", "calls/s"), ("p99_us", "p99 (us)")):
            a, b = med(x[key] for x in this), med(x[key] for x in before)
            print(f"| {label}, {players:,} x 1 | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")
    this, before = rows[("this", "pipelined")], rows[("before", "pipelined")]
    a, b = med(x["calls_per_sec"] for x in this), med(x["calls_per_sec"] for x in before)
    print(f"| calls/s, 100 x 16 | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")
    a, b = (med(x["cpu_us_per_call"][0] for x in v) for v in (this, before))
    print(f"| server CPU per call, 100 x 16 (us) | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    a = med(x["idle_bytes_per_player"] for x in rows[("this", 10000)])
    b = med(x["idle_bytes_per_player"] for x in rows[("before", 10000)])
    print(f"| idle bytes per player, 10,000 | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")
    a, b = med(rows[("this", "syscalls")]), med(rows[("before", "syscalls")])
    print(f"| server syscalls per call, 1,000 x 1 | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    print(f"\nmedians of {args.rounds} interleaved rounds")


if __name__ == "__main__":
    main()
