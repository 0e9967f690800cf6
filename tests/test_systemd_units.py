"""`snapshotter systemd`: the generated units pass `systemd-analyze verify` without a warning.

systemd-analyze exits 0 on most invalid settings and only prints a warning, so every
check here requires empty output as well as exit status 0. The units are verified in a
throwaway --root holding a copy of the distribution's units and of the ExecStart
command (verify checks that it exists and is executable).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from snapshotter.config import load_config
from snapshotter.errors import ConfigError, LoginRejected
from snapshotter.ops.systemd_units import CREDENTIALS_SOURCE, credential_names
from snapshotter.simulator import KiteSimulator, SimAccount
from tests.conftest import IN_CI, local_get, run_cli, serving, write_config

IST = ZoneInfo("Asia/Kolkata")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
TOTP = "JBSWY3DPEHPK3PXPJBSWY3DP"
NO_CONFIG_ENV = {"SNAPSHOTTER_CONFIG": "", "CREDENTIALS_DIRECTORY": ""}

Unit = dict[str, list[tuple[str, str]]]


@pytest.fixture(scope="session")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None or not SYSTEM_UNITS.is_dir():
        problem = "systemd-analyze" if found is None else str(SYSTEM_UNITS)
        if IN_CI:
            pytest.fail(f"{problem} is required in CI to verify the systemd units")
        pytest.skip(f"{problem} not available")
    return found


@pytest.fixture
def exe(tmp_path: Path) -> str:
    """The snapshotter command the units start (the venv's, else a stand-in script)."""
    beside_python = Path(sys.executable).with_name("snapshotter")
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    script = tmp_path / "bin" / "snapshotter"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nfrom snapshotter.cli import main\nmain()\n")
    script.chmod(0o755)
    return str(script)


def generate(out: Path, mode: str, exe: str, *extra: str, config: Path | None = None,
             ) -> dict[str, str]:
    """Unit file name -> text, written by the real CLI into ``out``."""
    before = ["--config", str(config)] if config else []
    result = run_cli(*before, "systemd", "--mode", mode, "--output-dir", str(out),
                     "--executable", exe, *extra, env=NO_CONFIG_ENV)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    units = {p.name: p.read_text(encoding="utf-8") for p in sorted(out.iterdir())}
    for name in units:
        assert f"wrote {out / name}" in result.stdout
    return units


def verify(analyze: str, where: Path, units: dict[str, str], exe: str,
           ) -> subprocess.CompletedProcess[str]:
    root = where / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    unit_dir = root / "etc" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    for name, text in units.items():
        (unit_dir / name).write_text(text, encoding="utf-8")
    inside = root / exe.lstrip("/")
    inside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(exe, inside)
    return subprocess.run(
        [analyze, "verify", f"--root={root}", *(str(unit_dir / n) for n in units)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0 and output == "", output


def parse_unit(text: str) -> Unit:
    """Section -> (key, value) in order; systemd allows a key more than once."""
    unit: Unit = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            assert section not in unit, f"section {section} twice"
            unit[section] = []
            continue
        assert section is not None, line
        key, sep, value = line.partition("=")
        assert sep, line
        unit[section].append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"{section}.{key}: {found}"
    return found[0]


def timespan_seconds(analyze: str, span: str) -> float:
    result = subprocess.run([analyze, "timespan", span], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    match = re.search(r"μs: (\d+)", result.stdout)
    assert match, result.stdout
    return int(match.group(1)) / 1_000_000


def calendar_elapses(analyze: str, specs: list[str], base: datetime,
                     iterations: int) -> list[datetime]:
    """When systemd fires each OnCalendar= spec after ``base`` (all of them, sorted)."""
    result = subprocess.run(
        [analyze, "calendar", f"--iterations={iterations}",
         f"--base-time=@{int(base.timestamp())}", *specs],
        capture_output=True, text=True, timeout=30, env={**os.environ, "TZ": "UTC"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", result.stdout)
    assert len(found) == iterations * len(specs), result.stdout
    return sorted(datetime.fromisoformat(f).replace(tzinfo=UTC) for f in found)


def _check_hardening(service: Unit, exe: str, command: str, config_path: str) -> None:
    s = "Service"
    assert values(service, s, "DynamicUser") == ["yes"] or values(service, s, "User")
    assert one(service, s, "StateDirectory") == "snapshotter"
    assert one(service, s, "ProtectSystem") == "strict"
    assert one(service, s, "NoNewPrivileges") == "yes"
    assert one(service, s, "PrivateTmp") == "yes"
    assert one(service, s, "ProtectHome") == "yes"
    assert one(service, s, "ExecStart") == f"{exe} --config {config_path} {command}"
    # A rejected login exits 78: systemd must not restart into an account lockout.
    assert LoginRejected.exit_code == 78
    assert "78" in one(service, s, "RestartPreventExitStatus").split()


def test_timer_units(analyze: str, exe: str, tmp_path: Path) -> None:
    units = generate(tmp_path / "out", "timer", exe)
    assert set(units) == {"snapshotter.service", "snapshotter.timer"}
    service = parse_unit(units["snapshotter.service"])
    timer = parse_unit(units["snapshotter.timer"])
    _check_hardening(service, exe, "run", "/etc/snapshotter/config.yaml")
    assert one(service, "Service", "Type") == "oneshot"
    assert values(service, "Service", "DynamicUser") == ["yes"]
    assert values(service, "Service", "User") == []
    assert values(service, "Service", "LoadCredential") == []  # no config: no accounts
    assert "Install" not in service  # started by the timer

    assert sorted(values(timer, "Timer", "OnCalendar")) == [
        "*-*-* 16:30 Asia/Kolkata", "*-*-* 20:30 Asia/Kolkata"]
    assert one(timer, "Timer", "Persistent") == "true"
    delay = timespan_seconds(analyze, one(timer, "Timer", "RandomizedDelaySec"))
    assert 0 < delay <= 15 * 60
    assert one(timer, "Timer", "Unit") == "snapshotter.service"
    assert one(timer, "Install", "WantedBy") == "timers.target"

    assert_clean(verify(analyze, tmp_path, units, exe))


def test_timer_fires_at_1630_and_2030_ist_every_day(analyze: str, exe: str,
                                                    tmp_path: Path) -> None:
    # `verify` accepts "*-*-* 16:30,20:30", which systemd reads as 16:20:30 and 16:30:30:
    # ask systemd itself when the timer elapses.
    timer = parse_unit(generate(tmp_path / "out", "timer", exe)["snapshotter.timer"])
    specs = values(timer, "Timer", "OnCalendar")
    base = datetime(2026, 11, 27, 12, 0, tzinfo=IST)  # a Friday, before the close
    fired = [t.astimezone(IST) for t in calendar_elapses(analyze, specs, base, 4)]
    expected = [datetime(2026, 11, d, h, 30, tzinfo=IST)
                for d in (27, 28, 29, 30) for h in (16, 20)]
    assert fired == expected


def test_custom_run_times(analyze: str, exe: str, tmp_path: Path) -> None:
    units = generate(tmp_path / "out", "timer", exe, "--times", "9:45, 17:00,21:15")
    timer = parse_unit(units["snapshotter.timer"])
    specs = values(timer, "Timer", "OnCalendar")
    assert specs == ["*-*-* 09:45 Asia/Kolkata", "*-*-* 17:00 Asia/Kolkata",
                     "*-*-* 21:15 Asia/Kolkata"]
    base = datetime(2026, 11, 27, 0, 0, tzinfo=IST)
    fired = [t.astimezone(IST) for t in calendar_elapses(analyze, specs, base, 1)]
    assert [(t.hour, t.minute) for t in fired] == [(9, 45), (17, 0), (21, 15)]
    assert_clean(verify(analyze, tmp_path, units, exe))


@pytest.mark.parametrize("times", ["4pm", "16:30,25:00", "16:30;20:30", "", "16:3"])
def test_invalid_run_times_are_refused(exe: str, tmp_path: Path, times: str) -> None:
    result = run_cli("systemd", "--times", times, "--executable", exe,
                     "--output-dir", str(tmp_path / "out"), env=NO_CONFIG_ENV)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_daemon_unit(analyze: str, exe: str, tmp_path: Path) -> None:
    units = generate(tmp_path / "out", "daemon", exe)
    assert set(units) == {"snapshotter.service"}
    service = parse_unit(units["snapshotter.service"])
    _check_hardening(service, exe, "daemon", "/etc/snapshotter/config.yaml")
    assert one(service, "Service", "Type") == "notify"  # the daemon sends READY=1
    assert one(service, "Service", "NotifyAccess") == "main"
    assert timespan_seconds(analyze, one(service, "Service", "WatchdogSec")) >= 120
    assert one(service, "Service", "Restart") == "on-failure"
    assert one(service, "Install", "WantedBy") == "multi-user.target"
    assert_clean(verify(analyze, tmp_path, units, exe))


@pytest.mark.parametrize("mode", ["timer", "daemon"])
def test_named_user_instead_of_dynamic_user(analyze: str, exe: str, tmp_path: Path,
                                            mode: str) -> None:
    units = generate(tmp_path / "out", mode, exe, "--user", "snapshotter")
    service = parse_unit(units["snapshotter.service"])
    assert values(service, "Service", "User") == ["snapshotter"]
    assert values(service, "Service", "DynamicUser") == []
    _check_hardening(service, exe, "run" if mode == "timer" else "daemon",
                     "/etc/snapshotter/config.yaml")
    assert_clean(verify(analyze, tmp_path, units, exe))


def _two_accounts(path: Path, **account_keys: str) -> Path:
    return write_config(path, {
        "database": {"url": "sqlite:////var/lib/snapshotter/snapshots.db"},
        "accounts": [{"user_id": "ab1234", "password_file": "ab1234-password",
                      "totp_secret_file": "ab1234-totp"},
                     {"user_id": "CD5678", "password_file": "cd5678-password",
                      "totp_secret_file": "cd5678-totp", **account_keys},
                     # Inline secrets need no credential; an absolute path is read as is.
                     {"user_id": "EF9012", "password": "pw", "totp_secret": TOTP},
                     {"user_id": "GH3456", "password_file": "/etc/snapshotter/gh-pw",
                      "totp_secret": TOTP}],
    })


@pytest.mark.parametrize("mode", ["timer", "daemon"])
def test_config_accounts_get_credentials(analyze: str, exe: str, tmp_path: Path,
                                         mode: str) -> None:
    cfg = _two_accounts(tmp_path / "config.yaml")
    units = generate(tmp_path / "out", mode, exe, config=cfg)
    service = parse_unit(units["snapshotter.service"])
    names = ["ab1234-password", "ab1234-totp", "cd5678-password", "cd5678-totp"]
    assert values(service, "Service", "LoadCredential") == [
        f"{n}:{CREDENTIALS_SOURCE}/{n}" for n in names]
    _check_hardening(service, exe, "run" if mode == "timer" else "daemon",
                     str(cfg.resolve()))
    assert_clean(verify(analyze, tmp_path, units, exe))


def test_manual_and_connect_accounts_credentials(exe: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", {
        "accounts": [
            {"user_id": "AB1234", "auth": "manual"},
            {"user_id": "CD5678", "auth": "connect", "password_file": "cd5678-password",
             "totp_secret_file": "cd5678-totp", "api_key": "key",
             "api_secret_file": "cd5678-api-secret"},
        ]})
    service = parse_unit(generate(tmp_path / "out", "timer", exe, config=cfg)
                         ["snapshotter.service"])
    assert [v.split(":")[0] for v in values(service, "Service", "LoadCredential")] == [
        "cd5678-password", "cd5678-totp", "cd5678-api-secret"]


@pytest.mark.parametrize(("unit", "section", "line", "expected"), [
    ("snapshotter.service", "Service", "Bogus=1", "Unknown key 'Bogus'"),
    ("snapshotter.service", "Service", "ProtectSystem=bogus", "protect system"),
    ("snapshotter.service", "Service", "RestartPreventExitStatus=NOTASTATUS", "NOTASTATUS"),
    ("snapshotter.timer", "Timer", "OnCalendar=*-*-* 25:99 Asia/Kolkata", "calendar"),
])
def test_verify_catches_a_bad_setting(analyze: str, exe: str, tmp_path: Path, unit: str,
                                      section: str, line: str, expected: str) -> None:
    """Negative control: the check above does fail on a setting systemd ignores."""
    units = generate(tmp_path / "out", "timer", exe)
    units[unit] = units[unit].replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
    assert line in units[unit]
    result = verify(analyze, tmp_path, units, exe)
    assert expected in result.stdout + result.stderr
    with pytest.raises(AssertionError):
        assert_clean(result)


def test_verify_catches_a_missing_executable(analyze: str, exe: str, tmp_path: Path) -> None:
    units = generate(tmp_path / "out", "daemon", exe)
    units["snapshotter.service"] = units["snapshotter.service"].replace(
        f"ExecStart={exe} ", "ExecStart=/nonexistent/snapshotter ")
    result = verify(analyze, tmp_path, units, exe)
    assert "/nonexistent/snapshotter" in result.stdout + result.stderr


def test_printed_units_match_the_written_files(exe: str, tmp_path: Path) -> None:
    written = generate(tmp_path / "out", "timer", exe)
    printed = run_cli("systemd", "--mode", "timer", "--executable", exe, env=NO_CONFIG_ENV)
    assert printed.returncode == 0, printed.stderr
    expected = "".join(f"# /etc/systemd/system/{name}\n{text}\n"
                       for name, text in written.items())
    assert printed.stdout == expected


def test_warns_about_paths_the_service_cannot_see(exe: str, tmp_path: Path) -> None:
    result = run_cli("systemd", "--executable", "/home/alice/.venv/bin/snapshotter",
                     env=NO_CONFIG_ENV)
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "/home/alice/.venv/bin/snapshotter" in result.stderr
    clean = run_cli("systemd", "--executable", "/usr/local/bin/snapshotter", env=NO_CONFIG_ENV)
    assert clean.returncode == 0 and clean.stderr == "", clean.stderr


# -- secrets delivered with LoadCredential= ------------------------------------------------


def _credential_config(path: Path, database_url: str = "sqlite:///snapshots.db",
                       user_ids: tuple[str, ...] = ("AB1234",), **extra: object) -> Path:
    return write_config(path, {
        "database": {"url": database_url},
        "accounts": [{"user_id": u, "password_file": f"{u.lower()}-password",
                      "totp_secret_file": f"{u.lower()}-totp"} for u in user_ids],
        **extra,
    })


def test_credential_files_load_from_credentials_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _credential_config(tmp_path / "config.yaml")
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "ab1234-password").write_text("s3cret pass\n", encoding="utf-8")
    (creds / "ab1234-totp").write_text(TOTP.lower() + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the bare names must not be found relative to the cwd

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError) as missing:
        load_config(str(cfg))
    assert any("password_file" in p for p in missing.value.problems)

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(str(cfg))
    [account] = config.accounts
    assert account.password == "s3cret pass"
    assert account.totp_secret == TOTP
    # The names the unit loads are the names the config reads.
    assert credential_names(account) == ["ab1234-password", "ab1234-totp"]


def test_units_from_a_credentials_config_without_the_credentials(
        exe: str, tmp_path: Path) -> None:
    """The units are generated before the secrets exist on the machine."""
    cfg = _credential_config(tmp_path / "config.yaml", user_ids=("AB1234", "CD5678"))
    service = parse_unit(generate(tmp_path / "out", "timer", exe, config=cfg)
                         ["snapshotter.service"])
    assert [v.split(":")[0] for v in values(service, "Service", "LoadCredential")] == [
        "ab1234-password", "ab1234-totp", "cd5678-password", "cd5678-totp"]


def test_other_config_problems_still_stop_unit_generation(exe: str, tmp_path: Path) -> None:
    cfg = _credential_config(tmp_path / "config.yaml", timezone="Mars/Olympus")
    result = run_cli("--config", str(cfg), "systemd", "--executable", exe,
                     env=NO_CONFIG_ENV)
    assert result.returncode == 2
    assert "timezone" in result.stderr and "Traceback" not in result.stderr


def test_run_reads_secrets_the_unit_loads(exe: str, sim: KiteSimulator,
                                          sim_accounts: list[SimAccount],
                                          tmp_path: Path) -> None:
    """End to end: the LoadCredential= names, as files in $CREDENTIALS_DIRECTORY, log in."""
    accounts = sim_accounts[:2]
    cfg = _credential_config(
        tmp_path / "config.yaml", f"sqlite:///{tmp_path / 'snapshots.db'}",
        tuple(a.user_id for a in accounts), state_dir=str(tmp_path / "state"),
        kite={"base_url": sim.base_url, "api_root": sim.base_url, "backoff": 0.01,
              "timeout": 3})
    service = parse_unit(generate(tmp_path / "out", "timer", exe, config=cfg)
                         ["snapshotter.service"])
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    secrets = {f"{a.user_id.lower()}-{kind}": value for a in accounts
               for kind, value in (("password", a.password), ("totp", a.totp_secret))}
    for entry in values(service, "Service", "LoadCredential"):
        name, _, source = entry.partition(":")
        assert source == f"{CREDENTIALS_SOURCE}/{name}"
        (creds / name).write_text(secrets.pop(name), encoding="utf-8")
    assert secrets == {}  # every secret the config needs is loaded by the unit

    result = run_cli("--config", str(cfg), "run", env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert result.returncode == 0, result.stderr
    assert all(sim.login_count[a.user_id] == 1 for a in accounts)


# -- the dashboard's unit (--mode serve) ---------------------------------------------------


def _serve_config(path: Path, database_url: str, **serve: object) -> Path:
    return write_config(path, {
        "database": {"url": database_url},
        "accounts": [{"user_id": "AB1234", "password_file": "ab1234-password",
                      "totp_secret_file": "ab1234-totp"}],
        "serve": serve,
    })


def test_serve_unit(analyze: str, exe: str, tmp_path: Path) -> None:
    cfg = _serve_config(tmp_path / "config.yaml", "sqlite:////srv/snapshots/snapshots.db",
                        host="0.0.0.0", password_file="dashboard-password")
    result = run_cli("--config", str(cfg), "systemd", "--mode", "serve", "--executable", exe,
                     "--output-dir", str(tmp_path / "out"), env=NO_CONFIG_ENV)
    assert result.returncode == 0, result.stderr
    assert "refuse to start" not in result.stderr
    units = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir()}
    # Its own name: it runs beside snapshotter.service (the timer's or the daemon's).
    assert set(units) == {"snapshotter-serve.service"}
    text = units["snapshotter-serve.service"]
    service = parse_unit(text)
    s = "Service"
    assert one(service, s, "ExecStart") == f"{exe} --config {cfg.resolve()} serve"
    assert one(service, s, "Restart") == "on-failure"
    assert "2" in one(service, s, "RestartPreventExitStatus").split()  # a config problem
    assert one(service, "Install", "WantedBy") == "multi-user.target"
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges",
                "StateDirectory", "RestrictAddressFamilies", "SystemCallArchitectures"):
        daemon = parse_unit(generate(tmp_path / f"daemon-{key}", "daemon", exe)
                            ["snapshotter.service"])
        assert one(service, s, key) == one(daemon, s, key), key
    # The daemon's dynamic user by name: one UID for both, one owner of StateDirectory=.
    assert values(service, s, "DynamicUser") == ["yes"]
    assert values(service, s, "User") == ["snapshotter"]
    # A SQLite reader in WAL mode writes the -shm file beside the database.
    assert values(service, s, "ReadWritePaths") == ["/srv/snapshots"]
    assert "-shm" in text
    # Loading the config reads every credential it names: the accounts' too.
    assert [v.split(":")[0] for v in values(service, s, "LoadCredential")] == [
        "ab1234-password", "ab1234-totp", "dashboard-password"]
    assert_clean(verify(analyze, tmp_path, units, exe))


@pytest.mark.parametrize("url", ["sqlite:////var/lib/snapshotter/snapshots.db",
                                 "postgresql://snap@db.example.in/snapshots"])
def test_serve_unit_database_already_writable_or_remote(exe: str, tmp_path: Path,
                                                       url: str) -> None:
    cfg = _serve_config(tmp_path / "config.yaml", url)
    service = parse_unit(generate(tmp_path / "out", "serve", exe, config=cfg)
                         ["snapshotter-serve.service"])
    assert values(service, "Service", "ReadWritePaths") == []


def test_serve_unit_with_a_named_user(analyze: str, exe: str, tmp_path: Path) -> None:
    units = generate(tmp_path / "out", "serve", exe, "--user", "snapshotter")
    service = parse_unit(units["snapshotter-serve.service"])
    assert values(service, "Service", "User") == ["snapshotter"]
    assert values(service, "Service", "DynamicUser") == []
    assert_clean(verify(analyze, tmp_path, units, exe))


def test_serve_unit_warns_when_it_would_refuse_to_start(exe: str, tmp_path: Path) -> None:
    cfg = _serve_config(tmp_path / "config.yaml", "sqlite:///snapshots.db", host="0.0.0.0")
    result = run_cli("--config", str(cfg), "systemd", "--mode", "serve", "--executable", exe,
                     env=NO_CONFIG_ENV)
    assert result.returncode == 0, result.stderr
    assert "serve.host is 0.0.0.0" in result.stderr and "refuse to start" in result.stderr


def test_timer_and_daemon_load_the_dashboard_password_too(exe: str, tmp_path: Path) -> None:
    """The daemon reads the whole config, serve.password_file included."""
    cfg = _serve_config(tmp_path / "config.yaml", "sqlite:///snapshots.db",
                        password_file="dashboard-password")
    service = parse_unit(generate(tmp_path / "out", "daemon", exe, config=cfg)
                         ["snapshotter.service"])
    assert "dashboard-password" in [v.split(":")[0]
                                    for v in values(service, "Service", "LoadCredential")]


def test_serve_reads_the_password_the_unit_loads(tmp_path: Path) -> None:
    """End to end: the dashboard's password from $CREDENTIALS_DIRECTORY, as the unit
    delivers it: serve starts on 0.0.0.0 and asks for it."""
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    for name in ("ab1234-password", "dashboard-password"):
        (creds / name).write_text("a long dashboard password\n", encoding="utf-8")
    (creds / "ab1234-totp").write_text(TOTP, encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    db = tmp_path / "snapshots.db"
    cfg = _serve_config(tmp_path / "config.yaml", f"sqlite:///{db}", host="0.0.0.0",
                        password_file="dashboard-password")
    upgraded = run_cli("--config", str(cfg), "db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    with serving(cfg, env=env) as served:
        answer = local_get(served.url + "/", allow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login")
        assert "dashboard password" not in served.output()
