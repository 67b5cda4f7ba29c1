"""The documentation stays true to the code: reference pages carry no dates (measurements live in
docs/results/), every page is reachable from the README, the README's links resolve, and the
figures that commands compute (dry-run totals, trial counts) equal what the commands print.
Fast: no Ray, no MLflow, no training (a dry run plans, it starts nothing)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
# Rendered into the site as docs/cluster/launchers.md, so held to the same rule.
RENDERED_ELSEWHERE = [ROOT / "cluster" / "README.md"]

MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
         r"Sep(?:tember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
DATE = re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b"  # 2026-11-26
                  rf"|\b\d{{1,2}} {MONTH} (?:19|20)\d\d\b"  # 26 November 2026
                  rf"|\b{MONTH} \d{{1,2}},? (?:19|20)\d\d\b")  # November 26, 2026
LINK = re.compile(r"\]\(([^)\s]+)\)")


def reference_pages() -> list[Path]:
    """Every page under docs/ but docs/results/, and what the site renders besides."""
    pages = [p for p in DOCS.rglob("*.md") if RESULTS not in p.parents]
    return sorted(pages) + RENDERED_ELSEWHERE


def test_the_date_pattern_finds_dates() -> None:
    """The check below would catch each way a date is written (and not a paper's year)."""
    for text in ("measured 2026-11-26", "on 3 December 2026", "on Dec 3, 2026"):
        assert DATE.search(text), text
    for text in ("Grill et al. 2020", "arXiv 2006.07733", "2,000 JPEGs", "Table 5a"):
        assert not DATE.search(text), text


@pytest.mark.parametrize("page", reference_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_reference_pages_carry_no_date(page: Path) -> None:
    """A dated measurement belongs in docs/results/ (with its machine, load and commit); a
    reference page links to it instead of restating it."""
    found = [f"{page.relative_to(ROOT)}:{n}: {m.group(0)}"
             for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
             for m in DATE.finditer(line)]
    assert not found, "dates outside docs/results/ (move the measurement there):\n" + \
        "\n".join(found)


def local_links(page: Path) -> list[tuple[str, Path]]:
    """The page's relative links: (as written, the file they point at)."""
    links = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL, or an anchor on the same page
        links.append((target, (page.parent / target.split("#")[0]).resolve()))
    return links


def test_the_readme_links_resolve() -> None:
    """Every relative link of the README opens a file of the repository (GitHub renders it;
    mkdocs checks the docs pages' own links)."""
    broken = [target for target, path in local_links(ROOT / "README.md") if not path.exists()]
    assert not broken, f"README.md links to missing files: {broken}"


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    """Following links from the README reaches every page under docs/."""
    seen: set[Path] = set()
    todo = [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        for _, path in local_links(page):
            if path.suffix == ".md" and path.exists() and path not in seen:
                seen.add(path)
                todo.append(path)
    unreachable = sorted(str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md") if p not in seen)
    assert not unreachable, f"docs pages no link from the README leads to: {unreachable}"


def test_the_readme_stays_short() -> None:
    """Read in five minutes: at most 200 lines, the two set-up commands first."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines"
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]


def quoted_commands() -> list[tuple[str, int, str, list[str]]]:
    """Each `$ byol-ray ...` line in a code block of the docs, with the output lines quoted
    under it: (page, line number, command, quoted lines)."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        current = None
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```"):
                current = None
            elif line.startswith("$ byol-ray "):
                current = (str(page.relative_to(ROOT)), n, line[2:], [])
                found.append(current)
            elif current is not None:
                current[3].append(line)
    return found


def printed(command: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What `command` (`byol-ray ARGS [| tail -N]`) prints, run in this process."""
    shown, _, pipe = command.partition("|")
    argv = shlex.split(shown)[1:]
    assert "--dry-run" in argv, f"only dry runs are run here (they start nothing): {command}"
    from byol_ray.cli.main import main  # the date and link checks need no torch

    capsys.readouterr()
    assert main(argv) == 0, command
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    if pipe.strip():
        tail = re.fullmatch(r"tail -(\d+)", pipe.strip())
        assert tail, f"only '| tail -N' is understood: {command}"
        lines = lines[-int(tail.group(1)):]
    return lines


def matches(quoted: str, lines: list[str]) -> bool:
    """A quoted line equals a printed one, spaces aside; one that ends in '...' or '…' quotes
    the start of a printed line."""
    quoted = " ".join(quoted.split())
    cut = re.sub(r"\s*(\.\.\.|…)$", "", quoted)
    normal = [" ".join(line.split()) for line in lines]
    return any(line.startswith(cut) if cut != quoted else line == quoted for line in normal)


COMMANDS = quoted_commands()


def test_the_docs_quote_dry_runs() -> None:
    """The cost totals are quoted somewhere (so the check below checks something)."""
    assert any("imagenet-300" in command for _, _, command, _ in COMMANDS)


@pytest.mark.parametrize("page,line,command,quoted", COMMANDS,
                         ids=[f"{p}:{n}" for p, n, _, _ in COMMANDS])
def test_quoted_dry_runs_print_what_the_docs_say(page: str, line: int, command: str,
                                                 quoted: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Whoever changes what a dry run prints (its pricing, its trials) updates the page."""
    lines = printed(command, capsys)
    wrong = [q for q in quoted if q.strip() not in ("", "...", "…") and not matches(q, lines)]
    assert not wrong, (f"{page}:{line} quotes lines `{command}` no longer prints:\n"
                       + "\n".join(wrong) + "\nit prints:\n" + "\n".join(lines[-5:]))


def planned_trials(seeds: int, capsys: pytest.CaptureFixture[str]) -> int:
    """How many trials `make demo`'s command plans at `seeds` (twins included)."""
    lines = printed(f"byol-ray reproduce --preset cpu-mini --seeds {seeds} --dry-run", capsys)
    return sum(bool(re.match(r"\S+-s\d+\s|random-init\s", line)) for line in lines)


def test_the_readme_counts_the_demos_trials(capsys: pytest.CaptureFixture[str]) -> None:
    """'= 31 trials', 'the 8 that repeat' and '(46 trials)' are what the dry runs plan."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    two = int(re.search(r"= (\d+) trials", readme).group(1))
    twins = int(re.search(r"the (\d+) that repeat", readme).group(1))
    three = int(re.search(r"complete miniature \((\d+) trials\)", readme).group(1))
    run = printed("byol-ray reproduce --preset cpu-mini --seeds 2 --dry-run | tail -1", capsys)
    assert (two, three) == (planned_trials(2, capsys), planned_trials(3, capsys))
    assert run[0].startswith(f"all grids: {two - twins} trials")
