#!/usr/bin/env python3
"""The relay on one event loop and on two, with two places, side by side.

Usage (from the repository root, after `cargo build --release --features cli`):

    python3 benches/relay_loops.py [--rounds 3] [--duration 4]

Each round, for `relay --reactors 1` and `--reactors 2` in turn (alternating which goes first),
starts the relay with two game servers attached, one per place ("a" and "b", whose names hash
to different loops of two), both running Echo inline with rate and in-flight limits lifted.
Then it loads both places at once, one generator each: 50 players x 16 calls in flight per
place (100 x 16 in all), and 500 x 1 per place. It reports the calls/s of both together and the
relay's CPU time per call (user + system over a window of steady load, divided by the calls
answered in it), and the medians.
"""
import argparse
import statistics

from harness import GENERATOR, alternating, load, start, stop

LIFT = ["--rate-per-sec", "0", "--max-inflight-per-player", "10000"]
PLACES = ("a", "b")
LOADS = ((50, 16), (500, 1))


def one_relay(reactors, duration):
    """{load: run} for a relay on `reactors` loops with a host per place."""
    relay, addrs = start([GENERATOR, "relay", "--players", "127.0.0.1:0", "--hosts", "127.0.0.1:0",
                          "--secret", "s3", "--log", "error", "--reactors", str(reactors), *LIFT])
    hosts = [start([GENERATOR, "serve", "--attach", addrs[1], "--place", place, "--secret", "s3",
                    "--log", "error", "--inline", *LIFT])[0] for place in PLACES]
    try:
        return {(players, inflight): load(addrs[0], players, inflight, duration, [relay.pid],
                                          place=PLACES[0], more_places=PLACES[1:])
                for players, inflight in LOADS}
    finally:
        stop(relay, *hosts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    args = ap.parse_args()
    runs = {}
    for r, reactors in alternating(args.rounds, [1, 2]):
        for (players, inflight), run in one_relay(reactors, args.duration).items():
            runs.setdefault((reactors, players, inflight), []).append(run)
            print(f"round {r + 1} relay on {reactors} loop(s), 2 places x {players} x "
                  f"{inflight}: {run['calls_per_sec']:,.0f} calls/s, p99 {run['p99_us']} us, "
                  f"relay {run['cpu_us_per_call'][0]:.2f} us CPU/call", flush=True)
    med = statistics.median
    print("\n| players x in flight (2 places) | calls/s, 1 loop | calls/s, 2 loops | "
          "relay CPU/call, 1 loop | 2 loops | CPU ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for players, inflight in LOADS:
        one, two = runs[(1, players, inflight)], runs[(2, players, inflight)]
        c1, c2 = (med(x["calls_per_sec"] for x in v) for v in (one, two))
        u1, u2 = (med(x["cpu_us_per_call"][0] for x in v) for v in (one, two))
        print(f"| 2 x {players:,} x {inflight} | {c1:,.0f} | {c2:,.0f} | {u1:.2f} us | "
              f"{u2:.2f} us | {u2 / u1:.2f} |")
    print(f"\nmedians of {args.rounds} interleaved rounds")


if __name__ == "__main__":
    main()
