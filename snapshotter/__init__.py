"""Kite Snapshotter: a dated, queryable history of Zerodha (Kite) accounts."""

__version__ = "0.1.0"
