"""The demo app stands at the top of the import graph: the portal's own apps
never import it, so the demo can change (or be left out) without touching them."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE_APPS = ("sphere_stats", "audit", "dashboards", "facilities")


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_no_core_app_imports_the_demo():
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for app in CORE_APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        for module in sorted(imported_modules(path))
        if module == "demo" or module.startswith("demo.")
    ]
    assert offenders == []


def test_the_demo_commands_belong_to_the_demo_app():
    from django.core.management import get_commands

    commands = get_commands()
    for name in ("seed_demo", "seed_facilities", "demo_reporter", "demo_setup"):
        assert commands[name] == "demo", name


# What each app may not import: the ground floor (audit) knows nothing of
# the apps that read it, and the outbox (notify) nothing of what uses it.
ABOVE = {
    "audit": ("dashboards", "facilities", "alerts", "notify", "streams", "demo"),
    "notify": ("alerts", "streams", "dashboards", "demo"),
    "streams": ("alerts", "notify", "dashboards", "facilities", "demo"),
}


def test_each_app_imports_nothing_that_stands_on_it():
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for app, above in ABOVE.items()
        for path in sorted((ROOT / app).rglob("*.py"))
        for module in sorted(imported_modules(path))
        if module.split(".")[0] in above
    ]
    assert offenders == []
