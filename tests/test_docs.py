"""Generated documentation stays current."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_programs_table_is_generated_and_current():
    spec = importlib.util.spec_from_file_location("programs_table", ROOT / "scripts" / "programs_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "programs.md").read_text() == module.table(), (
        "docs/programs.md is stale: run python scripts/programs_table.py --write docs/programs.md"
    )


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in readme
