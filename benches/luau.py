#!/usr/bin/env python3
"""A Luau `OnServerInvoke` echo against the native handler, side by side in one run, with the
same generator: calls/s, p50/p99 and the server's CPU per call at 1,000 players x 1 (and
100 x 16 pipelined).

Usage (from the repository root, after `cargo build --release --features cli`):

    python3 benches/luau.py [--rounds 3] [--duration 4]

Each round starts two `remotefn serve` processes (one worker, limits lifted): `native`, the
demo's Echo on a worker thread, and `luau`, the same server with `--script
benches/luau_echo.luau`, whose Echo is served by the script host (the worker hands each call
to the Luau scheduler thread, which runs the callback in a coroutine and replies). The two are
loaded in alternating order; the medians and the luau / native ratios are printed.
"""
import argparse
import statistics

from harness import GENERATOR, interleaved_rounds, start

LIFT = ["--rate-per-sec", "0", "--max-inflight-per-player", "65535"]


def servers():
    def own(extra):
        return start([GENERATOR, "serve", "--listen", "127.0.0.1:0", "--log", "error",
                      "--workers", "1", *LIFT, *extra])
    native = own([])
    luau = own(["--script", "benches/luau_echo.luau"])
    return {"native": (native[0], native[1][0]), "luau": (luau[0], luau[1][0])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    args = ap.parse_args()
    loads = [(1000, 1), (100, 16)]
    runs = interleaved_rounds(args.rounds, servers, loads, args.duration)
    med = statistics.median
    print()
    print("| load | native calls/s | Luau calls/s | Luau / native | p99 native / Luau (us) "
          "| CPU per call native / Luau (us) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for players, inflight in loads:
        native = runs[("native", players, inflight)]
        luau = runs[("luau", players, inflight)]
        n, s = (med(r["calls_per_sec"] for r in x) for x in (native, luau))
        p99 = [med(r["p99_us"] for r in x) for x in (native, luau)]
        cpu = [med(r["cpu_us_per_call"] for r in x) for x in (native, luau)]
        print(f"| {players:,} x {inflight} | {n:,.0f} | {s:,.0f} | {s / n:.2f} | "
              f"{p99[0]:,.0f} / {p99[1]:,.0f} | {cpu[0]:.1f} / {cpu[1]:.1f} |")


if __name__ == "__main__":
    main()
