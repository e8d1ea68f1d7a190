"""Every link a template writes comes from the URLconf ({% url %}, or
reverse() in the view) and every asset from {% static %}: a URL moved in one
urls.py then moves on every page instead of leaving a dead link behind."""

import re
from pathlib import Path

import pytest
from django.template import engines

ROOT = Path(__file__).resolve().parent.parent

# A root-relative URL written out in an attribute that fetches or follows it:
# href="/top/", action='/search/', hx-get="/search/suggest/", src="/static/…",
# data-page-url="/facilities/". "//host/…" is a different mistake (a CDN).
HARD_CODED = re.compile(
    r"""\b(href|src|srcset|action|formaction|poster|hx-[a-z-]+|data-[a-z-]*url)"""
    r"""\s*=\s*["']/(?!/)""",
    flags=re.IGNORECASE,
)


def project_templates() -> list[Path]:
    """The templates this project ships: the project directory and each of
    its apps' templates/ (not those of installed packages such as admin)."""
    dirs = engines["django"].template_dirs
    ours = [Path(d) for d in dirs if Path(d).is_relative_to(ROOT) and ".venv" not in Path(d).parts]
    return sorted({p for d in ours for p in d.rglob("*.html")})


def hard_coded_urls(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if HARD_CODED.search(line)]


@pytest.mark.parametrize("template", project_templates(), ids=lambda p: str(p.relative_to(ROOT)))
def test_it_writes_no_root_relative_url_by_hand(template):
    assert hard_coded_urls(template.read_text()) == []


def test_the_check_sees_the_templates_and_the_links_it_refuses():
    """A pattern or a directory list that found nothing would pass every
    template without checking anything."""
    names = {str(p.relative_to(ROOT)) for p in project_templates()}
    assert {"templates/base.html", "templates/audit/explorer.html"} <= names
    refused = [
        '<a href="/top/">',
        "<form action='/search/'>",
        '<input hx-get="/search/suggest/">',
        '<script src="/static/js/charts.js">',
        '<aside data-page-url="/facilities/">',
        '<a class="brand" href="/">',
    ]
    assert [hard_coded_urls(line) for line in refused] == [[line] for line in refused]
    allowed = [
        "<a href=\"{% url 'top' %}\">",
        '<a href="?page=2">',
        '<a href="#main">',
        '<a href="https://example.org/">',
        "<script src=\"{% static 'js/charts.js' %}\">",
    ]
    assert [hard_coded_urls(line) for line in allowed] == [[] for _ in allowed]
