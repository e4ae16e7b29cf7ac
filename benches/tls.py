#!/usr/bin/env python3
"""TLS against plaintext, side by side in one run, with the same generator (which speaks TLS
too): calls/s at 1,000 players x 1 and 100 x 16 pipelined, idle bytes per connected player,
and new connections per second (connect to WELCOME, then close) for plaintext, full TLS
handshakes and resumed ones.

Usage (from the repository root, after `cargo build --release --features cli`; needs the
`openssl` command to make a throwaway certificate):

    python3 benches/tls.py [--rounds 3] [--duration 4]

Each round runs every case once, plaintext and TLS in alternating order; `remotefn bench`
starts its own server for each run (`serve`, one worker, limits lifted; with `--tls-cert`
for the TLS runs) and reads that server's memory for idle bytes per player. It prints the
medians and the TLS / plaintext ratios.
"""
import argparse
import statistics
import tempfile

from harness import alternating, bench, certificate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        cert, key = certificate(directory)
        tls = ["--tls-ca", cert, "--tls-cert", cert, "--tls-key", key]
        seconds = ["--duration", str(args.duration), "--warmup", "1"]
        loads = {"1000x1": ["--players", "1000"],
                 "100x16": ["--players", "100", "--inflight", "16"]}
        rates, idle, handshakes = {}, {}, {}
        for r in range(args.rounds):
            for name, flags in loads.items():
                for _, secure in alternating(1, [False, True], first=r):
                    run = bench([*flags, *seconds, *(tls if secure else [])])
                    assert run["errors"] == 0 and run["calls_per_sec"] > 0, run
                    rates.setdefault((name, secure), []).append(run["calls_per_sec"])
                    if name == "1000x1" and run.get("idle_bytes_per_player"):
                        idle.setdefault(secure, []).append(run["idle_bytes_per_player"])
            for kind in ("plain", "full", "resumed"):
                flags = ["--handshakes", kind, "--threads", "2", *seconds]
                run = bench([*flags, *(tls if kind != "plain" else [])])
                handshakes.setdefault(kind, []).append(run["per_sec"])
                assert run["failed"] == 0, run
                if kind == "resumed":
                    assert run["resumed"] > 0, run
    med = statistics.median
    print("| load | plaintext calls/s | TLS calls/s | TLS / plaintext |")
    print("| --- | --- | --- | --- |")
    for name in loads:
        plain, secure = med(rates[(name, False)]), med(rates[(name, True)])
        print(f"| {name} | {plain:,.0f} | {secure:,.0f} | {secure / plain:.2f} |")
    print()
    print(f"idle bytes per player: plaintext {med(idle[False]):,.0f}, TLS {med(idle[True]):,.0f}")
    print("new connections per second (connect to WELCOME, 2 threads): " + ", ".join(
        f"{kind} {med(v):,.0f}" for kind, v in handshakes.items()))


if __name__ == "__main__":
    main()
