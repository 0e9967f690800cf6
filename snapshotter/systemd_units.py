"""`snapshotter systemd --mode timer|daemon`: ready-to-install, hardened unit files."""

from __future__ import annotations

from dataclasses import dataclass

from snapshotter.config import AccountConfig
from snapshotter.errors import LoginRejected

CREDENTIALS_SOURCE = "/etc/snapshotter/credentials"


@dataclass(frozen=True)
class UnitOptions:
    mode: str  # "timer" or "daemon"
    executable: str
    config_path: str = "/etc/snapshotter/config.yaml"
    user: str | None = None  # None: DynamicUser=yes
    run_times: str = "16:30,20:30"
    randomized_delay: str = "3min"


def credential_names(account: AccountConfig) -> list[str]:
    """The credential names a config refers to with password_file / totp_secret_file."""
    uid = account.user_id.lower()
    if account.auth == "manual":
        return []
    names = [f"{uid}-password", f"{uid}-totp"]
    if account.auth == "connect":
        names.append(f"{uid}-api-secret")
    return names


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
            f"OnCalendar=*-*-* {options.run_times} Asia/Kolkata",
            "Persistent=true",
            f"RandomizedDelaySec={options.randomized_delay}",
            "Unit=snapshotter.service",
            "",
            "[Install]",
            "WantedBy=timers.target",
        ]) + "\n"
    return units
