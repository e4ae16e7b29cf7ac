#!/usr/bin/env python3
"""Where the machine's CPU goes through a relay and directly, pipelined.

Usage (from the repository root, after `cargo build --release --features cli`):

    python3 benches/relay_cores.py [--rounds 2] [--duration 5]

Starts a relay with a game server attached and a game server of its own (both running Echo
inline, rate and in-flight limits lifted), loads each with the generator at 100 players x 16
calls in flight, and over a window inside the run prints each process's CPU microseconds per
call (relay, host and generator; or server and generator) and how many of the machine's cores
were busy (from /proc/stat, every process included): the pipeline through the relay is bound
by CPU only if the cores are.
"""
import argparse
import time

from harness import GENERATOR, load, start, stop

LIFT = ["--rate-per-sec", "0", "--max-inflight-per-player", "10000"]


def sample(target, pids, duration, place=None):
    """Loads `target`; returns calls/s, CPU us per call of `pids` and the generator, busy cores."""
    run = load(target, 100, 16, duration, pids, place=place, generator_cpu=True)
    return run["calls_per_sec"], run["cpu_us_per_call"], run["busy_cores"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    for r in range(args.rounds):
        relay, relay_addrs = start([GENERATOR, "relay", "--players", "127.0.0.1:0", "--hosts",
                                    "127.0.0.1:0", "--secret", "s3", "--log", "error", *LIFT])
        host, _ = start([GENERATOR, "serve", "--attach", relay_addrs[1], "--place", "p", "--secret",
                         "s3", "--log", "error", *LIFT, "--inline"])
        direct, direct_addrs = start([GENERATOR, "serve", "--listen", "127.0.0.1:0", "--log", "error",
                                      *LIFT, "--inline"])
        time.sleep(0.3)
        try:
            via = sample(relay_addrs[0], [relay.pid, host.pid], args.duration, place="p")
            own = sample(direct_addrs[0], [direct.pid], args.duration)
        finally:
            stop(relay, host, direct)
        (v_calls, (v_relay, v_host, v_gen), v_busy), (d_calls, (d_server, d_gen), d_busy) = via, own
        print(f"round {r}: relay {v_calls:,.0f} calls/s, us/call relay {v_relay:.2f} + host "
              f"{v_host:.2f} + generator {v_gen:.2f}, busy cores {v_busy:.2f} | direct "
              f"{d_calls:,.0f}, us/call server {d_server:.2f} + generator {d_gen:.2f}, busy cores "
              f"{d_busy:.2f} | ratio {v_calls / d_calls:.3f}", flush=True)


if __name__ == "__main__":
    main()
