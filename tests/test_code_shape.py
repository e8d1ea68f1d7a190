"""The application code keeps a shape a reader can hold: no module over
MAX_MODULE_LINES lines and no function over MAX_FUNCTION_LINES, so a change
starts from a page of code, not from a thousand lines of it. Migrations are
left out: each is a record of its day, not code that changes."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("sphere_stats", "audit", "dashboards", "facilities", "notify", "alerts", "streams", "demo")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    """Every Python module of the apps that exist, migrations left out."""
    return [
        path
        for app in APPS
        if (ROOT / app).is_dir()
        for path in sorted((ROOT / app).rglob("*.py"))
        if "migrations" not in path.relative_to(ROOT).parts
    ]


def oversized(path: Path) -> list[str]:
    """The module itself, if too long, and each function in it that is."""
    source = path.read_text()
    name = path.relative_to(ROOT)
    found = []
    lines = source.count("\n")
    if lines > MAX_MODULE_LINES:
        found.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{name}:{node.lineno} {node.name}: {length} lines "
                    f"(at most {MAX_FUNCTION_LINES})"
                )
    return found


def test_the_apps_have_modules_to_measure():
    # A wrong root would find nothing and pass whatever the code's shape.
    assert any(path.parts[-2:] == ("audit", "models.py") for path in modules())


def test_no_module_or_function_is_too_long_to_read():
    found = [problem for path in modules() for problem in oversized(path)]
    assert not found, "too long to read at a glance:\n" + "\n".join(found)
