"""Every relative link in the README and docs/ leads somewhere: a reader who
clicks one on GitHub lands on a file that exists, and at the heading it
names."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# [text](target) and ![alt](target); a title after the target is allowed.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)


def links(page: Path) -> list[str]:
    """The link targets of a page, outside its code blocks and inline code."""
    text = FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(page):
    broken = []
    for target in filter(relative, links(page)):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT)}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert broken == []


def test_the_checks_see_the_links():
    """The pages link to each other, so a pattern that found no link would
    pass every page without checking anything."""
    readme = links(ROOT / "README.md")
    assert "docs/configuration.md" in readme
    assert "docs/img/overview.png" in readme
    assert slug("gunicorn's workers: the multiprocess directory") == (
        "gunicorns-workers-the-multiprocess-directory"
    )


def test_every_doc_page_is_reachable_from_the_readme():
    """A page nobody links to is a page nobody reads."""
    reached = {
        (ROOT / target.partition("#")[0]).resolve()
        for target in links(ROOT / "README.md")
        if relative(target)
    }
    for page in PAGES[1:]:
        reached |= {
            (page.parent / target.partition("#")[0]).resolve()
            for target in links(page)
            if relative(target) and target.partition("#")[0]
        }
    unread = [str(p.relative_to(ROOT)) for p in PAGES[1:] if p.resolve() not in reached]
    assert unread == []
