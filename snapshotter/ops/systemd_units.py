"""`snapshotter systemd --mode timer|daemon`: ready-to-install, hardened unit files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time

from snapshotter.config import AccountConfig, load_config
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
    return list(load_config(path, read_secret_files=False).accounts)


def install_warnings(options: UnitOptions) -> list[str]:
    """Paths in the units that the hardened service cannot see."""
    warnings = []
    for what, path in (("executable", options.executable.split()[0]),
                       ("config", options.config_path)):
        if path.startswith(_HIDDEN):
            warnings.append(
                f"the {what} {path} is hidden from the service (ProtectHome=yes, "
                "PrivateTmp=yes): install it under /usr, /opt or /etc")
    return warnings


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
