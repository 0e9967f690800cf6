"""The protocol notes the code and docs cite exist, and so do the sections they cite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "kite-protocol.md"
CITATION = re.compile(r"kite-protocol\.md`*\s*(?:§\s*(\d+)(?:-(\d+))?|\(sections? (\d+)"
                      r"(?:-(\d+))?)?")


def _cited_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "snapshotter").rglob("*.py")),
             *sorted((ROOT / "migrations").rglob("*.py")),
             *sorted(p for p in (ROOT / "docs").glob("*.md") if p != DOC)]
    return [f for f in files if "kite-protocol.md" in f.read_text(encoding="utf-8")]


def test_the_doc_exists_with_numbered_sections() -> None:
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", DOC.read_text(), re.MULTILINE)}
    assert sections == set(range(1, 9))


def test_every_citation_names_a_section_that_exists() -> None:
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", DOC.read_text(), re.MULTILINE)}
    files = _cited_files()
    assert {f.name for f in files} >= {"README.md", "auth.py", "protocol.py", "_http.py"}
    for path in files:
        for match in CITATION.finditer(path.read_text(encoding="utf-8")):
            numbers = [int(n) for n in match.groups() if n]
            if numbers:
                cited = set(range(numbers[0], numbers[-1] + 1))
                assert cited <= sections, f"{path}: {match.group(0)}"


def test_no_citation_of_a_file_the_repository_lacks() -> None:
    for path in [ROOT / "README.md", *(ROOT / "snapshotter").rglob("*.py"),
                 *(ROOT / "docs").rglob("*.md")]:
        assert "PROTOCOL.md" not in path.read_text(encoding="utf-8"), path
