"""The README's configuration table names every variable the settings read,
so an operator never has to read settings.py to find a knob."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_every_environment_variable_of_the_settings_is_in_the_readme_table():
    settings = (ROOT / "sphere_stats" / "settings.py").read_text()
    read = set(re.findall(r"\benv(?:str|int|bool|list|rate)\(\s*\"([A-Z_]+)\"", settings))
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= read
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)`", table, flags=re.MULTILINE))
    assert read - documented == set()
