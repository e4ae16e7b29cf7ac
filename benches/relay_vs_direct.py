#!/usr/bin/env python3
"""Through a relay against direct, side by side, for one or two builds of the binary.

Usage (from the repository root, after `cargo build --release --features cli`):

    python3 benches/relay_vs_direct.py [--rounds 3] [--duration 4] [--before PATH_TO_OLD_BINARY]

Each round starts, for each build, a relay with a game server attached to it and a game server
of its own (rate and in-flight limits lifted), then loads each with the same generator (this
tree's `remotefn bench`): 100 players x 16 calls in flight (pipelined) and 1,000 x 1, 32-byte
echo. It prints calls/s through the relay, directly, and their ratio, and what a call costs in
CPU time (user + system of the relay and of its game server, each, or of the direct server,
over a window inside the measured run, divided by the calls answered in it), then the
medians. With `--before`, the two builds
alternate which goes first, so they share the machine's state. With `--inline`, both game
servers (behind the relay and direct) run their Echo on the event loop.
"""
import argparse
import statistics
import time

from harness import GENERATOR, alternating, load, start, stop

LIFT = ["--rate-per-sec", "0", "--max-inflight-per-player", "10000"]
LOADS = ((100, 16), (1000, 1))


def one_build(binary, duration, serve_flags):
    """Per load: (calls/s, relay CPU, host CPU) through the relay and (calls/s, CPU) direct."""
    relay, relay_addrs = start([binary, "relay", "--players", "127.0.0.1:0", "--hosts", "127.0.0.1:0",
                                "--secret", "s3", "--log", "error", *LIFT])
    host, _ = start([binary, "serve", "--attach", relay_addrs[1], "--place", "p", "--secret", "s3",
                     "--log", "error", *LIFT, *serve_flags])
    direct, direct_addrs = start([binary, "serve", "--listen", "127.0.0.1:0", "--log", "error", *LIFT,
                                  *serve_flags])
    time.sleep(0.3)
    try:
        results = {}
        for players, inflight in LOADS:
            via = load(relay_addrs[0], players, inflight, duration, [relay.pid, host.pid], place="p")
            own = load(direct_addrs[0], players, inflight, duration, [direct.pid])
            results[(players, inflight)] = ((via["calls_per_sec"], *via["cpu_us_per_call"]),
                                            (own["calls_per_sec"], *own["cpu_us_per_call"]))
        return results
    finally:
        stop(relay, host, direct)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--before", help="an older build of the binary to compare with")
    ap.add_argument("--inline", action="store_true",
                    help="both game servers run Echo inline (serve --inline; this build only)")
    args = ap.parse_args()
    serve_flags = ["--inline"] if args.inline else []
    builds = {"this": GENERATOR}
    if args.before:
        builds["before"] = args.before
    results = {}
    for r, (name, binary) in alternating(args.rounds, list(builds.items())):
        for (players, inflight), (via, direct) in one_build(binary, args.duration, serve_flags).items():
            results.setdefault((name, players, inflight), []).append((via, direct))
            print(f"round {r} {name:6} {players}x{inflight}: relay {via[0]:,.0f} calls/s "
                  f"(CPU/call: relay {via[1]:.2f} us + host {via[2]:.2f} us)  direct "
                  f"{direct[0]:,.0f} ({direct[1]:.2f} us)  ratio {via[0] / direct[0]:.3f}",
                  flush=True)
    print()
    med = statistics.median
    for (name, players, inflight), runs in sorted(results.items()):
        print(f"{name:6} {players}x{inflight}: median relay {med(v[0] for v, _ in runs):,.0f} "
              f"(CPU/call: relay {med(v[1] for v, _ in runs):.2f} us + host "
              f"{med(v[2] for v, _ in runs):.2f} us = {med(v[1] + v[2] for v, _ in runs):.2f} us)  "
              f"median direct {med(d[0] for _, d in runs):,.0f} ({med(d[1] for _, d in runs):.2f} us)  "
              f"median ratio {med(v[0] / d[0] for v, d in runs):.3f}")

if __name__ == "__main__":
    main()
