"""The docs are checked: README.md and docs/*.md (the rules are in docs/development.md,
"Checked docs").

- every command has help text and a row in the README's commands table, and the table
  names no command, choice or option the parser lacks;
- every relative link resolves, to a file and to a heading of it;
- every command shown in a fenced block runs: `snapshotter ...` parses with the real
  parser, `make TARGET` is a target, a recipe line is what `make -n` prints, SQL runs on
  a fresh database at head (SQLite and PostgreSQL); anything else is marked illustrative
  or names the test that runs it;
- the README's quick start is the two commands, and its config example loads.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from snapshotter import config
from snapshotter.cli import build_parser
from snapshotter.cli.parser import parse_args
from snapshotter.store import migrate
from snapshotter.store.engine import make_engine
from tests.conftest import run_cli, write_config

ROOT = Path(__file__).resolve().parent.parent
README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
PAGES = [README_PATH, *sorted((ROOT / "docs").glob("*.md"))]

COMMAND_BLOCKS = {"sh", "shell", "bash", "console"}
MARKER = re.compile(r"^\s*<!-- docs-test: (illustrative: .+|run by (\S+)::(\w+)) -->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
SHELL_OPERATORS = {";", "&", "&&", "|", "||", ">", ">>", "<", "<<", "(", ")"}


# -- the commands table --------------------------------------------------------------------


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def _table_commands() -> list[str]:
    """The command column of the README's commands table, one entry per code span."""
    rows = [line for line in _section(README, "## Commands").splitlines()
            if line.startswith("| `snapshotter ")]
    spans = [re.findall(r"`([^`]+)`", row.split(" | ", 1)[0]) for row in rows]
    return [span.replace("\\|", "|").removeprefix("snapshotter ")
            for row in spans for span in row]


def test_every_command_is_documented_with_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name in _commands():
        assert helps.get(name), f"{name} has no help text"
        assert f"snapshotter {name}" in README, f"`snapshotter {name}` missing from README"
    table = {entry.split()[0] for entry in _table_commands()}
    assert table == set(_commands()), "the README's commands table and the parser differ"


def _positional_choices(parser: argparse.ArgumentParser) -> list[str]:
    return [str(c) for a in parser._actions if not a.option_strings and a.choices
            and not isinstance(a, argparse._SubParsersAction) for c in a.choices]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_the_commands_table_matches_the_parser() -> None:
    """Each row's command, choices and options are the parser's; every choice of a
    command (a report, an import kind, `db upgrade`) has a row."""
    commands = _commands()
    shown: dict[str, set[str]] = {}
    problems = []
    for entry in _table_commands():
        words = entry.split()
        name, rest = words[0], " ".join(words[1:])
        parser = commands[name]
        nested = _subparsers(parser)
        if nested:
            sub = words[1]
            shown.setdefault(name, set()).add(sub)
            if sub not in nested:
                problems.append(f"{entry}: {name} has no {sub}")
                continue
            parser = nested[sub]
        elif choices := _positional_choices(parser):
            head = re.split(r" \[?--", rest, maxsplit=1)[0]
            for part in head.split("|"):
                word = part.split()[0] if part.split() else ""
                shown.setdefault(name, set()).add(word)
                if word not in choices:
                    problems.append(f"{entry}: {word!r} is not one of {name}'s {choices}")
        options = {s: a for a in parser._actions for s in a.option_strings}
        for option, values in re.findall(r"(--[a-z][a-z-]*)(?: ([\w.-]+(?:\|[\w.-]+)+))?", rest):
            action = options.get(option)
            if action is None:
                problems.append(f"{entry}: {name} has no option {option}")
            elif values and action.choices and set(values.split("|")) != set(action.choices):
                problems.append(f"{entry}: {option} takes {sorted(action.choices)}, "
                                f"the table says {values}")
    for name, parser in commands.items():
        every = set(_subparsers(parser)) or set(_positional_choices(parser))
        if every and every != shown.get(name, set()):
            problems.append(f"{name}: the parser has {sorted(every)}, the table "
                            f"{sorted(shown.get(name, set()))}")
    assert problems == []


# -- the quick start and the config example ------------------------------------------------


