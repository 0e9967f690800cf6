"""Internal to the simulator: the random tokens and session ids it issues."""

from __future__ import annotations

import base64
import secrets
import string

ALNUM = string.ascii_letters + string.digits


def random_alnum(n: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


def new_enctoken() -> str:
    # Real enctokens are base64 text (with '+' and '/'), about 88 characters long.
    return base64.b64encode(secrets.token_bytes(63)).decode("ascii")
