#!/usr/bin/env python3
"""Fills the tables of docs/PERFORMANCE.md: medians of N interleaved rounds, side by side.

Usage (from the repository root, after `cargo build --release --features cli` and
`cargo build --release --manifest-path benches/compare/Cargo.toml`; Redis rows need
`redis-server` on the PATH, and are skipped with a note otherwise):

    python3 benches/perf_table.py [--rounds 5] [--duration 5]

Each round starts, as servers of their own, the in-tree baseline echo (`remotefn
bench-echo-server`), remotefn (`serve`, one handler worker as `remotefn bench` runs it, rate
and in-flight limits lifted), remotefn with its Echo inline (`serve --inline`) and Redis
(PING), and loads each in turn with the same generator at 1,000 players x 1 in flight, 10,000 x
1 and 100 x 16 (pipelined); then tonic gRPC (`remotefn-compare`, its own generator) at 1,000 x
1. Every run reports the server's CPU time per call: user + system of the server process over a
window of steady load (all players connected, the warm-up passed), divided by the calls
answered in it. Then it counts server syscalls per call with `strace -c -f` (and with perf's
syscall tracepoint, which disturbs the server far less), measures idle memory per player at
10,000, and prints the medians and the ratios.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import time

from harness import (GENERATOR, bench, cpu_seconds, interleaved_rounds, start, start_redis,
                     syscalls_per_call)

GRPC = "./benches/compare/target/release/remotefn-compare"
LOADS = ((1000, 1), (10000, 1), (100, 16))
LIFT = ["--rate-per-sec", "0", "--max-inflight-per-player", "65535", "--max-players", "200000"]
# What each server is called in the output, and the protocol the generator speaks to it.
SERVERS = {"baseline": "echo", "remotefn": "remotefn", "inline": "remotefn", "redis": "resp"}


def servers(with_redis):
    """Every server of a round, started: {name: (process, address)}."""
    def own(args):
        proc, addrs = start([GENERATOR, *args, "--listen", "127.0.0.1:0"])
        return proc, addrs[0]
    started = {
        "baseline": own(["bench-echo-server", "--workers", "1"]),
        "remotefn": own(["serve", "--log", "error", "--workers", "1", *LIFT]),
        "inline": own(["serve", "--log", "error", "--workers", "1", "--inline", *LIFT]),
    }
    if with_redis:
        started["redis"] = start_redis()
    return started


def grpc(players, duration):
    """One gRPC run, with the CPU per call of its server (the child it starts)."""
    proc = subprocess.Popen([GRPC, "--players", str(players), "--duration", str(duration),
                             "--warmup", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.5 + players / 2000)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                              text=True).stdout.split()
    server = int(children[0])
    start_at, before = time.monotonic(), cpu_seconds(server)
    time.sleep(max(duration / 2, 0.5))
    window, used = time.monotonic() - start_at, cpu_seconds(server) - before
    run = json.loads(proc.communicate()[0].strip().splitlines()[-1])
    run["cpu_us_per_call"] = 1e6 * used / max(run["calls_per_sec"] * window, 1)
    return run


def syscalls_per_call_strace(players, duration):
    """The server runs under `strace -c -f`; calls come from the bench's own count."""
    summary = "/tmp/remotefn-strace.txt"
    proc, addrs = start(["strace", "-c", "-f", "-o", summary, GENERATOR, "serve", "--listen",
                         "127.0.0.1:0", "--log", "warn", "--workers", "1"])
    run = bench(["--target", addrs[0], "--players", str(players), "--duration", str(duration),
                 "--warmup", "0"])
    # Ending the traced server makes strace write its summary and exit.
    for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                              text=True).stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    proc.wait()
    total = next(int(line.split()[3]) for line in open(summary)
                 if line.strip().endswith("total"))
    return total / max(run["calls"], 1), run["calls_per_sec"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    with_redis = shutil.which("redis-server") is not None
    if not with_redis:
        print("redis-server is not installed: its rows are skipped (apt-get install redis-server)")
    runs, grpc_runs = {}, []
    for r in range(args.rounds):
        for key, got in interleaved_rounds(1, lambda: servers(with_redis), LOADS, args.duration,
                                           SERVERS.get, first=r).items():
            runs.setdefault(key, []).extend(got)
        grpc_runs.append(grpc(1000, args.duration))
        g = grpc_runs[-1]
        print(f"round {r + 1} grpc        1000 x 1 : {g['calls_per_sec']:>10,.0f} calls/s  "
              f"p99 {g['p99_us']:>6} us  {g['cpu_us_per_call']:.2f} us CPU/call", flush=True)
    med = statistics.median

    def m(name, load, measure):
        if name == "grpc":
            got = grpc_runs if load == (1000, 1) else []
        else:
            got = runs.get((name, *load), [])
        return med(x[measure] for x in got) if got else None

    # 20 s at least: the server's fixed cost per connection (accept, registration, close: ~8
    # calls per player) would otherwise weigh on a short run's ~10k calls under strace.
    strace_spc, strace_rate = syscalls_per_call_strace(1000, max(args.duration, 20.0))
    perf_spc = med(syscalls_per_call(GENERATOR, 1000, args.duration) for _ in range(3))
    idle = med(bench(["--players", "10000", "--duration", "1", "--warmup", "0"])
               ["idle_bytes_per_player"] for _ in range(3))

    names = [n for n in ("remotefn", "inline", "baseline", "redis", "grpc")
             if m(n, (1000, 1), "calls_per_sec") is not None]
    print("\n| players x in flight | server | calls/s | p50 | p99 | server CPU per call |")
    print("| --- | --- | --- | --- | --- | --- |")
    for load in LOADS:
        for name in names:
            calls = m(name, load, "calls_per_sec")
            if calls is None:
                continue
            print(f"| {load[0]:,} x {load[1]} | {name} | {calls:,.0f} | "
                  f"{m(name, load, 'p50_us') / 1000:.2f} ms | {m(name, load, 'p99_us') / 1000:.2f} ms | "
                  f"{m(name, load, 'cpu_us_per_call'):.2f} us |")

    one, ten = (1000, 1), (10000, 1)
    rf = m("remotefn", one, "calls_per_sec")
    print("\n| measure | remotefn | reference | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| calls/s, 1,000 x 1 | {rf:,.0f} | baseline {m('baseline', one, 'calls_per_sec'):,.0f} | "
          f"{rf / m('baseline', one, 'calls_per_sec'):.2f} | >= 0.8 |")
    print(f"| calls/s, 1,000 x 1 | {rf:,.0f} | tonic gRPC {m('grpc', one, 'calls_per_sec'):,.0f} | "
          f"{rf / m('grpc', one, 'calls_per_sec'):.1f} | >= 3 |")
    print(f"| p99, 1,000 x 1 | {m('remotefn', one, 'p99_us') / 1000:.1f} ms | baseline "
          f"{m('baseline', one, 'p99_us') / 1000:.1f} ms | "
          f"{m('remotefn', one, 'p99_us') / m('baseline', one, 'p99_us'):.2f} | <= 1.5 |")
    print(f"| calls/s, 10,000 vs 1,000 | {m('remotefn', ten, 'calls_per_sec'):,.0f} | {rf:,.0f} | "
          f"{m('remotefn', ten, 'calls_per_sec') / rf:.2f} | >= 0.8 |")
    if with_redis:
        for load in LOADS:
            for name in ("remotefn", "inline"):
                ours, theirs = (m(n, load, "calls_per_sec") for n in (name, "redis"))
                cpu = m(name, load, "cpu_us_per_call") / m("redis", load, "cpu_us_per_call")
                print(f"| calls/s, {load[0]:,} x {load[1]}, {name} | {ours:,.0f} | Redis "
                      f"{theirs:,.0f} | {ours / theirs:.2f} (CPU per call {cpu:.2f}) | >= 1.0 |")
    print(f"| server syscalls per call, strace -c -f | {strace_spc:.2f} | (under strace: "
          f"{strace_rate:,.0f} calls/s) | | <= 2.5 |")
    print(f"| server syscalls per call, perf raw_syscalls | {perf_spc:.2f} | (median of 3) | | <= 2.5 |")
    print(f"| idle memory per player at 10,000 | {idle:,.0f} B | (median of 3) | | <= 2,048 B |")
    print(f"\nmedians of {args.rounds} interleaved rounds")


if __name__ == "__main__":
    main()
