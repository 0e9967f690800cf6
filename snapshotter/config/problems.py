"""One line per problem in a config file, and the ${VAR} references it may hold."""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Problems:
    """Collects one line per problem, keyed by the positional key path (``accounts[0].password``).

    A key gets at most one line: once a key is reported (e.g. its ${VAR} is unset), the
    knock-on problems about the same key (missing, malformed, ...) are not reported again.
    Account keys are shown with the account's user id: ``accounts[0] (AB1234).password``.
    """

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self._reported: set[str] = set()
        self._user_ids: dict[int, str] = {}

    def name_account(self, index: int, user_id: str) -> None:
        if user_id:
            self._user_ids[index] = user_id

    def add(self, key: str, message: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        self.lines.append(f"{self.source}: {self._shown(key)}: {message}")

    def _shown(self, key: str) -> str:
        m = re.match(r"accounts\[(\d+)\]", key)
        if m and int(m.group(1)) in self._user_ids:
            return f"{m.group(0)} ({self._user_ids[int(m.group(1))]}){key[m.end():]}"
        return key

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.source}: {self._shown(key)}: {message}")

    def unknown(self, where: str, key: str, known: set[str], present: Any) -> None:
        hint = difflib.get_close_matches(key, sorted(known), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        self.add(f"{where}{key}", f"unknown key{suggestion}")
        if hint and hint[0] not in present:
            # The misspelt key stands where hint[0] was meant: do not also call it missing.
            self._reported.add(f"{where}{hint[0]}")
            self._reported.add(f"{where}{hint[0].removesuffix('_file')}")


def silent_interpolate(value: Any) -> str:
    return VAR.sub(lambda m: os.environ.get(m.group(1), ""), str(value))


def interpolate(value: Any, key: str, problems: Problems) -> Any:
    """Replace ${VAR} from the environment in every string, recursively."""
    if isinstance(value, str):
        unset: list[str] = []

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                unset.append(name)
                return ""
            return os.environ[name]

        result = VAR.sub(sub, value)
        if unset:
            names = ", ".join(dict.fromkeys(unset))
            plural = "s" if len(set(unset)) > 1 else ""
            verb = "are" if plural else "is"
            problems.add(key, f"environment variable{plural} {names} {verb} not set")
        elif "${" in VAR.sub("", value):
            # Never echo the value: it may be a secret written in the file.
            problems.add(key, "malformed ${...} reference: write ${NAME} (letters, digits, _)")
        return result
    if isinstance(value, dict):
        return {k: interpolate(v, f"{key}.{k}" if key else str(k), problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    return value
