"""`snapshotter systemd --mode timer|daemon|serve`: ready-to-install, hardened unit files."""

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
    mode: str  # "timer", "daemon" or "serve" (the dashboard, beside one of the others)
    executable: str
    config_path: str = "/etc/snapshotter/config.yaml"
    user: str | None = None  # None: DynamicUser=yes
    run_times: str = "16:30,20:30"
    randomized_delay: str = "3min"


MODES = ("timer", "daemon", "serve")
#: The dashboard's unit: its own name, so that it runs beside the timer's or the daemon's.
SERVE_UNIT = "snapshotter-serve.service"
#: The user name systemd gives snapshotter.service's dynamic user: the serve unit asks for
#: it by name, so both get one UID (two UIDs would chown StateDirectory= back and forth).
DYNAMIC_USER = "snapshotter"


def _is_credential_name(name: str) -> bool:
    return not name.startswith(("/", "~", "$"))


def credential_names(account: AccountConfig) -> list[str]:
    """The systemd credentials an account's config reads: its relative *_file names
    (an absolute path is read directly, not through $CREDENTIALS_DIRECTORY)."""
    return [name for name in account.secret_files if _is_credential_name(name)]


def config_credential_names(accounts: list[AccountConfig],
                            config: Config | None = None) -> list[str]:
    """Every credential the config reads, the accounts' and ``serve.password_file``:
    loading the config reads them all, whichever command runs."""
    names = [name for acc in accounts for name in credential_names(acc)]
    serve_file = config.serve.password_file if config else None
    if serve_file and _is_credential_name(serve_file) and serve_file not in names:
        names.append(serve_file)
    return names


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
    if options.mode == "serve" and not config.serve.password \
            and not config.serve.password_file:
        from snapshotter.config.model import is_loopback

        if not is_loopback(config.serve.host):
            warnings.append(f"serve.host is {config.serve.host} and the config has no "
                            "serve.password_file (or serve.password): the service will "
                            "refuse to start")
    database = _sqlite_file(config.database_url)
    written = [("database", database)] if database else []
    if config.state_dir != default_state_dir():  # the default is the unit's StateDirectory
        written.append(("state_dir", str(config.state_dir)))
    for what, path in written:
        if path.startswith(_HIDDEN):
            warnings.append(f"the {what} {path} is hidden from the service (ProtectHome=yes, "
                            f"PrivateTmp=yes): put it under {_STATE_DIRECTORY}")
        elif options.mode == "serve" and what == "database":
            continue  # the unit makes its directory writable (ReadWritePaths=)
        elif not path.startswith(_WRITABLE):
            warnings.append(f"the {what} {path} is read-only to the service "
                            f"(ProtectSystem=strict): put it under {_STATE_DIRECTORY}, the "
                            "unit's StateDirectory")
    files = [(name, f"account {account.user_id}") for account in config.accounts
             for name in account.secret_files]
    if config.serve.password_file:
        files.append((config.serve.password_file, "serve.password_file"))
    for name, whose in files:
        path = os.path.expanduser(name)
        if not path.startswith("/"):
            continue  # a credential name: systemd reads it (LoadCredential=)
        what = f"credential file {path} ({whose})"
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
    if options.mode == "serve" and not options.user:
        user.append(f"User={DYNAMIC_USER}")
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


def render_units(options: UnitOptions, accounts: list[AccountConfig],
                 config: Config | None = None) -> dict[str, str]:
    """File name -> unit text (``config``: the config the accounts come from, for
    serve.password_file and the database)."""
    if options.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    credentials = [f"LoadCredential={name}:{CREDENTIALS_SOURCE}/{name}"
                   for name in config_credential_names(accounts, config)]
    env = [f"Environment=SNAPSHOTTER_CONFIG={options.config_path}"]
    if options.mode == "serve":
        return {SERVE_UNIT: _serve_unit(options, credentials + env, config)}
    times = run_times(options.run_times)
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


def _serve_unit(options: UnitOptions, settings: list[str], config: Config | None) -> str:
    """`snapshotter serve` as a long-running service, with the daemon's sandbox."""
    database = _sqlite_file(config.database_url) if config else None
    directory = os.path.dirname(database) if database else None  # the loader made it absolute
    writable = []
    if directory and not f"{directory}/".startswith(_WRITABLE):
        writable = [
            "# serve only reads the database, but a SQLite reader in WAL mode creates and",
            "# writes the -shm file beside it: its directory must be writable.",
            f"ReadWritePaths={directory}",
        ]
    lines = [
        "[Unit]",
        "Description=Kite Snapshotter: the dashboard (snapshotter serve)",
        "Documentation=https://github.com/kite-snapshotter/kite-snapshotter/blob/main/docs/"
        "dashboard.md#the-systemd-unit",
        "Wants=network-online.target",
        "After=network-online.target postgresql.service",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={options.executable} --config {options.config_path} serve",
        "Restart=on-failure",
        "RestartSec=10s",
        "# Exit 2 is a problem in the config (e.g. another address and no password):",
        "# restarting would not mend it.",
        "RestartPreventExitStatus=2",
        *settings,
        *_hardening(options),
        *writable,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"
