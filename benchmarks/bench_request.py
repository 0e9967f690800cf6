"""CPU of one Kite request on the client's side: a logged-in client's data GETs
(``kite.http.send`` on its session, a kept-alive connection) against the simulator,
timed with the calling thread's CPU clock (the simulator answers on its own threads,
so its CPU is not counted). Also the whole of one account's fetch (``fetch_all``: the
web login and the four data routes, its route threads included) with the process CPU
clock, the simulator then counted too.

``--baseline DIR`` also measures the code in DIR (e.g. ``git archive 2330e0e | tar -x
-C DIR``), each tree in fresh processes, alternating ``--rounds`` times.

``--transports`` instead sends the same kept-alive GET (same headers, same answer)
three ways: through ``kite.http.send`` (libcurl, through pycurl, beneath), with bare
``http.client`` (the floor of a client that parses HTTP in Python), and with bare pycurl
(libcurl and nothing of ours): what our own layer costs per request.

Run: ``.venv/bin/python benchmarks/bench_request.py --baseline /tmp/speed-base``. Not a
test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GETS = 500
ACCOUNTS = 40


def measure() -> dict[str, float]:
    """In this process's tree: per GET and per fetched account, in ms."""
    from snapshotter.config import AccountConfig, KiteConfig, Secret
    from snapshotter.kite import http as kite_http
    from snapshotter.kite.client import KiteClient
    from snapshotter.kite.token_cache import TokenCache
    from snapshotter.sessions import utc_now
    from snapshotter.simulator import KiteSimulator, demo_accounts

    accounts = demo_accounts(ACCOUNTS + 1, seed=5)
    with tempfile.TemporaryDirectory() as tmp, KiteSimulator(accounts) as sim:
        kite = KiteConfig(base_url=sim.base_url, api_root=sim.base_url, timeout=30)

        def client(number: int) -> KiteClient:
            acc = accounts[number]
            return KiteClient(AccountConfig(user_id=acc.user_id, password=Secret(acc.password),
                                            totp_secret=Secret(acc.totp_secret)),
                              kite, TokenCache(Path(tmp) / "state"), clock=utc_now)

        one = client(0)
        headers = one.auth.headers(kite, one.token())
        url = f"{sim.base_url}/oms/portfolio/holdings"

        def get() -> None:
            kite_http.send(one.http, "GET", url, timeout=30, max_bytes=2**24,
                           label="holdings", account=one.account.user_id, headers=headers)

        for _ in range(20):
            get()
        c0 = time.thread_time()
        for _ in range(GETS):
            get()
        per_get = (time.thread_time() - c0) * 1000 / GETS
        one.close()
        p0 = time.process_time()
        for number in range(1, ACCOUNTS + 1):
            fetching = client(number)
            fetching.fetch_all()
            fetching.close()
        per_account = (time.process_time() - p0) * 1000 / ACCOUNTS
    return {"get_cpu_ms": per_get, "fetch_cpu_ms": per_account}


def transports(rounds: int) -> dict[str, list[float]]:
    """CPU of the calling thread per GET (ms), per way of sending it, ``rounds`` times."""
    import http.client

    from snapshotter.config import AccountConfig, KiteConfig, Secret
    from snapshotter.kite import http as kite_http
    from snapshotter.kite.client import KiteClient
    from snapshotter.kite.token_cache import TokenCache
    from snapshotter.sessions import utc_now
    from snapshotter.simulator import KiteSimulator, demo_accounts

    accounts = demo_accounts(1, seed=5)
    with tempfile.TemporaryDirectory() as tmp, KiteSimulator(accounts) as sim:
        kite = KiteConfig(base_url=sim.base_url, api_root=sim.base_url, timeout=30)
        acc = accounts[0]
        client = KiteClient(AccountConfig(user_id=acc.user_id, password=Secret(acc.password),
                                          totp_secret=Secret(acc.totp_secret)),
                            kite, TokenCache(Path(tmp) / "state"), clock=utc_now)
        path = "/oms/portfolio/holdings"
        url = f"{sim.base_url}{path}"
        extra = client.auth.headers(kite, client.token())
        # What send() puts on the wire: the session's headers, the call's, the cookies
        # (Kite's are all for path /).
        sent = {**client.http.headers, **extra}
        if client.http.cookies:
            sent["Cookie"] = "; ".join(f"{c.name}={c.value}" for c in client.http.cookies)

        def via_send() -> None:
            kite_http.send(client.http, "GET", url, timeout=30, max_bytes=2**24,
                           label="holdings", account=acc.user_id, headers=extra)

        bare = http.client.HTTPConnection(url.split("/")[2], timeout=30)

        def via_http_client() -> None:
            bare.request("GET", path, headers=sent)
            answer = bare.getresponse()
            if answer.status != 200 or not answer.read():
                raise SystemExit(f"http.client: HTTP {answer.status}")

        ways = {"kite.http.send": via_send, "http.client": via_http_client}
        try:
            import pycurl  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            print("pycurl not installed: `.venv/bin/pip install pycurl` to compare it")
        else:
            curl = pycurl.Curl()
            curl.setopt(pycurl.NOPROXY, "*")  # straight to the simulator, as http.client
            lines = [f"{name}: {value}" for name, value in sent.items()]

            def via_pycurl() -> None:
                body = bytearray()
                curl.setopt(pycurl.URL, url)
                curl.setopt(pycurl.HTTPHEADER, lines)
                curl.setopt(pycurl.WRITEFUNCTION, body.extend)
                curl.setopt(pycurl.TIMEOUT_MS, 30_000)
                curl.setopt(pycurl.ACCEPT_ENCODING, "gzip, deflate")
                curl.perform()
                if curl.getinfo(pycurl.RESPONSE_CODE) != 200 or not body:
                    raise SystemExit("pycurl: not an answer")

            ways["pycurl"] = via_pycurl
        found: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, way in ways.items():
                for _ in range(20):
                    way()
                c0 = time.thread_time()
                for _ in range(GETS):
                    way()
                found[name].append((time.thread_time() - c0) * 1000 / GETS)
        client.close()
        return found


def _worker(root: Path) -> dict[str, float]:
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else str(root)}
    with tempfile.TemporaryDirectory() as scratch:  # not this checkout first on sys.path
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker"],
                             check=True, capture_output=True, text=True, env=env,
                             cwd=scratch)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="also measure the code in this folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--transports", action="store_true",
                        help="one GET through send(), bare http.client and pycurl")
    args = parser.parse_args()
    if args.transports:
        for name, per_get in transports(args.rounds).items():
            print(f"{name}: one data GET {statistics.median(per_get):.3f} ms of the "
                  f"client thread's CPU (median of {args.rounds} x {GETS})")
        return
    if args.worker:
        print(json.dumps(measure()))
        return
    roots = {"this tree": ROOT, **({"baseline": args.baseline} if args.baseline else {})}
    found: dict[str, list[dict[str, float]]] = {label: [] for label in roots}
    for _ in range(args.rounds):
        for label, root in roots.items():
            found[label].append(_worker(root))
    for label, results in found.items():
        get = statistics.median(r["get_cpu_ms"] for r in results)
        fetch = statistics.median(r["fetch_cpu_ms"] for r in results)
        print(f"{label}: one data GET {get:.3f} ms of the client thread's CPU; one "
              f"account's fetch_all {fetch:.2f} ms of process CPU (simulator included); "
              f"median of {args.rounds}")


if __name__ == "__main__":
    main()
