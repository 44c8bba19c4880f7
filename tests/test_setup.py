"""The test suite's own setup: system tools skip with a reason (fail in CI), the fast subset."""

from pathlib import Path

import pytest

from conftest import REQUIRE_SYSTEM_TOOLS, system_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("commands, install", [
    (("chromium", "chromedriver"), "apt-get install chromium chromium-driver"),
    (("dot",), "apt-get install graphviz"),
])
def test_a_missing_system_tool_skips_saying_how_to_install_it(commands, install, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.delenv(REQUIRE_SYSTEM_TOOLS, raising=False)
    with pytest.raises(pytest.skip.Exception, match=install) as skipped:
        system_tool(*commands)
    assert " and ".join(commands) in str(skipped.value)
    monkeypatch.setenv(REQUIRE_SYSTEM_TOOLS, "1")  # CI: a missing tool fails the test
    with pytest.raises(pytest.fail.Exception, match=f"{install}.*{REQUIRE_SYSTEM_TOOLS}=1"):
        system_tool(*commands)


def test_ci_requires_every_system_tool():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert f"export {REQUIRE_SYSTEM_TOOLS}=1" in lines[:-1]  # before the test command


def test_the_readme_gives_the_fast_subset_and_it_is_a_registered_marker():
    readme = (ROOT / "README.md").read_text()
    assert '.venv/bin/python -m pytest -q -m "not slow"' in readme
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"slow: ' in pyproject


def test_every_package_folder_is_installed():
    """pyproject.toml lists the packages by name (the programs folder is mapped in): a new
    folder left out of the list would import from a checkout and be missing from a wheel."""
    import fnmatch
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    folders = {".".join(path.parent.relative_to(ROOT).parts)
               for path in (ROOT / "rasp_compiler").rglob("__init__.py")}
    assert folders <= listed, f"add to pyproject.toml's packages: {sorted(folders - listed)}"
    patterns = config["tool"]["setuptools"]["package-data"]["rasp_compiler.explorer"]
    assets = [f"assets/{path.name}" for path in (ROOT / "rasp_compiler/explorer/assets").iterdir()]
    missing = [a for a in assets if not any(fnmatch.fnmatch(a, p) for p in patterns)]
    assert not missing, f"explorer assets not in pyproject.toml's package-data: {missing}"
