#!/usr/bin/env python3
"""The library's own client API against the raw-socket generator, one call at a time.

Usage (from the repository root, after `cargo build --release --features cli` and
`cargo build --release --examples`):

    python3 benches/client_api.py [--rounds 3] [--duration 4]

Each round starts `remotefn serve --inline` and measures, one after the other, round trips per
second of one player with one call in flight: the raw-socket generator (`remotefn bench
--players 1 --inflight 1`), one Rust thread calling `Client::invoke_server` in a loop
(`examples/client_loop.rs`) and one C thread calling `rf_client_invoke_server` in a loop
(`benches/client_loop.c`, compiled here with `cc` against `target/release/libremotefn.so`).
It prints each, then the medians and each API's ratio to the generator.
"""
import argparse
import os
import statistics
import subprocess

from harness import GENERATOR, bench, start

RUST_LOOP = "./target/release/examples/client_loop"
C_LOOP = "./target/release/client_loop_c"


def build_c():
    subprocess.run(["cc", "-O2", "-std=c11", "-Iinclude", "benches/client_loop.c", "-o", C_LOOP,
                    "-Ltarget/release", "-lremotefn", "-Wl,-rpath," + os.path.abspath("target/release")],
                   check=True)


def api_loop(program, addr, duration):
    out = subprocess.run([program, addr, str(duration)], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[1]), float(out[3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    args = ap.parse_args()
    build_c()
    runs = {}
    for r in range(args.rounds):
        server, addrs = start([GENERATOR, "serve", "--listen", "127.0.0.1:0", "--log", "error",
                               "--inline", "--rate-per-sec", "0"])
        try:
            raw = bench(["--target", addrs[0], "--players", "1", "--inflight", "1", "--duration",
                         str(args.duration), "--warmup", "1"])
            results = {"generator": (raw["calls_per_sec"], raw["p50_us"]),
                       "rust API": api_loop(RUST_LOOP, addrs[0], args.duration),
                       "C API": api_loop(C_LOOP, addrs[0], args.duration)}
        finally:
            server.kill()
            server.wait()
        for name, (rate, p50) in results.items():
            runs.setdefault(name, []).append((rate, p50))
            print(f"round {r + 1} {name:9}: {rate:>8,.0f} round trips/s  p50 {p50:.0f} us", flush=True)
    med = statistics.median
    base = med(rate for rate, _ in runs["generator"])
    print("\n| caller | round trips/s | p50 | ratio to the generator |")
    print("| --- | --- | --- | --- |")
    for name, values in runs.items():
        rate, p50 = med(v[0] for v in values), med(v[1] for v in values)
        print(f"| {name} | {rate:,.0f} | {p50:.0f} us | {rate / base:.2f} |")
    print(f"\nmedians of {args.rounds} rounds")


if __name__ == "__main__":
    main()
