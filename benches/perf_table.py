#!/usr/bin/env python3
"""Fills the table of docs/PERFORMANCE.md: medians of N interleaved rounds, side by side.

Usage (from the repository root, after `cargo build --release --features cli` and
`cargo build --release --manifest-path benches/compare/Cargo.toml`):

    python3 benches/perf_table.py [--rounds 5] [--duration 5]

Each round runs, one after the other so they share the machine's state: the baseline echo,
remotefn and tonic gRPC at 1,000 players x 1 in flight, then remotefn at 10,000 players.
Then it counts server syscalls per call with `strace -c -f` (and with perf's syscall
tracepoint, which disturbs the server far less), and prints the medians and the ratios.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys

from harness import syscalls_per_call

BENCH = "./target/release/remotefn"
GRPC = "./benches/compare/target/release/remotefn-compare"


def bench(protocol, players, duration, warmup=1.0, extra=()):
    if protocol == "grpc":
        cmd = [GRPC, "--players", str(players), "--duration", str(duration), "--warmup", str(warmup), "--json"]
    else:
        cmd = [BENCH, "bench", "--protocol", protocol, "--players", str(players),
               "--duration", str(duration), "--warmup", str(warmup), "--json", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def start_server(prefix, args):
    proc = subprocess.Popen(prefix + [BENCH] + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    addr = next(w for w in line.split() if re.match(r"^\d+\.\d+\.\d+\.\d+:\d+$", w))
    return proc, addr


def syscalls_per_call_strace(players, duration):
    """The server runs under `strace -c -f`; calls come from the bench's own count."""
    summary = "/tmp/remotefn-strace.txt"
    proc, addr = start_server(["strace", "-c", "-f", "-o", summary],
                              ["serve", "--listen", "127.0.0.1:0", "--log", "warn", "--workers", "1"])
    run = bench("remotefn", players, duration, warmup=0.0, extra=["--target", addr])
    # Ending the traced server makes strace write its summary and exit.
    for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    proc.wait()
    total = next(int(l.split()[3]) for l in open(summary) if l.strip().endswith("total"))
    return total / max(run["calls"], 1), run["calls_per_sec"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    keys = [("echo", 1000), ("remotefn", 1000), ("grpc", 1000), ("remotefn", 10000)]
    runs = {k: [] for k in keys}
    for r in range(args.rounds):
        for protocol, players in keys:
            run = bench(protocol, players, args.duration)
            runs[(protocol, players)].append(run)
            print(f"round {r + 1}: {protocol:8} {players:>5} players: {run['calls_per_sec']:>9.0f} calls/s "
                  f"p99 {run['p99_us']:>6} us", file=sys.stderr)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("calls_per_sec", "p50_us", "p99_us")}
           for k, v in runs.items()}
    idle = statistics.median(x["idle_bytes_per_player"] for x in runs[("remotefn", 10000)])
    # 20 s at least: the server's fixed cost per connection (accept, registration, close: ~8
    # calls per player) would otherwise weigh on a short run's ~10k calls under strace.
    strace_spc, strace_rate = syscalls_per_call_strace(1000, max(args.duration, 20.0))
    perf_spc = statistics.median(syscalls_per_call(BENCH, 1000, args.duration) for _ in range(3))
    e, rf, g, rf10k = (med[k] for k in keys)
    print(f"| measure | remotefn | reference | ratio | target |")
    print(f"| --- | --- | --- | --- | --- |")
    print(f"| calls/s, 1,000 x 1 | {rf['calls_per_sec']:,.0f} | baseline {e['calls_per_sec']:,.0f} | "
          f"{rf['calls_per_sec'] / e['calls_per_sec']:.2f} | >= 0.8 |")
    print(f"| calls/s, 1,000 x 1 | {rf['calls_per_sec']:,.0f} | tonic gRPC {g['calls_per_sec']:,.0f} | "
          f"{rf['calls_per_sec'] / g['calls_per_sec']:.1f} | >= 3 |")
    print(f"| p99, 1,000 x 1 | {rf['p99_us'] / 1000:.1f} ms | baseline {e['p99_us'] / 1000:.1f} ms | "
          f"{rf['p99_us'] / e['p99_us']:.2f} | <= 1.5 |")
    print(f"| calls/s, 10,000 vs 1,000 | {rf10k['calls_per_sec']:,.0f} | {rf['calls_per_sec']:,.0f} | "
          f"{rf10k['calls_per_sec'] / rf['calls_per_sec']:.2f} | >= 0.8 |")
    print(f"| server syscalls per call, strace -c -f | {strace_spc:.2f} | (under strace: {strace_rate:,.0f} calls/s) | | <= 2.5 |")
    print(f"| server syscalls per call, perf raw_syscalls | {perf_spc:.2f} | (median of 3) | | <= 2.5 |")
    print(f"| idle memory per player at 10,000 | {idle:,.0f} B | | | <= 2,048 B |")
    print(f"\nmedians of {args.rounds} rounds; p50 remotefn {rf['p50_us']} us, baseline {e['p50_us']} us, "
          f"grpc {g['p50_us']} us")


if __name__ == "__main__":
    main()
