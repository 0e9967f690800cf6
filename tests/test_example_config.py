"""config.example.yaml is valid and documents every key the loader knows."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapshotter import config
from snapshotter.config.keys import ACCOUNT_KEYS, SECTION_KEYS, TOP_KEYS

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITE_PASSWORD", "pw")
    monkeypatch.setenv("KITE_TOTP_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    loaded = config.load_config(str(EXAMPLE))
    assert [a.user_id for a in loaded.accounts] == ["AB1234"]
    assert loaded.kite.base_url == "https://kite.zerodha.com"


def test_example_config_mentions_every_key() -> None:
    text = EXAMPLE.read_text()
    keys = set(TOP_KEYS) | set(ACCOUNT_KEYS)
    for section in SECTION_KEYS.values():
        keys |= section
    missing = sorted(k for k in keys if f"{k}:" not in text)
    assert missing == []
