"""The Kite simulator: a real HTTP server on 127.0.0.1 speaking Kite's web and Kite
Connect protocols, with seeded accounts and injectable faults. Imports nothing of the
product (only the standard library and pyotp): tests and `snapshotter demo` drive the
production client against it over real sockets."""

from snapshotter.simulator._faults import FAULT_KINDS
from snapshotter.simulator.accounts import SimAccount, SimApp, demo_accounts, demo_apps
from snapshotter.simulator.portfolios import make_portfolio
from snapshotter.simulator.protocol import KiteSimulator, serve_forever_cli

__all__ = [
    "FAULT_KINDS",
    "KiteSimulator",
    "SimAccount",
    "SimApp",
    "demo_accounts",
    "demo_apps",
    "make_portfolio",
    "serve_forever_cli",
]
