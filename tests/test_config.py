"""The YAML configuration: loading, defaults, ${VAR}, *_file secrets, validation, the CLI."""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Iterator
from datetime import date, time
from pathlib import Path

import pytest

from snapshotter import cli
from snapshotter.config import (
    DEFAULT_API_ROOT,
    DEFAULT_BASE_URL,
    DEFAULT_DATABASE_URL,
    AccountConfig,
    Config,
    Secret,
    load_config,
    parse_config,
    resolve_config_path,
)
from snapshotter.errors import ConfigError
from tests.conftest import run_cli as run_command

TOTP = "JBSWY3DPEHPK3PXPKRSXG5CTMVRXEZLU"  # a valid base32 TOTP key, 32 characters like Kite's
TOTP2 = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"
PASSWORD = "hunter2-S3cret"

MINIMAL = """\
accounts:
  - user_id: ab1234
    password: ${KITE_PASSWORD}
    totp_secret: ${KITE_TOTP_SECRET}
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts in an empty directory, with no config-related variables set."""
    for name in list(os.environ):
        if name.startswith(("KITE_", "SNAPSHOTTER_", "PG")) or name in (
            "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "XDG_STATE_HOME",
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def kite_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITE_PASSWORD", PASSWORD)
    monkeypatch.setenv("KITE_TOTP_SECRET", TOTP)


def write(tmp_path: Path, text: str, name: str = "config.yaml", mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


def load(tmp_path: Path, text: str, mode: int = 0o600) -> Config:
    return load_config(str(write(tmp_path, text, mode=mode)))


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    lines = info.value.problems
    assert lines, "a ConfigError carries at least one line"
    for line in lines:
        assert "\n" not in line
        assert line.startswith(f"{path}: ")
    return lines


def only_problem(tmp_path: Path, text: str) -> str:
    lines = problems(tmp_path, text)
    assert len(lines) == 1, lines
    return lines[0].split(": ", 1)[1]  # without the file name


# --- a valid file and its defaults -----------------------------------------------------


@pytest.mark.usefixtures("kite_env")
def test_minimal_file_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    path = write(tmp_path, MINIMAL)
    config = load_config(str(path))

    assert config.path == path
    # the default's relative path names a file beside the config file
    assert DEFAULT_DATABASE_URL == "sqlite:///snapshots.db"
    assert config.database_url == f"sqlite:///{tmp_path / 'snapshots.db'}"
    assert config.kite.base_url == DEFAULT_BASE_URL == "https://kite.zerodha.com"
    assert config.kite.api_root == DEFAULT_API_ROOT == "https://api.kite.trade"
    assert config.kite.concurrency >= 8
    assert config.kite.timeout > 0
    assert config.kite.retries >= 1
    assert str(config.timezone) == "Asia/Kolkata"
    assert config.schedule.time == time(16, 30)
    assert config.schedule.retry_attempts >= 1
    assert config.calendar.holidays == ()
    assert config.calendar.extra_sessions == ()
    assert config.log_level == "INFO"
    assert config.healthcheck_url is None
    assert config.state_dir == tmp_path / "state"
    assert config.warnings == ()

    (acc,) = config.accounts
    assert acc.user_id == "AB1234"  # normalised to upper case
    assert acc.auth == "web"
    assert acc.password == PASSWORD
    assert acc.totp_secret == TOTP
    assert isinstance(acc.password, Secret)
    assert isinstance(acc.totp_secret, Secret)
    assert acc.api_key is None and acc.api_secret is None
    assert config.account("AB1234") is acc
    assert sorted(config.secrets()) == sorted([PASSWORD, TOTP])


def test_state_dir_defaults_without_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            kite_env: None) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert load(tmp_path, MINIMAL).state_dir == tmp_path / "xdg" / "snapshotter"


@pytest.mark.usefixtures("kite_env")
def test_every_setting_given(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        database: {url: postgresql+psycopg://snap@db.internal/snapshots}
        kite:
          base_url: http://127.0.0.1:8765/
          api_root: http://127.0.0.1:8765
          timeout: 5
          retries: 0
          backoff: 0.25
          concurrency: 16
        schedule:
          time: 17:05          # unquoted: YAML 1.1 would read this as the number 1025
          retry_attempts: 5
          retry_spacing_minutes: 10
        calendar:
          holidays: [2025-01-26, "2025-08-15"]
          extra_sessions: [2025-11-01 18:00:00]
        timezone: UTC
        state_dir: ~/snapstate
        healthcheck_url: https://hc-ping.com/abc
        logging: {level: debug}
        accounts:
          - user_id: " xy9876 "
            password: ${KITE_PASSWORD}
            totp_secret: "jbsw y3dp ehpk 3pxp krsx g5ct mvrx ezlu"  # spaces, lower case
            label: Family
    """)
    assert config.database_url == "postgresql+psycopg://snap@db.internal/snapshots"
    assert config.kite.base_url == "http://127.0.0.1:8765"  # trailing slash dropped
    assert config.kite.timeout == 5.0 and isinstance(config.kite.timeout, float)
    assert config.kite.retries == 0
    assert config.kite.backoff == 0.25
    assert config.kite.concurrency == 16
    assert config.schedule.time == time(17, 5)
    assert config.schedule.retry_attempts == 5
    assert config.schedule.retry_spacing_minutes == 10
    assert config.calendar.holidays == (date(2025, 1, 26), date(2025, 8, 15))
    assert config.calendar.extra_sessions == (date(2025, 11, 1),)
    assert type(config.calendar.extra_sessions[0]) is date
    assert str(config.timezone) == "UTC"
    assert config.state_dir == Path("~/snapstate").expanduser()
    assert config.healthcheck_url == "https://hc-ping.com/abc"
    assert config.log_level == "DEBUG"
    (acc,) = config.accounts
    assert acc.user_id == "XY9876"
    assert acc.totp_secret == TOTP  # spaces removed, upper-cased
    assert acc.label == "Family"


def test_empty_sections_take_defaults(tmp_path: Path, kite_env: None) -> None:
    config = load(tmp_path, "database:\nkite:\nschedule:\n" + MINIMAL)
    assert config.database_url == f"sqlite:///{tmp_path / 'snapshots.db'}"
    assert config.kite.concurrency >= 8
    assert config.schedule.time == time(16, 30)


# --- ${VAR} interpolation -------------------------------------------------------------


def test_interpolation_in_several_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "PGUSER": "snap", "PGHOST": "db.internal", "KITE_URL": "http://127.0.0.1:9000",
        "KITE_CONCURRENCY": "12", "KITE_TIMEOUT": "2.5", "RUN_AT": "15:45", "TZ_NAME": "UTC",
        "HOLIDAY": "2025-03-14", "KITE_USER": "cd5678", "KITE_PASSWORD": PASSWORD,
        "KITE_TOTP_SECRET": TOTP, "KITE_PW_B": "b-pass", "KITE_TOTP_B": TOTP2,
        "LABEL_PREFIX": "Mum",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load(tmp_path, """\
        database: {url: "postgresql+psycopg://${PGUSER}@${PGHOST}/snapshots"}
        kite: {base_url: "${KITE_URL}", concurrency: "${KITE_CONCURRENCY}",
               timeout: "${KITE_TIMEOUT}"}
        schedule: {time: "${RUN_AT}"}
        timezone: ${TZ_NAME}
        calendar: {holidays: ["${HOLIDAY}"]}
        accounts:
          - user_id: ${KITE_USER}
            password: ${KITE_PASSWORD}
            totp_secret: ${KITE_TOTP_SECRET}
          - user_id: ef9012
            password: "pre-${KITE_PW_B}-post"
            totp_secret: ${KITE_TOTP_B}
            label: "${LABEL_PREFIX}'s account"
    """)
    assert config.database_url == "postgresql+psycopg://snap@db.internal/snapshots"
    assert config.kite.base_url == "http://127.0.0.1:9000"
    assert config.kite.concurrency == 12 and isinstance(config.kite.concurrency, int)
    assert config.kite.timeout == 2.5
    assert config.schedule.time == time(15, 45)
    assert str(config.timezone) == "UTC"
    assert config.calendar.holidays == (date(2025, 3, 14),)
    first, second = config.accounts
    assert first.user_id == "CD5678"
    assert (first.password, first.totp_secret) == (PASSWORD, TOTP)
    assert second.password == "pre-b-pass-post"
    assert second.totp_secret == TOTP2
    assert second.label == "Mum's account"


def test_unset_variable_in_password_gives_exactly_one_line(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITE_TOTP_SECRET", TOTP)
    line = only_problem(tmp_path, MINIMAL)
    assert line == "accounts[0] (AB1234).password: environment variable KITE_PASSWORD is not set"


@pytest.mark.parametrize(("yaml_text", "key", "var"), [
    (MINIMAL.replace("${KITE_TOTP_SECRET}", "${KITE_TOTP_MISSING}"),
     "accounts[0] (AB1234).totp_secret", "KITE_TOTP_MISSING"),
    # a partly interpolated TOTP secret is not reported again as malformed
    (MINIMAL.replace("${KITE_TOTP_SECRET}", '"${KITE_TOTP_MISSING}ABC"'),
     "accounts[0] (AB1234).totp_secret", "KITE_TOTP_MISSING"),
    # nor an unset user_id as missing
    (MINIMAL.replace("ab1234", "${KITE_USER}"), "accounts[0].user_id", "KITE_USER"),
    (MINIMAL + "    password_file: ${KITE_PW_FILE}\n",
     "accounts[0] (AB1234).password_file", "KITE_PW_FILE"),
    ("kite:\n  timeout: ${KITE_TIMEOUT}\n" + MINIMAL, "kite.timeout", "KITE_TIMEOUT"),
    ("kite: {base_url: '${KITE_HOST}/'}\n" + MINIMAL, "kite.base_url", "KITE_HOST"),
    ("schedule:\n  time: ${RUN_AT}\n" + MINIMAL, "schedule.time", "RUN_AT"),
    ("database: {url: '${DATABASE_URL}'}\n" + MINIMAL, "database.url", "DATABASE_URL"),
    ("calendar: {holidays: ['${HOLIDAY}']}\n" + MINIMAL, "calendar.holidays[0]", "HOLIDAY"),
], ids=["totp", "totp-partial", "user_id", "password_file", "timeout", "base_url", "time",
        "database_url", "holiday"])
def test_unset_variable_one_line_naming_key_and_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kite_env: None,
        yaml_text: str, key: str, var: str) -> None:
    if "password_file" in yaml_text:
        monkeypatch.delenv("KITE_PASSWORD")
        yaml_text = yaml_text.replace("    password: ${KITE_PASSWORD}\n", "")
    assert only_problem(tmp_path, yaml_text) == f"{key}: environment variable {var} is not set"


def test_two_unset_variables_in_one_value_share_one_line(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, "database: {url: 'postgresql://${PGUSER}@${PGHOST}/x'}\n"
                        + MINIMAL)
    assert line == "database.url: environment variables PGUSER, PGHOST are not set"


def test_variable_set_to_empty_is_not_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            kite_env: None) -> None:
    monkeypatch.setenv("HC_URL", "")
    assert load(tmp_path, "healthcheck_url: ${HC_URL}\n" + MINIMAL).healthcheck_url is None


def test_malformed_variable_reference_is_reported_without_the_value(tmp_path: Path,
                                                                    kite_env: None) -> None:
    line = only_problem(tmp_path, MINIMAL.replace("${KITE_PASSWORD}", '"${KITE-PASSWORD}"'))
    assert line.startswith("accounts[0] (AB1234).password: malformed ${...} reference")
    assert "KITE-PASSWORD" not in line


# --- *_file secrets -------------------------------------------------------------------


def test_password_and_totp_from_files(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n", encoding="utf-8")
    (tmp_path / "totp").write_text(f"  {TOTP}\n", encoding="utf-8")
    config = load(tmp_path, f"""\
        accounts:
          - user_id: AB1234
            password_file: {tmp_path / "pw"}
            totp_secret_file: {tmp_path / "totp"}
    """)
    (acc,) = config.accounts
    assert acc.password == PASSWORD  # surrounding whitespace and newline stripped
    assert acc.totp_secret == TOTP
    assert isinstance(acc.password, Secret)


def test_relative_file_is_looked_up_in_credentials_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "kite-password").write_text(PASSWORD, encoding="utf-8")
    (creds / "kite-totp").write_text(TOTP, encoding="utf-8")
    # decoys in the working directory must not be used while $CREDENTIALS_DIRECTORY is set
    (tmp_path / "kite-password").write_text("wrong", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load(tmp_path, """\
        accounts:
          - user_id: AB1234
            password_file: kite-password
            totp_secret_file: kite-totp
    """)
    assert config.accounts[0].password == PASSWORD
    assert config.accounts[0].totp_secret == TOTP


def test_relative_file_without_credentials_directory_is_relative_to_cwd(tmp_path: Path) -> None:
    (tmp_path / "kite-password").write_text(PASSWORD, encoding="utf-8")
    config = load(tmp_path, f"""\
        accounts:
          - user_id: AB1234
            password_file: kite-password
            totp_secret: {TOTP}
    """)
    assert config.accounts[0].password == PASSWORD


def test_missing_secret_file_is_one_line(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, """\
        accounts:
          - user_id: AB1234
            password_file: /nonexistent/kite-password
            totp_secret: ${KITE_TOTP_SECRET}
    """)
    assert line == ("accounts[0] (AB1234).password_file: cannot read "
                    "/nonexistent/kite-password: No such file or directory")


def test_secret_file_that_is_a_directory(tmp_path: Path, kite_env: None) -> None:
    (tmp_path / "adir").mkdir()
    line = only_problem(tmp_path, f"""\
        accounts:
          - user_id: AB1234
            password: ${{KITE_PASSWORD}}
            totp_secret_file: {tmp_path / "adir"}
    """)
    assert line.startswith("accounts[0] (AB1234).totp_secret_file: cannot read ")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions and a non-root user")
def test_unreadable_secret_file(tmp_path: Path, kite_env: None) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD, encoding="utf-8")
    secret.chmod(0)
    line = only_problem(tmp_path, f"""\
        accounts:
          - user_id: AB1234
            password_file: {secret}
            totp_secret: ${{KITE_TOTP_SECRET}}
    """)
    assert line == f"accounts[0] (AB1234).password_file: cannot read {secret}: Permission denied"


def test_secret_file_not_utf8(tmp_path: Path, kite_env: None) -> None:
    (tmp_path / "pw").write_bytes(b"\xff\xfe\x00secret")
    line = only_problem(tmp_path, f"""\
        accounts:
          - user_id: AB1234
            password_file: {tmp_path / "pw"}
            totp_secret: ${{KITE_TOTP_SECRET}}
    """)
    assert line.endswith("not UTF-8 text")


def test_empty_secret_file(tmp_path: Path, kite_env: None) -> None:
    (tmp_path / "totp").write_text("\n  \n", encoding="utf-8")
    line = only_problem(tmp_path, f"""\
        accounts:
          - user_id: AB1234
            password: ${{KITE_PASSWORD}}
            totp_secret_file: {tmp_path / "totp"}
    """)
    assert line == f"accounts[0] (AB1234).totp_secret_file: {tmp_path / 'totp'} is empty"


def test_empty_secret_file_name(tmp_path: Path, kite_env: None) -> None:
    text = MINIMAL.replace("password: ${KITE_PASSWORD}", 'password_file: ""')
    assert only_problem(tmp_path, text) == (
        "accounts[0] (AB1234).password_file: must be a file path")


def test_inline_and_file_both_given(tmp_path: Path, kite_env: None) -> None:
    (tmp_path / "pw").write_text(PASSWORD, encoding="utf-8")
    line = only_problem(tmp_path, MINIMAL + f"    password_file: {tmp_path / 'pw'}\n")
    assert line == ("accounts[0] (AB1234).password: give either password or password_file, "
                    "not both")


def test_missing_secrets_each_one_line(tmp_path: Path) -> None:
    lines = problems(tmp_path, "accounts:\n  - user_id: AB1234\n")
    assert [line.split(": ", 1)[1] for line in lines] == [
        "accounts[0] (AB1234).password: missing (or give password_file)",
        "accounts[0] (AB1234).totp_secret: missing (or give totp_secret_file)",
    ]


def test_unquoted_numeric_password_is_refused_not_mangled(tmp_path: Path,
                                                          kite_env: None) -> None:
    # YAML 1.1 reads 012345 as the octal number 5349: never log in with a mangled password
    line = only_problem(tmp_path, MINIMAL.replace("${KITE_PASSWORD}", "012345"))
    assert line == "accounts[0] (AB1234).password: must be a string: put the value in quotes"
    config = load(tmp_path, MINIMAL.replace("${KITE_PASSWORD}", '"012345"'))
    assert config.accounts[0].password == "012345"


# --- TOTP, user ids, auth modes ---------------------------------------------------------


@pytest.mark.parametrize("bad", [
    "NOT-BASE32-AT-ALL!!",        # characters outside base32
    "JBSWY3DPEHPK3PXPKRSXG5CTMVRXEZL1",  # 1 is not a base32 digit
    "JBSWY3DPEHPK3PXP",           # too short to be a Kite TOTP key
    "JBSWY3DPEHPK3PXPKRSXG5CTMVRXEZLUA",  # impossible base32 length
])
def test_malformed_totp_secret(tmp_path: Path, kite_env: None, bad: str) -> None:
    line = only_problem(tmp_path, MINIMAL.replace("${KITE_TOTP_SECRET}", f'"{bad}"'))
    assert line.startswith("accounts[0] (AB1234).totp_secret: malformed")
    assert bad not in line


def test_duplicate_user_id_is_case_insensitive(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, MINIMAL + """\
  - user_id: AB1234
    password: ${KITE_PASSWORD}
    totp_secret: ${KITE_TOTP_SECRET}
""")
    assert line == "accounts[1] (AB1234).user_id: duplicate user_id AB1234"


def test_missing_user_id(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, MINIMAL.replace("user_id: ab1234", "label: x"))
    assert line == "accounts[0].user_id: missing"


def test_connect_requires_api_key_and_secret(tmp_path: Path, kite_env: None) -> None:
    lines = problems(tmp_path, MINIMAL + "    auth: connect\n")
    assert [line.split(": ", 1)[1] for line in lines] == [
        "accounts[0] (AB1234).api_secret: missing (auth: connect needs it) "
        "(or give api_secret_file)",
        "accounts[0] (AB1234).api_key: missing (auth: connect needs it)",
    ]


def test_connect_with_api_key_and_secret_file(tmp_path: Path, kite_env: None) -> None:
    (tmp_path / "api").write_text("apisecret123\n", encoding="utf-8")
    config = load(tmp_path, MINIMAL + f"""\
    auth: connect
    api_key: kiteapp1
    api_secret_file: {tmp_path / "api"}
""")
    (acc,) = config.accounts
    assert (acc.auth, acc.api_key, acc.api_secret) == ("connect", "kiteapp1", "apisecret123")
    assert "apisecret123" in config.secrets()


def test_manual_auth_needs_no_password_or_totp(tmp_path: Path) -> None:
    config = load(tmp_path, "accounts:\n  - {user_id: AB1234, auth: manual}\n")
    (acc,) = config.accounts
    assert acc.auth == "manual"
    assert acc.password is None and acc.totp_secret is None
    assert config.secrets() == []


def test_unknown_auth_mode(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, MINIMAL + "    auth: oauth\n")
    assert line == ("accounts[0] (AB1234).auth: must be one of web, connect, manual, "
                    "got 'oauth'")


# --- unknown keys -----------------------------------------------------------------------


def test_unknown_top_level_key_with_suggestion(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, "databse: {url: sqlite:///x.db}\n" + MINIMAL)
    assert line == "databse: unknown key (did you mean 'database'?)"


def test_unknown_key_in_a_section(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, "kite: {base_ulr: http://localhost}\n" + MINIMAL)
    assert line == "kite.base_ulr: unknown key (did you mean 'base_url'?)"


def test_unknown_key_in_an_account_is_not_also_missing(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, MINIMAL.replace("totp_secret:", "totp_secert:"))
    assert line == "accounts[0] (AB1234).totp_secert: unknown key (did you mean 'totp_secret'?)"


def test_misspelt_file_key_is_not_also_missing(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, """\
        accounts:
          - user_id: AB1234
            pasword_file: /run/credentials/pw
            totp_secret: ${KITE_TOTP_SECRET}
    """)
    assert line == ("accounts[0] (AB1234).pasword_file: unknown key "
                    "(did you mean 'password_file'?)")


def test_misspelt_accounts_is_not_also_missing(tmp_path: Path) -> None:
    line = only_problem(tmp_path, "acounts:\n  - user_id: AB1234\n")
    assert line == "acounts: unknown key (did you mean 'accounts'?)"


def test_unknown_key_without_a_close_match(tmp_path: Path, kite_env: None) -> None:
    assert only_problem(tmp_path, "zzz: 1\n" + MINIMAL) == "zzz: unknown key"


def test_unset_variable_in_unknown_key_is_one_line(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, MINIMAL + "    totp_secert: ${TOTP_TYPO}\n")
    assert line == "accounts[0] (AB1234).totp_secert: unknown key (did you mean 'totp_secret'?)"


# --- several problems, bad files -------------------------------------------------------


def test_all_problems_are_reported_together(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITE_TOTP_SECRET", TOTP)
    lines = problems(tmp_path, """\
        databse: {url: sqlite:///x.db}
        kite: {concurrency: 0, timeout: soon}
        schedule: {time: "25:99"}
        timezone: Mars/Olympus_Mons
        logging: {level: chatty}
        accounts:
          - user_id: AB1234
            password: ${KITE_PASSWORD}
            totp_secret: "not base32!"
          - user_id: ab1234
            password: x
            totp_secret: ${KITE_TOTP_SECRET}
            totp_secert: y
          - just a string
    """)
    keys = [line.split(": ")[1] for line in lines]
    assert sorted(keys) == sorted([
        "databse",
        "accounts[1] (AB1234).totp_secert",
        "accounts[0] (AB1234).password",
        "kite.timeout",
        "kite.concurrency",
        "schedule.time",
        "logging.level",
        "timezone",
        "accounts[0] (AB1234).totp_secret",
        "accounts[1] (AB1234).user_id",
        "accounts[2]",
    ])
    assert len(set(lines)) == len(lines)
    assert not any("not base32!" in line for line in lines)


@pytest.mark.parametrize(("value", "message"), [
    ("0", "must be at least 1"),
    ("soon", "must be a number, got 'soon'"),
    ("2.5", "must be a whole number, got 2.5"),
    ("true", "must be a number, got True"),
    (".nan", "must be a number, got nan"),
])
def test_bad_numbers(tmp_path: Path, kite_env: None, value: str, message: str) -> None:
    line = only_problem(tmp_path, f"kite: {{concurrency: {value}}}\n" + MINIMAL)
    assert line == f"kite.concurrency: {message}"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "America", "../etc/passwd", ""])
def test_unknown_time_zone_is_a_config_error(tmp_path: Path, kite_env: None, zone: str) -> None:
    if zone == "":
        assert str(load(tmp_path, "timezone: ''\n" + MINIMAL).timezone) == "Asia/Kolkata"
        return
    assert only_problem(tmp_path, f"timezone: '{zone}'\n" + MINIMAL) == (
        f"timezone: unknown time zone {zone!r}")


def test_section_that_is_not_a_mapping(tmp_path: Path, kite_env: None) -> None:
    assert only_problem(tmp_path, "database: sqlite:///x.db\n" + MINIMAL) == (
        "database: must be a mapping")


def test_database_url_without_scheme_is_not_echoed(tmp_path: Path, kite_env: None) -> None:
    line = only_problem(tmp_path, "database: {url: 'snap:pw123@db/x'}\n" + MINIMAL)
    assert line.startswith("database.url: not a database URL")
    assert "pw123" not in line


def test_accounts_given_as_a_mapping(tmp_path: Path) -> None:
    line = only_problem(tmp_path, "accounts:\n  user_id: AB1234\n")
    assert line.startswith("accounts: must be a list")


def test_invalid_yaml(tmp_path: Path) -> None:
    line = only_problem(tmp_path, "accounts:\n  - user_id: AB1234\n password: [oops\n")
    assert line.startswith("invalid YAML at line ")


def test_unquoted_variable_in_flow_mapping_gets_a_hint(tmp_path: Path) -> None:
    line = only_problem(tmp_path, "kite: {timeout: ${KITE_TIMEOUT}}\n" + MINIMAL)
    assert line.startswith("invalid YAML at line 1: ")
    assert line.endswith("put ${VAR} values in quotes)")


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    assert "must be a YAML mapping" in only_problem(tmp_path, "- a\n- b\n")


def test_empty_file(tmp_path: Path) -> None:
    assert only_problem(tmp_path, "").startswith("accounts: missing")


def test_config_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"accounts: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.problems == [f"{path}: cannot read: not UTF-8 text"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    (line,) = info.value.problems
    assert line.startswith(f"{path}: config file not found")
    assert "--config" in line and "SNAPSHOTTER_CONFIG" in line


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    (line,) = info.value.problems
    assert line.startswith(f"{tmp_path}: cannot read")


# --- which file ------------------------------------------------------------------------


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_config_path(None) == Path("config.yaml")
    monkeypatch.setenv("SNAPSHOTTER_CONFIG", "/etc/snapshotter/env.yaml")
    assert resolve_config_path(None) == Path("/etc/snapshotter/env.yaml")
    assert resolve_config_path("cli.yaml") == Path("cli.yaml")
    monkeypatch.setenv("SNAPSHOTTER_CONFIG", "")
    assert resolve_config_path(None) == Path("config.yaml")


def test_load_config_follows_the_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            kite_env: None) -> None:
    for name, url in (("config.yaml", "sqlite:///cwd.db"), ("env.yaml", "sqlite:///env.db"),
                      ("cli.yaml", "sqlite:///cli.db")):
        write(tmp_path, f"database: {{url: '{url}'}}\n" + MINIMAL, name=name)
    assert load_config(None).database_url == f"sqlite:///{tmp_path / 'cwd.db'}"
    monkeypatch.setenv("SNAPSHOTTER_CONFIG", str(tmp_path / "env.yaml"))
    assert load_config(None).database_url == f"sqlite:///{tmp_path / 'env.db'}"
    assert load_config(str(tmp_path / "cli.yaml")).database_url == \
        f"sqlite:///{tmp_path / 'cli.db'}"


# --- permissions warning -----------------------------------------------------------------

LITERAL = f"""\
accounts:
  - user_id: AB1234
    password: {PASSWORD}
    totp_secret: ${{KITE_TOTP_SECRET}}
"""


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_literal_secret_readable_by_others_warns(tmp_path: Path, kite_env: None,
                                                 mode: int) -> None:
    config = load(tmp_path, LITERAL, mode=mode)
    (warning,) = config.warnings
    assert "literal secret" in warning and "chmod 600" in warning
    assert PASSWORD not in warning


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_literal_secret_private_file_does_not_warn(tmp_path: Path, kite_env: None,
                                                   mode: int) -> None:
    assert load(tmp_path, LITERAL, mode=mode).warnings == ()


def test_literal_totp_or_api_secret_warns(tmp_path: Path, kite_env: None) -> None:
    text = MINIMAL.replace("${KITE_TOTP_SECRET}", TOTP)
    assert load(tmp_path, text, mode=0o644).warnings
    text = MINIMAL + "    auth: connect\n    api_key: k\n    api_secret: literal-api-secret\n"
    assert load(tmp_path, text, mode=0o644).warnings


def test_literal_database_password_warns(tmp_path: Path, kite_env: None,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    text = "database: {url: 'postgresql+psycopg://snap:dbpass@db/x'}\n" + MINIMAL
    assert load(tmp_path, text, mode=0o644).warnings
    monkeypatch.setenv("PGPASSWORD", "dbpass")
    text = "database: {url: 'postgresql+psycopg://snap:${PGPASSWORD}@db/x'}\n" + MINIMAL
    assert load(tmp_path, text, mode=0o644).warnings == ()


def test_variables_and_files_do_not_warn(tmp_path: Path, kite_env: None) -> None:
    assert load(tmp_path, MINIMAL, mode=0o644).warnings == ()
    (tmp_path / "pw").write_text(PASSWORD, encoding="utf-8")
    (tmp_path / "pw").chmod(0o600)  # the secret file is private; the config need not be
    text = f"""\
        accounts:
          - user_id: AB1234
            password_file: {tmp_path / "pw"}
            totp_secret: ${{KITE_TOTP_SECRET}}
    """
    assert load(tmp_path, text, mode=0o644).warnings == ()


def test_group_writable_but_not_readable_does_not_warn(tmp_path: Path, kite_env: None) -> None:
    assert load(tmp_path, LITERAL, mode=0o620).warnings == ()


# --- secrets never shown -------------------------------------------------------------------


def test_secret_repr_hides_the_value() -> None:
    secret = Secret(PASSWORD)
    assert PASSWORD not in repr(secret)
    assert PASSWORD not in f"{secret!r}"
    assert str(secret) == PASSWORD and secret == PASSWORD
    acc = AccountConfig(user_id="AB1234", password=secret, totp_secret=Secret(TOTP),
                        api_secret=Secret("apisecret123"))
    shown = repr(acc)
    assert "AB1234" in shown
    assert PASSWORD not in shown and TOTP not in shown and "apisecret123" not in shown


def test_config_repr_hides_secrets(tmp_path: Path, kite_env: None) -> None:
    config = load(tmp_path, MINIMAL)
    assert PASSWORD not in repr(config)
    assert TOTP not in repr(config)


def test_parse_config_accepts_a_dict() -> None:
    config = parse_config({"accounts": [{"user_id": "ab1234", "password": "p",
                                         "totp_secret": TOTP}]}, "<test>")
    assert config.path is None
    assert config.accounts[0].user_id == "AB1234"
    with pytest.raises(ConfigError) as info:
        parse_config({"accounts": []}, "<test>")
    assert info.value.problems[0].startswith("<test>: accounts: missing")


# --- through the command line ------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("restore_logging")
def test_cli_reports_every_problem_on_its_own_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    bad_totp = "NOTBASE32SECRETVALUE!!"
    path = write(tmp_path, f"""\
        databse: {{url: sqlite:///x.db}}
        accounts:
          - user_id: AB1234
            password: {PASSWORD}
            totp_secret: "{bad_totp}"
          - user_id: ab1234
            password: other-secret-pw
            totp_secret: ${{KITE_TOTP_SECRET}}
            totp_secert: {TOTP2}
    """, mode=0o644)
    code, out, err = run_cli(capsys, "--config", str(path), "run")
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert all(line.startswith(f"error: {path}: ") for line in lines), lines
    assert sorted(line.split(": ")[2] for line in lines) == sorted([
        "databse",
        "accounts[1] (AB1234).totp_secert",
        "accounts[1] (AB1234).totp_secret",   # KITE_TOTP_SECRET is not set
        "accounts[0] (AB1234).totp_secret",   # malformed
        "accounts[1] (AB1234).user_id",       # duplicate
    ])
    for secret in (PASSWORD, bad_totp, "other-secret-pw", TOTP2):
        assert secret not in out and secret not in err


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("argv_tail", [["run"], ["db", "upgrade"]])
def test_cli_malformed_totp_is_not_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          kite_env: None, argv_tail: list[str]) -> None:
    bad_totp = "ZZZZ1111ZZZZ1111ZZZZ1111ZZZZ1111"
    path = write(tmp_path, MINIMAL.replace("${KITE_TOTP_SECRET}", bad_totp))
    code, out, err = run_cli(capsys, "--config", str(path), *argv_tail)
    assert code == 2
    assert err == (f"error: {path}: accounts[0] (AB1234).totp_secret: malformed: "
                   "expected the base32 key shown when enabling external TOTP\n")
    assert bad_totp not in out + err
    assert "Traceback" not in err


@pytest.mark.usefixtures("restore_logging")
def test_cli_missing_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run")
    assert code == 2
    assert err.startswith("error: config.yaml: config file not found")
    monkeypatch.setenv("SNAPSHOTTER_CONFIG", str(tmp_path / "from-env.yaml"))
    code, _, err = run_cli(capsys, "run")
    assert code == 2
    assert err.startswith(f"error: {tmp_path / 'from-env.yaml'}: config file not found")
    code, _, err = run_cli(capsys, "--config", str(tmp_path / "cli.yaml"), "run")
    assert err.startswith(f"error: {tmp_path / 'cli.yaml'}: config file not found")
    assert len(err.splitlines()) == 1


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("text", [
    "accounts: [\n",                                     # invalid YAML
    "timezone: America\n" + MINIMAL,                     # a folder of zoneinfo, not a zone
    "schedule: {time: 'later'}\n" + MINIMAL,
])
def test_cli_config_errors_exit_2_without_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kite_env: None, text: str) -> None:
    path = write(tmp_path, text)
    code, out, err = run_cli(capsys, "--config", str(path), "run")
    assert code == 2
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"error: {path}: ")
    assert PASSWORD not in out + err and TOTP not in out + err


@pytest.mark.usefixtures("restore_logging")
def test_cli_unset_variable_names_key_and_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KITE_TOTP_SECRET", TOTP)
    path = write(tmp_path, MINIMAL)
    code, _, err = run_cli(capsys, "--config", str(path), "run")
    assert code == 2
    (line,) = err.splitlines()
    assert line == (f"error: {path}: accounts[0] (AB1234).password: environment variable "
                    "KITE_PASSWORD is not set")


@pytest.mark.usefixtures("restore_logging")
def test_cli_password_problem_text_is_not_redacted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kite_env: None) -> None:
    # redaction must not blank words after "password" in messages that hold no secret
    path = write(tmp_path, MINIMAL + "    password_file: /run/credentials/pw\n")
    _, _, err = run_cli(capsys, "--config", str(path), "run")
    assert err == (f"error: {path}: accounts[0] (AB1234).password: give either password or "
                   "password_file, not both\n")


@pytest.mark.usefixtures("restore_logging")
def test_a_secret_given_as_a_file_name_is_not_echoed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`password_file: ${KITE_PW}` written by mistake for `password:`."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("KITE_PW", "Hunter2-SuperSecret")
    path = write(tmp_path, f"""\
accounts:
  - user_id: AB1234
    password_file: ${{KITE_PW}}
    totp_secret: {TOTP}
""")
    code, out, err = run_cli(capsys, "--config", str(path), "run")
    assert code == 2
    assert "Hunter2-SuperSecret" not in out + err
    assert "password_file: cannot read the file it names" in err


# --- hints that fit the mistake, through the real command ------------------------------

# The one line for a TOTP code given where the key belongs (names account and key only).
TOTP_CODE_LINE = ("accounts[0] (AB1234).totp_secret: looks like a 6-digit code from the "
                  "authenticator app, not its key: give the base32 key (letters A-Z and "
                  "digits 2-7) shown when enabling external TOTP")


@pytest.mark.parametrize("written", [
    "428193",          # YAML reads a number: "put the value in quotes" would not help
    "012345",          # YAML 1.1 reads the octal number 5349
    '"428193"',        # quoted: a string, still a code
    "'428 193'",       # as some apps show it
    "${KITE_TOTP_CODE}",  # from the environment
    "FILE",            # totp_secret_file holding a code
])
def test_a_totp_code_instead_of_the_key_says_so(tmp_path: Path, kite_env: None,
                                                monkeypatch: pytest.MonkeyPatch,
                                                written: str) -> None:
    monkeypatch.setenv("KITE_TOTP_CODE", "428193")
    (tmp_path / "totp").write_text("428193\n", encoding="utf-8")
    (tmp_path / "totp").chmod(0o600)
    text = MINIMAL.replace("totp_secret: ${KITE_TOTP_SECRET}", (
        f"totp_secret_file: {tmp_path / 'totp'}" if written == "FILE"
        else f"totp_secret: {written}"))
    path = write(tmp_path, text)
    result = run_command("--config", str(path), "run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"error: {path}: {TOTP_CODE_LINE}\n"
    assert result.stdout == ""
    for value in ("428193", "428 193", "12345", "5349"):
        assert value not in result.stderr.replace(str(path), "")


def test_a_key_that_is_not_a_code_is_still_malformed(tmp_path: Path, kite_env: None) -> None:
    for written in ('"4281930"', '"42819"', '"JBSWY3DP1"'):  # not six digits: no code hint
        line = only_problem(tmp_path, MINIMAL.replace("${KITE_TOTP_SECRET}", written))
        assert line.startswith("accounts[0] (AB1234).totp_secret: malformed"), written
    line = only_problem(tmp_path, MINIMAL.replace("${KITE_TOTP_SECRET}", "1234567"))
    assert line == "accounts[0] (AB1234).totp_secret: must be a string: put the value in quotes"


@pytest.mark.parametrize(("text", "line", "hint"), [
    # A line indented less than its siblings, on a line that holds a ${VAR}.
    ("accounts:\n  - user_id: AB1234\n    password: ${KITE_PASSWORD}\n"
     "   totp_secret: ${KITE_TOTP_SECRET}\n", 4,
     "expected <block end>, but found '<block mapping start>' (check the indentation: the "
     "keys of one mapping line up)"),
    # More than its siblings: YAML reads it as the value above going on.
    ("accounts:\n  - user_id: AB1234\n    password: ${KITE_PASSWORD}\n"
     "      totp_secret: ${KITE_TOTP_SECRET}\n", 4,
     "mapping values are not allowed here (check the indentation, or quote a value "
     "holding ': ')"),
    # An unquoted ${VAR} inside {...}: its `{` opens a mapping.
    ("database: {url: sqlite:///${HOME}/x.db}\n" + MINIMAL, 1,
     "expected ',' or '}', but got '{' (inside {...} or [...], put ${VAR} values in quotes)"),
    ("accounts: [{user_id: AB1234, password: ${KITE_PASSWORD}}]\n", 1,
     "expected ',' or '}', but got '{' (inside {...} or [...], put ${VAR} values in quotes)"),
])
def test_yaml_errors_get_the_hint_that_fits(tmp_path: Path, kite_env: None, text: str,
                                            line: int, hint: str) -> None:
    path = write(tmp_path, text)
    result = run_command("--config", str(path), "run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"error: {path}: invalid YAML at line {line}: {hint}\n"
    assert result.stdout == ""


# --- accounts[].group ------------------------------------------------------------------

FAMILY = """\
accounts:
  - user_id: ab1234
    password: ${KITE_PASSWORD}
    totp_secret: ${KITE_TOTP_SECRET}
    group: "  Family "
  - user_id: cd5678
    auth: manual
    group: Family
  - user_id: ef9012
    auth: manual
"""


def test_groups_in_config_order_default_each_account_its_own(tmp_path: Path,
                                                             kite_env: None) -> None:
    config = load(tmp_path, FAMILY)
    assert [a.group for a in config.accounts] == ["Family", "Family", "EF9012"]
    assert config.groups() == {"Family": ("AB1234", "CD5678"), "EF9012": ("EF9012",)}
    assert AccountConfig("XY0001", None, None).group == "XY0001"


def test_a_group_may_take_the_name_of_an_account_in_it(tmp_path: Path,
                                                       kite_env: None) -> None:
    config = load(tmp_path, FAMILY.replace("group: Family\n", "group: EF9012\n"))
    assert config.groups() == {"Family": ("AB1234",), "EF9012": ("CD5678", "EF9012")}


@pytest.mark.parametrize(("written", "line"), [
    ('""', "must be a group name (text, e.g. family), or left out for the account's own "
           "group"),
    ("2024", "must be a group name (text, e.g. family), or left out for the account's own "
             "group"),
    ("[a, b]", "must be a group name (text, e.g. family), or left out for the account's "
               "own group"),
    ("all", "'ALL' is reserved for the all-accounts figures: choose another name"),
    (" ALL ", "'ALL' is reserved for the all-accounts figures: choose another name"),
    ("ab1234", "'ab1234' is the user_id of another account, which is in group 'Family': "
               "name the group otherwise, or put AB1234 in it too"),
])
def test_bad_group_is_one_line_naming_the_key(tmp_path: Path, kite_env: None, written: str,
                                              line: str) -> None:
    got = only_problem(tmp_path, FAMILY.replace("    auth: manual\n\n", "")
                       + f"    group: {written}\n")
    assert got == f"accounts[2] (EF9012).group: {line}"


# --- read commands load the config without the accounts' secrets -------------------------


def test_secretless_load_needs_no_secret_variable_nor_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, FAMILY + """\
  - user_id: gh3456
    auth: connect
    api_key: kiteapp1
    api_secret_file: /nonexistent/api-secret
    password_file: /nonexistent/password
    totp_secret: ${GH_TOTP}
notify:
  urls: ["${NOTIFY_URL}"]
database:
  url: sqlite:///${SNAPSHOTTER_TEST_DB_DIR}/s.db
""")
    with pytest.raises(ConfigError) as strict:
        load_config(str(path))
    assert any("KITE_PASSWORD" in line for line in strict.value.problems)
    with pytest.raises(ConfigError) as info:  # database.url is still interpolated
        load_config(str(path), secrets=False)
    assert [line.split(": ", 1)[1] for line in info.value.problems] == [
        "database.url: environment variable SNAPSHOTTER_TEST_DB_DIR is not set"]
    monkeypatch.setenv("SNAPSHOTTER_TEST_DB_DIR", str(tmp_path))
    config = load_config(str(path), secrets=False)
    assert config.database_url == f"sqlite:///{tmp_path}/s.db"
    assert [a.secrets() for a in config.accounts] == [[], [], [], []]
    assert config.notify.urls == () and config.secrets() == []
    assert config.groups()["Family"] == ("AB1234", "CD5678")
    # the checks that are not about secrets still hold
    write(tmp_path, FAMILY + "    group: ALL\n    label: x\n    colour: red\n")
    with pytest.raises(ConfigError) as bad:
        load_config(str(path), secrets=False)
    assert [line.split(": ", 1)[1] for line in bad.value.problems] == [
        "accounts[2] (EF9012).colour: unknown key",
        "accounts[2] (EF9012).group: 'ALL' is reserved for the all-accounts figures: "
        "choose another name"]
