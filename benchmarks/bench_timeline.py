"""Where a daily run's wall goes (issue 20): whole `snapshotter run` processes against
the simulator (in this process, as in bench_run.py), each request the simulator
answers recorded with its account, so that each account's steps can be followed: when
its login reached Kite, how long after the login's answer its 2FA went out, how long
after the 2FA's answer its first data request did, and how soon a freed slot started
the next account, overall and per round of ``--concurrency`` accounts. With
``--client-log`` the client's own send times, and when it has read each whole answer,
are logged too (a ``sitecustomize`` on the run's PYTHONPATH wraps ``kite.http._perform``,
libcurl's exchange), to tell the client's waits from the simulator's. With
``--gc-log`` the run's garbage collections are timed (``gc.callbacks``, the same way):
how many, of which generation, and how long.

Run: `.venv/bin/python benchmarks/bench_timeline.py --accounts 200 --concurrency 50
--runs 3`; ``--root DIR`` measures the code in DIR instead (e.g. a `git archive` of
another commit, or of a copy changed for an experiment). Figures, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_fetch import installed_bytecode, run_with_usage, snapshotter, write_config
from bench_run import ROOT, env_for

from snapshotter.simulator import KiteSimulator, demo_accounts

# Loaded by the run's interpreter at start-up (PYTHONPATH).
SWITCH_INTERVAL_HOOK = '''
import os, sys
sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
'''
# One line per request sent: "<perf_counter> <path> <who>", who being the form's user_id
# or a digest of the enctoken sent (the log holds no token); and one per answer whose
# whole body the client has read: "answer <perf_counter> <path> <who>".
CLIENT_LOG_HOOK = '''
import hashlib, os, time
import snapshotter.kite.http as _http

_log = os.open(os.environ["BENCH_CLIENT_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
_perform = _http._perform

def perform(handle, request):
    who = ""
    if isinstance(request.body, bytes):
        for field in request.body.decode(errors="replace").split("&"):
            if field.startswith("user_id="):
                who = field[len("user_id="):]
    for name, value in request.headers.items():
        if not who and name.lower() == "authorization":
            token = value.partition(" ")[2].strip()
            who = "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    sent = f"{request.url.split('://', 1)[1].partition('/')[2].split('?')[0]} {who}"
    sent = "/" + sent
    os.write(_log, f"{time.perf_counter():.6f} {sent}\\n".encode())
    try:
        return _perform(handle, request)
    finally:  # the whole answer read (libcurl hands back the exchange at its end)
        os.write(_log, f"answer {time.perf_counter():.6f} {sent}\\n".encode())

_http._perform = perform
'''

# One line per garbage collection in the run's process: "<generation> <seconds>".
GC_LOG_HOOK = '''
import gc, os, threading, time

_gc_log = os.open(os.environ["BENCH_GC_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
_gc_started = {}

def _timed(phase, info):
    if phase == "start":
        _gc_started[threading.get_ident()] = time.perf_counter()
    else:
        took = time.perf_counter() - _gc_started.pop(threading.get_ident())
        os.write(_gc_log, f"{info['generation']} {took:.6f}\\n".encode())

gc.callbacks.append(_timed)
'''


class Recorder:
    """Wraps the simulator's responder: (arrived, answered, path, account) per request,
    the account of a data request known from the enctoken its 2FA answer set (kept by
    digest, as the client log writes it)."""

    def __init__(self, sim: KiteSimulator):
        self._lock = threading.Lock()
        self.requests: list[tuple[float, float, str, str]] = []
        self.tokens: dict[str, str] = {}
        respond = sim._respond

        def recording(request: Any) -> Any:
            arrived = time.perf_counter()
            answer = respond(request)
            account = request.form.get("user_id", "")
            with self._lock:
                if not account:
                    token = request.headers.get("authorization", "").partition(" ")[2]
                    account = self.tokens.get(_digest(token.strip()), "?")
                for name, value in answer.headers:
                    if name == "Set-Cookie" and value.startswith("enctoken="):
                        self.tokens[_digest(value.split(";")[0].split("=", 1)[1])] = account
                self.requests.append((arrived, time.perf_counter(), request.path, account))
            return answer

        sim._respond = recording  # type: ignore[method-assign]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _kind(path: str) -> str:
    if path.endswith("/api/login"):
        return "login"
    if path.endswith("/api/twofa"):
        return "2fa"
    return "data"


def _ms(ordered: list[float]) -> str:
    """Median and 90th percentile of sorted seconds, in ms."""
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered) * 1000:.1f} / p90 {p90 * 1000:.1f} ms"


def _spread(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (f"  {label}: median {statistics.median(ordered) * 1000:.1f} ms, 90th percentile "
            f"{p90 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms")


def one_run(accounts: int, latency: float, concurrency: int, root: Path, *,
            client_log: bool = False, processes: int = 1,
            switch_interval: float | None = None, gc_log: bool = False) -> list[str]:
    sim_accounts = demo_accounts(accounts)
    env = env_for(root)
    plain = dict(env)  # for `db upgrade`: the hooks watch the timed runs only
    with tempfile.TemporaryDirectory() as tmp, \
            KiteSimulator(sim_accounts, latency=latency) as sim:
        hooks = []
        log_path = Path(tmp) / "client.log"
        if client_log:
            hooks.append(CLIENT_LOG_HOOK)
            env["BENCH_CLIENT_LOG"] = str(log_path)
        gc_path = Path(tmp) / "gc.log"
        if gc_log:
            hooks.append(GC_LOG_HOOK)
            env["BENCH_GC_LOG"] = str(gc_path)
        if switch_interval is not None:
            hooks.append(SWITCH_INTERVAL_HOOK)
            env["BENCH_SWITCH_INTERVAL"] = str(switch_interval)
        if hooks:
            hook_dir = Path(tmp) / "hook"
            hook_dir.mkdir()
            (hook_dir / "sitecustomize.py").write_text("\n".join(hooks))
            env["PYTHONPATH"] = f"{hook_dir}{os.pathsep}{env['PYTHONPATH']}"
        runs = []
        for part in range(processes):
            home = Path(tmp) / f"run{part}"
            home.mkdir()
            config = write_config(home / "config.yaml", str(home), sim.base_url,
                                  sim_accounts[part::processes],
                                  max(1, concurrency // processes))
            subprocess.run(snapshotter("--config", str(config), "db", "upgrade"),
                           check=True, capture_output=True, env=plain, cwd=home)
            runs.append((config, home))
        recorder = Recorder(sim)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=processes) as pool:
            ended = list(pool.map(lambda run: run_with_usage(
                snapshotter("--config", str(run[0]), "run"), env, cwd=run[1]), runs))
        for _, _, result in ended:
            if result.returncode != 0:
                raise SystemExit(f"snapshotter run failed ({result.returncode}):\n"
                                 f"{result.stderr}")
        sent = log_path.read_text().splitlines() if client_log else []
        collections = gc_path.read_text().splitlines() if gc_log else []
    wall = max(w for w, _, _ in ended)
    cpu = sum(usage.ru_utime + usage.ru_stime for _, usage, _ in ended)
    lines = _report(recorder, t0, wall, cpu, max(1, concurrency // processes) * processes,
                    sent)
    if gc_log:
        lines.append(_collections(collections))
    return lines


def _collections(lines: list[str]) -> str:
    count: dict[str, int] = defaultdict(int)
    took: dict[str, float] = defaultdict(float)
    for line in lines:
        generation, seconds = line.split()
        count[generation] += 1
        took[generation] += float(seconds)
    each = ", ".join(f"generation {g}: {count[g]} taking {took[g] * 1000:.0f} ms"
                     for g in sorted(count))
    return (f"  garbage collections: {sum(took.values()) * 1000:.0f} ms in all"
            f"{' (' + each + ')' if each else ''}")


def _report(recorder: Recorder, t0: float, wall: float, cpu: float, concurrency: int,
            sent: list[str]) -> list[str]:
    steps: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list))
    for arrived, answered, path, account in recorder.requests:
        steps[account][_kind(path)].append((arrived - t0, answered - t0))
    accounts = sorted((s for s in steps.values() if s["login"] and s["2fa"] and s["data"]),
                      key=lambda s: s["login"][0][0])
    if not accounts:
        raise SystemExit("no account logged in and fetched: nothing to follow")
    logins = [s["login"][0][0] for s in accounts]
    ends = sorted(max(answered for _, answered in s["data"]) for s in accounts)
    lines = [f"wall {wall:.2f} s, snapshotter CPU {cpu:.2f} s, first login request "
             f"{logins[0]:.3f} s after start, last data answer {ends[-1]:.3f} s, then "
             f"{wall - ends[-1]:.3f} s to store and exit"]
    for first in range(0, len(logins), concurrency):
        group = logins[first:first + concurrency]
        lines.append(f"  logins {first + 1}-{first + len(group)} reached Kite "
                     f"{group[0]:.3f}-{group[-1]:.3f} s")
    lines.append(_spread("login answer -> 2FA request",
                         [s["2fa"][0][0] - s["login"][0][1] for s in accounts]))
    lines.append(_spread("2FA answer -> first data request",
                         [min(a for a, _ in s["data"]) - s["2fa"][0][1] for s in accounts]))
    if len(accounts) > concurrency:  # which rounds of accounts wait longest
        for first in range(0, len(accounts), concurrency):
            group = accounts[first:first + concurrency]
            twofa = sorted(s["2fa"][0][0] - s["login"][0][1] for s in group)
            data = sorted(min(a for a, _ in s["data"]) - s["2fa"][0][1] for s in group)
            lines.append(f"    accounts {first + 1}-{first + len(group)}: login answer -> "
                         f"2FA {_ms(twofa)}; 2FA answer -> data {_ms(data)}")
    lines.append(_spread("first -> last data request of an account",
                         [max(a for a, _ in s["data"]) - min(a for a, _ in s["data"])
                          for s in accounts]))
    if len(logins) > concurrency:  # a slot freed by an account's end starts the next
        lines.append(_spread("an account's end -> the next account's login",
                             [start - end for start, end
                              in zip(logins[concurrency:], ends, strict=False)]))
    if sent:
        lines += _client_waits(recorder, sent)
    return lines


def _client_waits(recorder: Recorder, sent: list[str]) -> list[str]:
    """Client send -> simulator handler, per kind of request, matched per account and
    path in order."""
    sends: dict[tuple[str, str], list[float]] = defaultdict(list)
    reads: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in sent:
        read = line.startswith("answer ")
        at, path, *who = line.split()[1:] if read else line.split()
        account = who[0] if who else ""
        if account.startswith("token:"):
            account = recorder.tokens.get(account[len("token:"):], "?")
        (reads if read else sends)[(account, path)].append(float(at))
    arrivals: dict[tuple[str, str], list[float]] = defaultdict(list)
    answers: dict[tuple[str, str], list[float]] = defaultdict(list)
    for arrived, answered, path, account in recorder.requests:
        arrivals[(account, path)].append(arrived)
        answers[(account, path)].append(answered)
    waits: dict[str, list[float]] = defaultdict(list)
    for key, times in arrivals.items():
        for arrived, at in zip(sorted(times), sorted(sends.get(key, [])), strict=False):
            waits[_kind(key[1])].append(arrived - at)
    # The simulator's answer (its latency waited, the body built) -> the client has its
    # status and headers: the simulator writing it (one interpreter lock for every
    # answer), the kernel, and the client's thread waking and parsing.
    deliveries: dict[str, list[float]] = defaultdict(list)
    for key, times in answers.items():
        for answered, read in zip(sorted(times), sorted(reads.get(key, [])), strict=False):
            deliveries[_kind(key[1])].append(read - answered)
    return [_spread(f"client send -> simulator handler ({kind})", values)
            for kind, values in sorted(waits.items())] + [
        _spread(f"simulator answer -> client has read it ({kind})", values)
        for kind, values in sorted(deliveries.items())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the code to measure (default: this checkout)")
    parser.add_argument("--client-log", action="store_true",
                        help="also log the client's send times (adds a little CPU)")
    parser.add_argument("--processes", type=int, default=1,
                        help="split the accounts among this many runs started together")
    parser.add_argument("--gc-log", action="store_true",
                        help="also time the runs' garbage collections")
    parser.add_argument("--switch-interval", type=float,
                        help="the runs' sys.setswitchinterval, in seconds")
    args = parser.parse_args()
    root = args.root.resolve()
    installed_bytecode(root)
    for run in range(args.runs):
        print(f"[{run + 1}/{args.runs}] {args.accounts} accounts, "
              f"{args.latency * 1000:.0f} ms, concurrency {args.concurrency}, "
              f"{args.processes} process(es), {root}")
        for line in one_run(args.accounts, args.latency, args.concurrency, root,
                            client_log=args.client_log, processes=args.processes,
                            switch_interval=args.switch_interval, gc_log=args.gc_log):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