def test_readme_quick_start_has_two_commands() -> None:
    section = README.split("## Quick start", 1)[1].split("##", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readmes_test_command() -> None:
    """The quick start's `make test` is what CI runs."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == "make test"


def test_readme_config_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = _section(README, "## A short config").split("```yaml\n", 1)[1].split("```", 1)[0]
    for name, value in {"KITE_PASSWORD": "pw", "KITE_API_SECRET": "secret",
                        "KITE_TOTP_SECRET": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                        "TELEGRAM_URL": "tgram://123:abc/456"}.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "config.yaml"
    path.write_text(block)
    path.chmod(0o600)
    loaded = config.load_config(str(path))
    assert [(a.user_id, a.auth) for a in loaded.accounts] == [("AB1234", "connect")]


# -- links -------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _outside_fences(path: Path) -> list[str]:
    lines, fence = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(line)
        if match and (fence is None or match.group(2).startswith(fence)):
            fence = match.group(2) if fence is None else None
            continue
        lines.append("" if fence else line)
    return lines


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _outside_fences(path):
        match = re.match(r"^#{1,6} (.+)$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return frozenset(out)


def test_slug_is_githubs() -> None:
    assert slug("Returns: `report performance`") == "returns-report-performance"
    assert slug("`report tax` and `report holdings --xirr`") == \
        "report-tax-and-report-holdings---xirr"
    assert slug("Accounts joining, missing a session, leaving") == \
        "accounts-joining-missing-a-session-leaving"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    problems = []
    for number, line in enumerate(_outside_fences(page), 1):
        line = re.sub(r"`[^`]*`", "", line)  # a link in a code span is not a link
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            file = (page.parent / file_part).resolve() if file_part else page
            if not file.exists():
                problems.append(f"{page.name}:{number}: {target}: no such file")
            elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
                problems.append(f"{page.name}:{number}: {target}: no such heading")
    assert problems == []


# -- fenced blocks -----------------------------------------------------------------------------


@dataclass
class Block:
    page: Path
    line: int
    info: str
    text: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def blocks(page: Path) -> list[Block]:
    out: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    fence: tuple[int, str, str, str] | None = None  # start, indent, backticks, info
    body: list[str] = []
    for number, line in enumerate(lines, 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence, body = (number, match.group(1), match.group(2), match.group(3).strip()), []
        elif fence is not None and match and match.group(2).startswith(fence[2]) \
                and not match.group(3).strip():
            start, indent, _, info = fence
            before = lines[start - 2] if start >= 2 else ""
            marker = MARKER.match(before)
            out.append(Block(page, start, info,
                             "\n".join(b.removeprefix(indent) for b in body),
                             marker.group(1) if marker else None))
            fence = None
        elif fence is not None:
            body.append(line)
    assert fence is None, f"{page.name}:{fence[0]}: a fence never closed"
    return out


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]


def commands_of(block: Block) -> list[str]:
    """The command lines a block shows: every line of a shell block, the `$ ` lines of
    any other; comments, blank lines and continuation lines left out."""
    language = block.info.split()[0] if block.info else ""
    out = []
    for raw in block.text.splitlines():
        line = raw.strip()
        if language in COMMAND_BLOCKS:
            line = line.removeprefix("$ ")
        elif line.startswith("$ "):
            line = line[2:]
        else:
            continue
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _words(command: str) -> list[str]:
    """The command's words up to the first shell operator (`;`, `&`, `>`, `|`, ...)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # a quote closed on a later line: `sh -c '...`
        tokens = re.sub(r"([;&|<>()])", r" \1 ", command).split()
    words = []
    for word in tokens:
        if word in SHELL_OPERATORS or set(word) <= set(";&|<>()"):
            break
        words.append(word)
    return words


def _parses(argv: list[str]) -> str | None:
    """None when the real parser takes ``argv``; else what it said."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parse_args(build_parser(), argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return err.getvalue().strip().splitlines()[-1]
    return None


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([a-z][\w-]*):", text, re.MULTILINE))


@cache
def recipe_lines() -> frozenset[str]:
    """What `make -n` prints for every target: the commands a recipe runs."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    out: set[str] = set()
    for target in make_targets():
        dry = subprocess.run(["make", "-n", target], capture_output=True, text=True,
                             cwd=ROOT, timeout=60, check=True)
        out.update(line.strip() for line in dry.stdout.splitlines())
    return frozenset(out)


def _check_command(command: str, block: Block) -> str | None:
    words = _words(command)
    if not words:
        return None
    if words[0] == "snapshotter":
        problem = _parses(words[1:])
        return f"{block.where}: `{command}`: {problem}" if problem else None
    if block.marker and block.marker.startswith("illustrative"):
        return None
    if block.marker:  # run by a test, which the next test checks exists
        return None
    if words[0] == "make" and len(words) == 2:
        return None if words[1] in make_targets() else \
            f"{block.where}: `{command}`: no such make target"
    if command in recipe_lines():
        return None
    return (f"{block.where}: `{command}` is not checked: make it a snapshotter or make "
            "command, or mark the block (docs/development.md, Checked docs)")


def test_every_command_shown_runs_or_is_marked() -> None:
    problems = [problem for block in ALL_BLOCKS for command in commands_of(block)
                if (problem := _check_command(command, block))]
    assert problems == []
    assert sum(len(commands_of(b)) for b in ALL_BLOCKS) >= 20  # the checker sees them


def test_the_markers_name_tests_that_exist() -> None:
    marked = [b for b in ALL_BLOCKS if b.marker]
    assert marked, "no block is marked: has the marker changed?"
    for block in marked:
        match = MARKER.match(f"<!-- docs-test: {block.marker} -->")
        assert match
        if match.group(2):
            test_file = ROOT / match.group(2)
            assert test_file.exists(), f"{block.where}: {match.group(2)}"
            assert f"def {match.group(3)}(" in test_file.read_text(), \
                f"{block.where}: {match.group(3)} is not in {match.group(2)}"
    # and a marker is never left dangling away from a fence
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines[:-1], 1):
            if line.strip().startswith("<!-- docs-test:"):
                assert MARKER.match(line), f"{page.name}:{number}: malformed marker"
                assert FENCE.match(lines[number]), f"{page.name}:{number}: no fence after"


def test_a_wrong_command_is_caught() -> None:
    """The checker itself: a renamed option or command, an unknown shell command."""
    block = Block(README_PATH, 1, "sh", "", None)
    assert _check_command("snapshotter run --accout AB1234", block)
    assert _check_command("snapshotter reprot summary", block)
    assert _check_command("snapshotter report summary --format xml", block)
    assert _check_command("rm -rf /tmp/x", block)
    assert _check_command("make no-such-target", block)
    assert _check_command("snapshotter report summary --format csv > out.csv", block) is None
    assert _check_command(".venv/bin/lint-imports", block) is None


SQL_BLOCKS = [b for b in ALL_BLOCKS if b.info.split()[:1] == ["sql"]]


def test_sql_examples_run_on_a_fresh_database(database_url: str) -> None:
    """Every table, view and column the SQL examples name exists, on both databases."""
    assert len(SQL_BLOCKS) >= 5
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            for block in SQL_BLOCKS:
                for statement in filter(str.strip, block.text.split(";")):
                    body = "\n".join(line for line in statement.splitlines()
                                     if not line.strip().startswith("--"))
                    if body.strip():
                        conn.execute(sa.text(body)).fetchall()
    finally:
        engine.dispose()


# -- transcripts run by the tests above ----------------------------------------------------------


CONSOLE = ROOT / "tests" / "data" / "console"


def _transcript(block: Block) -> list[tuple[str, list[str]]]:
    """A console block as (command, the lines it printed)."""
    out: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


def test_console_import_transcripts_run_as_shown(tmp_path: Path) -> None:
    """docs/console-imports.md's imports, its `report tax` of them, then `import forget`,
    on the sample files: the same lines come out."""
    marked = [b for b in blocks(ROOT / "docs" / "console-imports.md")
              if b.marker and "test_console_import_transcripts_run_as_shown" in b.marker]
    order = ["snapshotter import tradebook", "snapshotter report tax",
             "snapshotter import forget"]
    ours = sorted(marked, key=lambda b: [_transcript(b)[0][0].startswith(o)
                                         for o in order].index(True))
    assert len(ours) == 3
    for sample in CONSOLE.iterdir():
        if sample.suffix in (".csv", ".xlsx"):
            shutil.copy(sample, tmp_path / sample.name)
    cfg = write_config(tmp_path / "config.yaml", yaml.safe_load(f"""
        database: {{url: "sqlite:///{tmp_path / 'snapshots.db'}"}}
        state_dir: {tmp_path / 'state'}
        accounts:
          - {{user_id: ZX1234, password: pw, totp_secret: JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP}}
        """))
    for block in ours:
        for command, printed in _transcript(block):
            words = shlex.split(command)
            assert words[0] == "snapshotter", command
            result = run_cli("--config", str(cfg), *words[1:], cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines() == printed, command
