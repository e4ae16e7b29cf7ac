"""What the benchmark scripts share: servers started from a build of the binary, the CPU time of
a process, a load by this tree's generator with the servers' CPU sampled during it, and the
server's syscalls per call. Imported by the scripts beside it (run them from the repository
root: `python3 benches/NAME.py`)."""
import json
import os
import re
import socket
import subprocess
import time

# This tree's build: its `remotefn bench` is the one generator every comparison uses.
GENERATOR = "./target/release/remotefn"
ADDRESS = r"\d+\.\d+\.\d+\.\d+:\d+"


def start(args):
    """Starts a command that prints its addresses on its first line; returns it and them."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, re.findall(ADDRESS, proc.stdout.readline())


def stop(*procs):
    """Kills each of `procs` and waits for it."""
    for proc in procs:
        proc.kill()
        proc.wait()


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(args, binary=GENERATOR):
    """One `remotefn bench ... --json` run; its result."""
    out = subprocess.run([binary, "bench", *args, "--json"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def machine_ticks():
    """(all ticks, idle + iowait ticks) of the machine so far, from /proc/stat."""
    fields = [int(f) for f in open("/proc/stat").readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


def open_descriptors(pid):
    """How many file descriptors process `pid` holds (its sockets, mostly)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def load(target, players, inflight, duration, pids=(), protocol="remotefn", place=None,
         more_places=(), generator_cpu=False, during=None):
    """Loads `target` with the generator and samples the CPU time of `pids` in steady load:
    once the first of `pids` holds a descriptor per player (all connected; at most a second per
    1,000 players is waited for) and the 1 s warm-up has passed, for half the measured time, so
    the window ends before the run does; `busy_cores` is how many of the machine's cores were busy
    in it (every process counted). With `more_places`, one more generator of `players`
    joins each of those places at the same time (a relay's places), and the run's calls/s are
    their sum, its latencies the worst of them. Returns the run, with `cpu_us_per_call`: per
    process of `pids` (and then the generators together, with `generator_cpu`), its CPU
    microseconds per call answered in the window. `during(seconds)`, when given, runs for the
    window instead of a sleep (a `perf stat` of the server, say); what it returns is the run's
    `during`."""
    generators = []
    for joined in (place, *more_places):
        cmd = [GENERATOR, "bench", "--protocol", protocol, "--target", target, "--players",
               str(players), "--inflight", str(inflight), "--duration", str(duration),
               "--warmup", "1", "--json"]
        if joined:
            cmd += ["--place", joined]
        generators.append(subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL, text=True))
    connected = players * len(generators)
    if pids:
        give_up = time.monotonic() + 2 + connected / 1000
        while open_descriptors(pids[0]) < connected and time.monotonic() < give_up:
            time.sleep(0.05)
        time.sleep(1.25)
    else:
        time.sleep(1.5 + connected / 2000)
    def cpu():
        own = [cpu_seconds(p) for p in pids]
        return own + [sum(cpu_seconds(g.pid) for g in generators)] if generator_cpu else own
    start_at, before, ticks = time.monotonic(), cpu(), machine_ticks()
    seconds = max(duration / 2, 0.5)
    sampled = during(seconds) if during else time.sleep(seconds)
    window = time.monotonic() - start_at
    used = [after - b for after, b in zip(cpu(), before)]
    total, idle = (a - b for a, b in zip(machine_ticks(), ticks))
    runs = [json.loads(g.communicate()[0].strip().splitlines()[-1]) for g in generators]
    run = dict(runs[0])
    for measure in ("calls_per_sec", "calls", "errors"):
        run[measure] = sum(r.get(measure, 0) for r in runs)
    for measure in ("p50_us", "p99_us", "p999_us"):
        run[measure] = max(r.get(measure, 0) for r in runs)
    calls = max(run["calls_per_sec"] * window, 1)
    run["cpu_us_per_call"] = [1e6 * u / calls for u in used]
    run["busy_cores"] = os.cpu_count() * (1 - idle / max(total, 1))
    run["during"], run["window_seconds"] = sampled, window
    return run


def perf_counts(pid, events, seconds):
    """{event: count} of `perf stat -e EVENTS -p PID` over `seconds`."""
    stat = subprocess.run(["perf", "stat", "-x,", "-e", ",".join(events), "-p", str(pid), "--",
                           "sleep", str(seconds)], capture_output=True, text=True)
    counts = {}
    for line in stat.stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in events and fields[0].isdigit():
            counts[fields[2]] = int(fields[0])
    return counts


def syscalls_per_call(binary, players, duration):
    """A server of `binary` (one worker) under the generator: perf counts its
    raw_syscalls:sys_enter over a window inside the load, divided by the calls in it."""
    server, addrs = start([binary, "serve", "--listen", "127.0.0.1:0", "--log", "warn",
                           "--workers", "1"])
    try:
        run = load(addrs[0], players, 1, duration, [server.pid],
                   during=lambda seconds: perf_counts(server.pid, ["raw_syscalls:sys_enter"],
                                                      seconds))
    finally:
        stop(server)
    calls = run["window_seconds"] * run["calls_per_sec"]
    return run["during"]["raw_syscalls:sys_enter"] / calls


def alternating(rounds, choices, first=0):
    """(round, choice) for `rounds` rounds numbered from `first`: every choice once a round,
    their order reversed every other round, so that none always runs first."""
    for r in range(first, first + rounds):
        for choice in (choices if r % 2 == 0 else choices[::-1]):
            yield r, choice


def interleaved_rounds(rounds, start_servers, loads, duration, protocol_of=lambda name: "remotefn",
                       first=0):
    """`rounds` rounds, numbered from `first`: each starts the servers `start_servers()` returns
    ({name: (process, address)}), loads each with every load of `loads` ((players, in flight)
    pairs), alternating which server goes first from round to round, and prints each run.
    Returns {(name, players, in flight): [run]}, each run with its server's `cpu_us_per_call`."""
    runs = {}
    for r in range(first, first + rounds):
        servers = start_servers()
        try:
            for players, inflight in loads:
                for _, name in alternating(1, list(servers), first=r):
                    proc, addr = servers[name]
                    run = load(addr, players, inflight, duration, [proc.pid], protocol_of(name))
                    run["cpu_us_per_call"] = run["cpu_us_per_call"][0]
                    runs.setdefault((name, players, inflight), []).append(run)
                    print(f"round {r + 1} {name:10} {players:>5} x {inflight:<2}: "
                          f"{run['calls_per_sec']:>10,.0f} calls/s  p50 {run['p50_us']:>6} us  "
                          f"p99 {run['p99_us']:>6} us  {run['cpu_us_per_call']:.2f} us CPU/call",
                          flush=True)
        finally:
            stop(*(proc for proc, _ in servers.values()))
    return runs


def free_port():
    """A TCP port on 127.0.0.1 nobody holds right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis():
    """A Redis server on 127.0.0.1 (no persistence), once it accepts; it and its address."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--maxclients", "20000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"


def certificate(directory):
    """A self-signed P-256 certificate for 127.0.0.1 (cert, key), made with openssl."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-addext",
                    "basicConstraints=critical,CA:FALSE"], check=True, capture_output=True)
    return cert, key
