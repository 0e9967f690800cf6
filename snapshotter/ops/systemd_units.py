"""`snapshotter systemd --mode timer|daemon`: ready-to-install, hardened unit files."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import time

from snapshotter.config import AccountConfig, Config, load_config
from snapshotter.config.model import default_state_dir
from snapshotter.errors import LoginRejected

CREDENTIALS_SOURCE = "/etc/snapshotter/credentials"
# Paths the hardening hides from the service (ProtectHome=yes, PrivateTmp=yes).
_HIDDEN = ("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")
_UNREADABLE_FILE = re.compile(r"_file: cannot read ")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class UnitOptions:
    mode: str  # "timer" or "daemon"
    executable: str
    config_path: str = "/etc/snapshotter/config.yaml"
    user: str | None = None  # None: DynamicUser=yes
    run_times: str = "16:30,20:30"
    randomized_delay: str = "3min"


def credential_names(account: AccountConfig) -> list[str]:
    """The systemd credentials an account's config reads: its relative *_file names
    (an absolute path is read directly, not through $CREDENTIALS_DIRECTORY)."""
    return [name for name in account.secret_files if not name.startswith(("/", "~", "$"))]


def run_times(times: str) -> list[str]:
    """``"16:30,20:30"`` -> ``["16:30", "20:30"]``; ValueError unless every item is HH:MM.

    Each time gets its own OnCalendar= line: in one calendar spec ``16:30,20:30`` would
    read as hour 16, minutes 30 and 20, second 30 (16:20:30 and 16:30:30).
    """
    items = [t.strip() for t in times.split(",") if t.strip()]
    if not items:
        raise ValueError("no run time given (e.g. --times 16:30,20:30)")
    out = []
    for item in items:
        if not re.fullmatch(r"\d{1,2}:\d{2}", item):
            raise ValueError(f"run time {item!r} is not HH:MM (e.g. --times 16:30,20:30)")
        try:
            parsed = time.fromisoformat(item.zfill(5))
        except ValueError:
            raise ValueError(f"run time {item!r} is not a clock time (00:00 to 23:59)") \
                from None
        out.append(f"{parsed:%H:%M}")
    return out


def config_accounts(path: str) -> list[AccountConfig]:
    """The accounts of the config at ``path``, without reading their secret files: those
    exist only inside the service ($CREDENTIALS_DIRECTORY), not where units are made."""
    return list(unit_config(path).accounts)


def unit_config(path: str) -> Config:
    """The config at ``path``, its secret files unread (see config_accounts)."""
    return load_config(path, read_secret_files=False)


def install_warnings(options: UnitOptions, config: Config | None = None) -> list[str]:
    """Paths in the units, or in the config, that the hardened service cannot see, write
    or (as a dynamic user) read."""
    warnings = []
    for what, path in (("executable", options.executable.split()[0]),
                       ("config", options.config_path)):
        if path.startswith(_HIDDEN):
            warnings.append(
                f"the {what} {path} is hidden from the service (ProtectHome=yes, "
                "PrivateTmp=yes): install it under /usr, /opt or /etc")
        if what == "config":
            warnings += _dynamic_user_cannot_read(options, f"config {path}", path)
    if config is None:
        return warnings
    database = _sqlite_file(config.database_url)
    written = [("database", database)] if database else []
    if config.state_dir != default_state_dir():  # the default is the unit's StateDirectory
        written.append(("state_dir", str(config.state_dir)))
    for what, path in written:
        if path.startswith(_HIDDEN):
            warnings.append(f"the {what} {path} is hidden from the service (ProtectHome=yes, "
                            f"PrivateTmp=yes): put it under {_STATE_DIRECTORY}")
        elif not path.startswith(_WRITABLE):
            warnings.append(f"the {what} {path} is read-only to the service "
                            f"(ProtectSystem=strict): put it under {_STATE_DIRECTORY}, the "
                            "unit's StateDirectory")
    for account in config.accounts:
        for name in account.secret_files:
            path = os.path.expanduser(name)
            if not path.startswith("/"):
                continue  # a credential name: systemd reads it (LoadCredential=)
            what = f"credential file {path} (account {account.user_id})"
            if path.startswith(_HIDDEN):
                warnings.append(f"the {what} is hidden from the service (ProtectHome=yes, "
                                f"PrivateTmp=yes): {_AS_CREDENTIAL}")
            warnings += _dynamic_user_cannot_read(options, what, path)
    return warnings


_STATE_DIRECTORY = "/var/lib/snapshotter"
_WRITABLE = (f"{_STATE_DIRECTORY}/", "/var/lib/private/snapshotter/")
_AS_CREDENTIAL = (f"give the file's bare name in the config and put it in "
                  f"{CREDENTIALS_SOURCE}/ (the unit loads it with LoadCredential=)")


def _dynamic_user_cannot_read(options: UnitOptions, what: str, path: str) -> list[str]:
    """DynamicUser=yes runs as a new user: only a file others may read is readable."""
    if options.user:
        return []
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return []  # not made yet on this machine: nothing to tell
    if mode & stat.S_IROTH:
        return []
    fix = _AS_CREDENTIAL if what.startswith("credential") else \
        "give --user with the file's owner, or make it readable by that user"
    return [f"the {what} is readable only by its owner or group (mode "
            f"{stat.S_IMODE(mode):04o}): the service's dynamic user (DynamicUser=yes) cannot "
            f"read it: {fix}"]


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (None for other databases and in-memory ones)."""
    if not url.startswith("sqlite"):
        return None
    path = url.partition(":///")[2].split("?", 1)[0].removeprefix("file:")
    return path if path and path != ":memory:" else None


