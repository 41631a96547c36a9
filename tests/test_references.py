"""Citations stay inside the repository and point at something that exists.

Why: comments, configs and docs cite ``docs/reference.md §N`` and the paper's equation numbers so a
reader can follow every reference from a checkout alone. These tests fail when a citation leaves the
repository, names a section that ``docs/reference.md`` does not have, or names an equation it does not
list.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "docs/reference.md"
# spelled in pieces so that this file does not match its own search
OUTSIDE_MARKERS = ("reference" + "-notes", "shared" + "/paper", ".." + "/shared")

NUM = r"\d+(?:\.\d+)*"
# "## 4. Architectures", "### 4.1 ResNet-19": a numbered heading
HEADING = re.compile(rf"^#{{2,6}}\s+({NUM})\.?\s", re.M)
# "- **8.1 Loss.** ...": a numbered list item inside a section
ITEM = re.compile(rf"^\s*[-*]\s+\*\*(\d+\.\d+(?:\.\d+)*)\b", re.M)
# "docs/reference.md §2, §8.2", "docs/reference.md §4.1/§4.2", "docs/reference.md 5.1"
CITATION = re.compile(rf"docs/reference\.md[\s,:]*((?:§\s*)?{NUM}(?:\s*(?:,|/|and|or)\s*§\s*{NUM})*)")
SELF_CITATION = re.compile(rf"§\s*({NUM})")
# "Eq. (8)", "Eq. 8", "Eqs. 1-3, 5, 8, 10", "Eqs. (10)–(11)"
EQUATION_CITATION = re.compile(r"\bEqs?\.\s*\(?\d+\)?(?:\s*(?:[-–,]|and)\s*\(?\d+\)?)*")
EQUATION_ROW = re.compile(r"^\|\s*\((\d+)\)\s*\|", re.M)

# the numbering the code's existing citations use (rewritten mechanically at merge time)
REQUIRED_SECTIONS = (
    [str(n) for n in range(0, 11)]
    + [f"4.{i}" for i in range(1, 5)]
    + ["5.1", "5.2"]
    + [f"8.{i}" for i in range(1, 12)]
)


def reference_text() -> str:
    return (ROOT / REFERENCE).read_text(encoding="utf-8")


def defined_sections(text: str) -> set[str]:
    return set(HEADING.findall(text)) | set(ITEM.findall(text))


def cited_sections(text: str) -> list[str]:
    return [num for chain in CITATION.findall(text) for num in re.findall(NUM, chain)]


def cited_equations(text: str) -> list[int]:
    return [int(n) for match in EQUATION_CITATION.findall(text) for n in re.findall(r"\d+", match)]


def tracked_texts() -> dict[str, str]:
    """Every tracked text file's content (binary and undecodable files skipped)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no tracked-file list")
    texts = {}
    for rel in filter(None, out.decode("utf-8").split("\0")):
        path = ROOT / rel
        if not path.is_file():  # deleted in the work tree but not yet committed
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            texts[rel] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


# -- the parsers themselves (so the repository-wide checks below cannot pass by matching nothing) --

def test_parsers_find_headings_items_citations_and_equations():
    doc = "## 3. MP-Init\n### 4.1 ResNet-19\n- **8.2 Threshold.** text\n- **not** a number\n1. plain item\n"
    assert defined_sections(doc) == {"3", "4.1", "8.2"}
    text = "see docs/reference.md §2, §8.2; also (docs/reference.md §4.1/§4.2) and docs/reference.md 5.1."
    assert cited_sections(text) == ["2", "8.2", "4.1", "4.2", "5.1"]
    assert cited_equations("Eqs. 1-3, 5, 8, 10 and paper Eq. (11); Eq. 4: S") == [1, 3, 5, 8, 10, 11, 4]


# -- docs/reference.md has the shape the rest of the repository relies on ----------------------------

def test_reference_keeps_the_section_numbering():
    missing = sorted(set(REQUIRED_SECTIONS) - defined_sections(reference_text()), key=lambda s: [int(p) for p in s.split(".")])
    assert not missing, f"{REFERENCE} lacks sections {missing}"


def test_reference_lists_the_papers_eleven_equations():
    text = reference_text()
    assert re.search(r"^## The paper\s*$", text, re.M), f"{REFERENCE} has no 'The paper' section"
    assert sorted(int(n) for n in EQUATION_ROW.findall(text)) == list(range(1, 12))


def test_reference_cites_only_its_own_sections():
    text = reference_text()
    defined = defined_sections(text)
    dangling = sorted({n for n in SELF_CITATION.findall(text) if n not in defined})
    assert not dangling, f"{REFERENCE} cites §{dangling}, which it does not define"


# -- the rest of the repository -------------------------------------------------------------------

def test_every_cited_reference_section_exists():
    defined = defined_sections(reference_text())
    bad = [
        f"{rel}: docs/reference.md §{num}"
        for rel, text in tracked_texts().items()
        for num in cited_sections(text)
        if num not in defined
    ]
    assert not bad, "citations of sections docs/reference.md does not have:\n" + "\n".join(bad)


def test_every_cited_paper_equation_is_listed():
    listed = {int(n) for n in EQUATION_ROW.findall(reference_text())}
    bad = [
        f"{rel}: Eq. {n}"
        for rel, text in tracked_texts().items()
        if rel != REFERENCE
        for n in cited_equations(text)
        if n not in listed
    ]
    assert not bad, "equation numbers the paper (as listed in docs/reference.md) does not have:\n" + "\n".join(bad)


def test_no_citation_leaves_the_repository():
    offenders = [
        f"{rel}:{lineno}: {line.strip()}"
        for rel, text in tracked_texts().items()
        if rel != REFERENCE
        for lineno, line in enumerate(text.splitlines(), 1)
        if any(marker in line for marker in OUTSIDE_MARKERS)
    ]
    assert not offenders, f"{len(offenders)} lines cite files outside the repository:\n" + "\n".join(offenders)
