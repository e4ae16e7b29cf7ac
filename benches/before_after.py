#!/usr/bin/env python3
"""This build against an older one, side by side in one run: the perf table's remotefn rows.

Usage (from the repository root, after `cargo build --release --features cli`, with the older
build made e.g. by `git worktree add /tmp/old COMMIT` and
`CARGO_TARGET_DIR=/tmp/old-target cargo build --release --features cli` there):

    python3 benches/before_after.py --before /tmp/old-target/release/remotefn [--rounds 5]

Each round runs, for each build in alternating order, that build's `remotefn bench` (which
starts that build's own server, and reads its memory for idle bytes per player) at 1,000
players x 1 and 10,000 x 1, then counts that build's server syscalls per call with perf's
raw_syscalls tracepoint at 1,000 x 1, under this tree's generator. It prints the medians of
calls/s, p99, idle bytes per player and syscalls per call, and this build's ratio to the older.
"""
import argparse
import statistics

from harness import GENERATOR, bench, syscalls_per_call


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="the older build of the binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=4.0)
    args = ap.parse_args()
    builds = [("this", GENERATOR), ("before", args.before)]
    rows = {}
    for r in range(args.rounds):
        for name, binary in builds if r % 2 == 0 else reversed(builds):
            for players in (1000, 10000):
                run = bench(["--players", str(players), "--duration", str(args.duration),
                             "--warmup", "1"], binary)
                rows.setdefault((name, players), []).append(run)
                print(f"round {r + 1} {name:6} {players:>5} x 1: {run['calls_per_sec']:>9,.0f} calls/s"
                      f"  p99 {run['p99_us']:>6} us", flush=True)
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
    a = med(x["idle_bytes_per_player"] for x in rows[("this", 10000)])
    b = med(x["idle_bytes_per_player"] for x in rows[("before", 10000)])
    print(f"| idle bytes per player, 10,000 | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")
    a, b = med(rows[("this", "syscalls")]), med(rows[("before", "syscalls")])
    print(f"| server syscalls per call, 1,000 x 1 | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    print(f"\nmedians of {args.rounds} interleaved rounds")


if __name__ == "__main__":
    main()