def _hardening(options: UnitOptions) -> list[str]:
    user = [f"User={options.user}"] if options.user else ["DynamicUser=yes"]
    return [
        *user,
        "StateDirectory=snapshotter",
        "StateDirectoryMode=0700",
        "WorkingDirectory=%S/snapshotter",
        "UMask=0077",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
    ]


def render_units(options: UnitOptions, accounts: list[AccountConfig]) -> dict[str, str]:
    """File name -> unit text."""
    if options.mode not in ("timer", "daemon"):
        raise ValueError(f"mode must be timer or daemon, got {options.mode!r}")
    times = run_times(options.run_times)
    credentials = [f"LoadCredential={name}:{CREDENTIALS_SOURCE}/{name}"
                   for acc in accounts for name in credential_names(acc)]
    env = [f"Environment=SNAPSHOTTER_CONFIG={options.config_path}"]
    no_lockout = f"RestartPreventExitStatus={LoginRejected.exit_code}"
    command = "run" if options.mode == "timer" else "daemon"
    exec_start = f"ExecStart={options.executable} --config {options.config_path} {command}"
    unit = [
        "[Unit]",
        "Description=Kite Snapshotter: dated snapshots of Zerodha accounts"
        + (" (daemon)" if options.mode == "daemon" else ""),
        "Documentation=https://github.com/kite-snapshotter/kite-snapshotter#scheduling",
        "Wants=network-online.target",
        "After=network-online.target postgresql.service",
        "",
        "[Service]",
    ]
    if options.mode == "timer":
        service = [
            "Type=oneshot",
            exec_start,
            "TimeoutStartSec=1h",
            no_lockout,
        ]
    else:
        service = [
            "Type=notify",
            "NotifyAccess=main",
            exec_start,
            "Restart=on-failure",
            "RestartSec=5min",
            no_lockout,
            "WatchdogSec=5min",
            "TimeoutStopSec=5min",
        ]
    service_text = "\n".join(unit + service + env + credentials + _hardening(options))
    if options.mode == "daemon":
        service_text += "\n\n[Install]\nWantedBy=multi-user.target"
    units = {"snapshotter.service": service_text + "\n"}
    if options.mode == "timer":
        units["snapshotter.timer"] = "\n".join([
            "[Unit]",
            "Description=Run Kite Snapshotter after the NSE close (run decides if there is work)",
            "",
            "[Timer]",
            *(f"OnCalendar=*-*-* {t} Asia/Kolkata" for t in times),
            "Persistent=true",
            f"RandomizedDelaySec={options.randomized_delay}",
            "Unit=snapshotter.service",
            "",
            "[Install]",
            "WantedBy=timers.target",
        ]) + "\n"
    return units
