"""The README and the pages under docs/ as a reader follows them: every relative link and image resolves, anchors
included; the README stays a front door (short, the quick start and one's own model near the top); no page points
at files a user of the repository does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

README_MAX_LINES = 250
QUICK_START = ("./dev study", "./dev test")
# One's own model: the command that runs a study on it, within the first screens of the README.
OWN_MODEL = "opsearch run --model"
OWN_MODEL_WITHIN_LINES = 60
# The project's own assets sit beside its checkout; a user of the repository has no such folder.
NOT_A_USERS_PATH = "../shared"

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# [text](target) and ![alt](target); the text may span lines and hold one level of brackets.
_LINK = re.compile(r"(!?)\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans: where a link is a link."""
    kept: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line)
    return _CODE_SPAN.sub("", "\n".join(kept))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation but hyphens and underscores removed,
    each space a hyphen."""
    text = _INLINE_LINK.sub(r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file, with GitHub's -1, -2, ... for repeated ones."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[bool, str]]:
    """(is an image, target) for every link in a Markdown file's prose."""
    return [(bang == "!", target) for bang, target in _LINK.findall(prose(path.read_text(encoding="utf-8")))]


def broken_links(path: Path) -> list[str]:
    """What is wrong with each relative link of a page: a missing file, or an anchor no heading has."""
    problems: list[str] = []
    for is_image, target in links(path):
        if _SCHEME.match(target):
            continue  # a web address: not this repository's to check
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        what = "image" if is_image else "link"
        if not resolved.exists():
            problems.append(f"{_rel(path)}: {what} '{target}': there is no file {file_part!r}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{_rel(path)}: {what} '{target}': {_rel(resolved)} has no heading whose anchor is "
                            f"'{anchor}'")
    return problems


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("## `opsearch inspect`", "opsearch-inspect"),
        ("## Honest answers: intervals on both objectives, and declared ties",
         "honest-answers-intervals-on-both-objectives-and-declared-ties"),
        ("## How reproducible is a speedup?", "how-reproducible-is-a-speedup"),
        ("### Against optimum's presets, in the same study", "against-optimums-presets-in-the-same-study"),
        ("## MiniLM SST-2: one study of 40 trials, then 3 more", "minilm-sst-2-one-study-of-40-trials-then-3-more"),
        ("## fp32_top and `nodes_to_exclude`", "fp32_top-and-nodes_to_exclude"),
    ],
)
def test_slug_is_githubs(heading: str, expected: str) -> None:
    match = _HEADING.match(heading)
    assert match is not None
    assert slug(match.group(2)) == expected


def test_repeated_headings_get_numbered_anchors(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n## Results\n\n```\n# not a heading\n```\n\n## Results\n", encoding="utf-8")
    assert anchors(page) == {"notes", "results", "results-1"}


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#a-section) [missing file](nowhere.md) [missing anchor](other.md#no-section)\n"
        "[on this page](#page) [not here](#nothing) ![picture](missing.png) [web](https://optuna.org)\n"
        "`[in code](nowhere-either.md)`\n\n```\n[in a block](nor-here.md)\n```\n",
        encoding="utf-8",
    )
    problems = broken_links(page)
    assert len(problems) == 4, problems
    for target in ("nowhere.md", "other.md#no-section", "#nothing", "missing.png"):
        assert any(f"'{target}'" in problem for problem in problems), (target, problems)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_link_resolves(page: Path) -> None:
    assert links(page), f"{_rel(page)} links nowhere: a page of these docs should link to the others"
    problems = broken_links(page)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_page_names_the_projects_own_assets_folder(page: Path) -> None:
    lines = [f"{_rel(page)}:{number}: {line.strip()}"
             for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
             if NOT_A_USERS_PATH in line]
    assert not lines, (f"name what the asset is and how to point opsearch at one's own copy instead of "
                       f"{NOT_A_USERS_PATH!r}:\n" + "\n".join(lines))


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, over {README_MAX_LINES}: move the depth into docs/")
    stripped = [line.strip() for line in lines]
    for command in QUICK_START:
        assert any(line.startswith(command) for line in stripped), f"README.md lost the quick start's {command!r}"
    first = [number for number, line in enumerate(stripped, start=1) if line.startswith(OWN_MODEL)]
    assert first and first[0] <= OWN_MODEL_WITHIN_LINES, (
        f"README.md: {OWN_MODEL!r} should come within its first {OWN_MODEL_WITHIN_LINES} lines "
        f"(found at {first or 'none'})")


def test_the_readme_maps_every_docs_page() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve()
              for is_image, target in links(README) if not is_image and not _SCHEME.match(target)}
    unlinked = [_rel(page) for page in PAGES[1:] if page.resolve() not in linked]
    assert not unlinked, f"README.md does not link to {unlinked}"


def _module_table() -> str:
    text = (DOCS / "library.md").read_text()
    start = text.index("### The modules")
    return text[text.index("```", start):text.index("```", text.index("```", start) + 3)]


def test_the_module_table_names_every_module_and_no_other() -> None:
    """The library page's one description of the layout stays the layout: a module added, moved or removed fails
    here until the table says so."""
    package = ROOT / "opsearch"
    modules = {str(p.relative_to(package)) for p in package.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")} | {"config/default.toml"}
    listed, folder = set(), ""
    for line in _module_table().splitlines()[2:]:  # after the fence and "opsearch/"
        name = line.split()[0] if line.strip() else ""
        if name.endswith("/"):
            folder = name
        elif name.endswith((".py", ".toml")):
            listed.add(folder + name if line.startswith("    ") else name)
    listed.discard("__init__.py")
    assert listed == modules, (sorted(modules - listed), sorted(listed - modules))
