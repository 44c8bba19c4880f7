"""Documentation stays current, and every Python example in it runs as a user would run it.

Doc examples: every ```python block of README.md and docs/*.md runs; the blocks of
one document run in order in one namespace, so a later block may use an earlier
block's names. A document whose examples define test functions (`def test_...`,
e.g. hypothesis property tests) is written out as one test file into an empty
directory (no conftest.py, an empty pytest.ini, so none of this project's
pytest or hypothesis settings apply) and run by pytest in a new process, as in a
user's project. The other documents run in this process, in a temporary working
directory (examples may write files).

Conventions for doc authors:
- A block that cannot run (an illustrative fragment) gets the line
  `<!-- not-run: why -->` right before its opening fence. Use it sparingly: a
  block that can be made runnable should be.
- A claimed result is checked: on a one-line statement `expr  # [...]` or
  `print(expr)  # [...]` whose comment starts with a list, tuple, dict or set
  literal, `expr` must equal that literal (text after the literal is free:
  `# [[1, 3, 4], [1, 2]], batched`).
- A shown output is checked: a non-Python fence right after `<!-- shows: WHAT -->`
  must be, line for line (trailing spaces aside), what WHAT gives where it stands
  among the document's Python blocks: `printed` (what the Python block just before
  printed), `$ rasp-compiler ARGS` (the command line's standard output), or a Python
  expression (its `str()`, evaluated in the blocks' namespace). Only documents run
  in this process (no `def test_...`) may show outputs.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from rasp_compiler.errors import CompileWarning

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


def test_readme_commands_on_the_example_program_file_run_as_written():
    """Every README command line that names docs/examples/ runs from the repository's root,
    as printed, and gives the output its comment claims (`# ...: ['b', 'c', 'a']`)."""
    import ast

    commands = [line for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("rasp-compiler ") and "docs/examples/" in line]
    assert commands, "the README shows no command on docs/examples/"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for line in commands:
        command, _, comment = line.partition("#")
        result = subprocess.run(
            [sys.executable, "-m", "rasp_compiler.cli", *shlex.split(command)[1:]],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        claim = comment.rpartition(": ")[2].strip()
        if claim.startswith("["):
            assert ast.literal_eval(result.stdout.strip()) == ast.literal_eval(claim), line


# ---------------------------------------------------------------------- doc examples

PYTHON_FENCE_TAGS = {"python", "py"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(.*?)\s*-->\s*$")
SHOWS = re.compile(r"^\s*<!--\s*shows:\s*(.*?)\s*-->\s*$")
CLAIM_CHECKER = "_doc_claim"


@dataclass(frozen=True)
class Example:
    """One fenced Python block: where it is, its code, and why it does not run (if so)."""

    document: Path
    first_line: int  # 1-based line, in the document, of the block's first code line
    code: str
    not_run: str | None


@dataclass(frozen=True)
class Shown:
    """A fenced output block after `<!-- shows: what -->`: what it claims to be the output of."""

    document: Path
    first_line: int  # 1-based line, in the document, of the block's first line
    text: str
    what: str


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def examples_in(document: Path) -> list[Example]:
    """Every fenced block tagged python, in order, with its not-run marker if it has one."""
    return [block for block in blocks_in(document) if isinstance(block, Example)]


def blocks_in(document: Path) -> list[Example | Shown]:
    """The python blocks and the shown outputs, in document order."""
    lines = document.read_text().splitlines()
    found = []
    start = 0
    while start < len(lines):
        opening = FENCE.match(lines[start])
        if not opening:
            start += 1
            continue
        fence, tag = opening.group(1), opening.group(2).lower()
        end = start + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        text = "\n".join(lines[start + 1: end])
        if tag in PYTHON_FENCE_TAGS:
            marker = NOT_RUN.match(lines[start - 1]) if start else None
            found.append(Example(document, start + 2, text, marker.group(1) if marker else None))
        elif start and SHOWS.match(lines[start - 1]):
            found.append(Shown(document, start + 2, text, SHOWS.match(lines[start - 1]).group(1)))
        start = end + 1
    return found


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and set(stripped) == {fence[0]}


def stray_not_run_markers(document: Path) -> list[str]:
    """not-run markers that are not right before a python fence, or give no reason;
    shows markers that are not right before a fence of another language."""
    lines = document.read_text().splitlines()
    problems = []
    for number, line in enumerate(lines, 1):
        if SHOWS.match(line):
            following = FENCE.match(lines[number]) if number < len(lines) else None
            if following is None or following.group(2).lower() in PYTHON_FENCE_TAGS:
                problems.append(f"{_relative(document)}:{number}: shows marker not right before "
                                "an output fence (``` or ```text)")
            continue
        marker = NOT_RUN.match(line)
        if marker is None:
            if "<!--" in line and "not-run" in line:
                problems.append(f"{_relative(document)}:{number}: malformed marker, write "
                                "<!-- not-run: reason -->")
            continue
        following = FENCE.match(lines[number]) if number < len(lines) else None
        if following is None or following.group(2).lower() not in PYTHON_FENCE_TAGS:
            problems.append(f"{_relative(document)}:{number}: not-run marker not right before "
                            "a ```python fence")
        if len(marker.group(1)) < 10:
            problems.append(f"{_relative(document)}:{number}: not-run marker needs a reason")
    return problems


def _claimed_literal(comment: str) -> str | None:
    """The container literal a comment starts with (`# [[1, 3], [2]], batched`), as source."""
    text = comment.lstrip("#").strip()
    if not text or text[0] not in "[({":
        return None
    for end, char in enumerate(text):
        if char in ")]}":
            try:
                ast.literal_eval(text[: end + 1])
            except (ValueError, SyntaxError):
                continue
            return text[: end + 1]
    return None


def checked_source(example: Example) -> str:
    """The block's code, padded so its line numbers are the document's, claims made checks.

    A claim line `expr  # [1, 2]` becomes `_doc_claim("doc:line", expr, [1, 2])` on the
    same line; `print(expr)  # ...` checks `expr`.
    """
    code = example.code
    lines = code.splitlines()
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(code + "\n").readline):
        if token.type == tokenize.COMMENT:
            literal = _claimed_literal(token.string)
            if literal is not None:
                comments[token.start[0]] = literal
    for statement in ast.parse(code).body:
        if (not isinstance(statement, ast.Expr) or statement.lineno != statement.end_lineno
                or statement.lineno not in comments):
            continue
        value = statement.value
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id == "print" and len(value.args) == 1 and not value.keywords):
            value = value.args[0]
        line = statement.lineno
        where = f"{_relative(example.document)}:{example.first_line + line - 1}"
        expression = ast.get_source_segment(code, value)
        lines[line - 1] = (" " * statement.col_offset
                           + f"{CLAIM_CHECKER}({where!r}, {expression}, {comments[line]})")
    return "\n" * (example.first_line - 1) + "\n".join(lines) + "\n"


# One line, so a generated test file can define it on line 1 (a block starts at line 2 or
# later) and every block keeps its line numbers from the document.
CLAIM_CHECKER_LINE = (
    f"def {CLAIM_CHECKER}(where, got, claimed): "
    "got = got.tolist() if hasattr(got, 'tolist') else got; "
    "assert got == claimed, f'{where}: the comment claims {claimed!r}, the code gives {got!r}'"
)

# Appended to every generated user test file: proves the run saw none of this project's
# settings (tests/conftest.py loads a profile with deadline=None).
CLEAN_PROJECT_GUARD = '''

def test_zz_this_project_runs_with_hypothesis_defaults():
    import datetime
    from hypothesis import settings
    assert settings().deadline == datetime.timedelta(milliseconds=200), settings()
    assert settings().max_examples == 100, settings()
'''


def count_test_functions(examples: list[Example]) -> int:
    """Top-level `def test_...` in the blocks: pytest must report this many passed."""
    return sum(1 for example in examples for node in ast.parse(example.code).body
               if isinstance(node, ast.FunctionDef) and node.name.startswith("test"))


def run_in_process(blocks: list[Example | Shown], check_shown=None) -> dict:
    """exec the Python blocks in order in one namespace (tracebacks point into the
    markdown), checking each shown output where it stands (`check_shown(shown, output)`)."""
    check_shown = check_shown or globals()["check_shown"]
    namespace = {"__name__": "__doc_example__"}
    exec(CLAIM_CHECKER_LINE, namespace)
    printed = ""
    with warnings.catch_warnings():
        # A CompileWarning is documented behaviour a user sees printed, not an error.
        warnings.filterwarnings("ignore", category=CompileWarning)
        for block in blocks:
            if isinstance(block, Shown):
                check_shown(block, output_of(block.what, namespace, printed))
                continue
            with contextlib.redirect_stdout(io.StringIO()) as out:
                exec(compile(checked_source(block), str(block.document), "exec"), namespace)
            printed = out.getvalue()
    return namespace


def output_of(what: str, namespace: dict, printed: str) -> str:
    """What a shows marker names: `printed`, `$ rasp-compiler ARGS` or an expression."""
    if what == "printed":
        return printed
    if what.startswith("$ "):
        from rasp_compiler.cli import main

        program, *args = shlex.split(what[2:])
        assert program == "rasp-compiler", f"shows: {what!r}: only rasp-compiler commands run"
        with contextlib.redirect_stdout(io.StringIO()) as out:
            status = main(args)
        assert status == 0, f"shows: {what!r} exited with status {status}"
        return out.getvalue()
    return str(eval(what, namespace))


def _normalised(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def check_shown(shown: Shown, output: str) -> None:
    want, got = _normalised(shown.text), _normalised(output)
    if want != got:
        diff = "\n".join(difflib.unified_diff(want, got, "the document", "the output", lineterm=""))
        raise AssertionError(f"{_relative(shown.document)}:{shown.first_line}: the block shown "
                             f"as the output of {shown.what!r} is stale; paste the output in (python "
                             f"tests/test_docs.py --update {_relative(shown.document)}):\n{diff}")


def update_shown_outputs(document: Path) -> int:
    """Rewrite every shown output of `document` with what it now is; the number changed."""
    lines = document.read_text().splitlines()
    changes = []

    def record(shown: Shown, output: str) -> None:
        if _normalised(shown.text) != _normalised(output):
            changes.append((shown, _normalised(output)))

    run_in_process([b for b in blocks_in(document) if not getattr(b, "not_run", None)], record)
    for shown, output in reversed(changes):
        start = shown.first_line - 1
        lines[start: start + len(shown.text.splitlines())] = output
    document.write_text("\n".join(lines) + "\n")
    return len(changes)


def write_user_test_file(examples: list[Example], directory: Path) -> Path:
    """The blocks as one test file, each block at its line in the document (so tracebacks
    give the markdown's lines), plus an empty pytest.ini: a user's clean project."""
    path = directory / ("test_" + re.sub(r"\W", "_", examples[0].document.stem) + "_examples.py")
    lines = [CLAIM_CHECKER_LINE]
    for example in examples:
        lines += [""] * (example.first_line - 1 - len(lines))
        lines += checked_source(example).splitlines()[example.first_line - 1:]
    path.write_text("\n".join(lines) + "\n" + CLEAN_PROJECT_GUARD)
    (directory / "pytest.ini").write_text("[pytest]\n")
    return path


def run_as_user_test_file(examples: list[Example], directory: Path) -> subprocess.CompletedProcess:
    """Run the blocks' test file with pytest in `directory`, in a new process.

    No conftest.py, none of this project's pytest options (filterwarnings, -n) and
    hypothesis's default settings (deadline 200 ms; named explicitly, because hypothesis
    loads its "ci" profile, without a deadline, when it sees a CI environment variable);
    `--hypothesis-seed` only makes the drawn inputs repeatable. The child imports this checkout's rasp_compiler.
    """
    path = write_user_test_file(examples, directory)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "HYPOTHESIS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0",
         "--hypothesis-profile=default", path.name],
        cwd=directory, env=env, capture_output=True, text=True, timeout=600,
    )


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


DOCUMENTS_WITH_EXAMPLES = [document for document in _documents()
                           if any(not e.not_run for e in examples_in(document))]


SLOW_DOCUMENTS = {"verification.md", "superposition.md"}  # 10-15 s each (training, pytest)


def _document_param(document: Path):
    """docs/export.md imports TransformerLens: it runs on the worker of the export tests."""
    marks = [pytest.mark.xdist_group("export")] if document.name == "export.md" else []
    if document.name in SLOW_DOCUMENTS:
        marks.append(pytest.mark.slow)
    return pytest.param(document, marks=marks, id=_relative(document))


@pytest.mark.parametrize("document", [_document_param(d) for d in DOCUMENTS_WITH_EXAMPLES])
def test_document_examples_run_as_a_user_would(document, tmp_path, monkeypatch):
    blocks = [block for block in blocks_in(document) if not getattr(block, "not_run", None)]
    examples = [block for block in blocks if isinstance(block, Example)]
    test_count = count_test_functions(examples)
    if test_count == 0:
        monkeypatch.chdir(tmp_path)
        run_in_process(blocks)
        return
    assert len(blocks) == len(examples), (
        f"{_relative(document)}: shown outputs are checked in this process only, and this "
        "document's examples define tests (they run as a user's test file)")
    result = run_as_user_test_file(examples, tmp_path)
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"{_relative(document)}: its examples fail in a clean project:\n{report}"
    assert f"{test_count + 1} passed" in result.stdout, report  # + the clean-project guard


def test_every_python_block_runs_or_says_why_not():
    problems = [problem for document in _documents() for problem in stray_not_run_markers(document)]
    assert not problems, "\n".join(problems)
    assert len(DOCUMENTS_WITH_EXAMPLES) >= 4  # README, verification, diagnostics, selectors


# ---------------------------------------------------------------------- the harness itself

def _write_doc(tmp_path, text: str) -> Path:
    document = tmp_path / "doc.md"
    document.write_text(text)
    return document


def test_harness_reads_blocks_markers_and_claims(tmp_path):
    document = _write_doc(tmp_path, (
        "intro\n"
        "```python\n"
        "xs = [3, 1, 2]\n"
        "```\n"
        "```bash\n"
        "echo not python\n"
        "```\n"
        "<!-- not-run: needs a GPU cluster to mean anything -->\n"
        "```python\n"
        "undefined_name\n"
        "```\n"
        "```python\n"
        "sorted(xs)  # [1, 2, 3], sorted\n"
        "print(len(xs))  # 3 is not a container: no claim\n"
        "```\n"
    ))
    examples = examples_in(document)
    assert [(e.first_line, e.not_run) for e in examples] == [
        (3, None), (10, "needs a GPU cluster to mean anything"), (13, None)]
    assert stray_not_run_markers(document) == []
    namespace = run_in_process([e for e in examples if not e.not_run])
    assert namespace["xs"] == [3, 1, 2]
    assert CLAIM_CHECKER in checked_source(examples[2]).splitlines()[12]


def test_harness_catches_a_wrong_claim_at_its_markdown_line(tmp_path):
    document = _write_doc(tmp_path, "```python\nxs = [3, 1]\nprint(sorted(xs))  # [3, 1]\n```\n")
    with pytest.raises(AssertionError, match=r"doc.md:3: the comment claims \[3, 1\]"):
        run_in_process(examples_in(document))


def test_harness_flags_a_marker_without_a_python_block(tmp_path):
    document = _write_doc(tmp_path, "<!-- not-run: it is only an illustration -->\ntext\n")
    assert "not right before" in stray_not_run_markers(document)[0]


def test_user_test_file_keeps_the_documents_line_numbers(tmp_path):
    text = ("# Title\n\n```python\nxs = [2, 1]\n```\nprose\n```python\n"
            "def test_sorted():\n    assert sorted(xs) == [1, 2]\n```\n")
    document = _write_doc(tmp_path, text)
    path = write_user_test_file(examples_in(document), tmp_path)
    doc_lines, file_lines = text.splitlines(), path.read_text().splitlines()
    for number in (4, 8, 9):
        assert file_lines[number - 1] == doc_lines[number - 1]
    assert count_test_functions(examples_in(document)) == 1
    assert (tmp_path / "pytest.ini").read_text() == "[pytest]\n"


def test_harness_checks_shown_outputs_where_they_stand(tmp_path):
    document = _write_doc(tmp_path, (
        "```python\nxs = [3, 1]\nprint(sorted(xs))\n```\n"
        "<!-- shows: printed -->\n```\n[1, 3]\n```\n"
        "<!-- shows: len(xs) -->\n```text\n2\n```\n"
        "<!-- shows: $ rasp-compiler run reverse a b -->\n```\n['b', 'a']\n```\n"
    ))
    blocks = blocks_in(document)
    assert [type(block).__name__ for block in blocks] == ["Example", "Shown", "Shown", "Shown"]
    assert stray_not_run_markers(document) == []
    run_in_process(blocks)


def test_harness_catches_a_stale_shown_output_at_its_markdown_line(tmp_path):
    document = _write_doc(tmp_path, "```python\nprint('new')\n```\n<!-- shows: printed -->\n```\nold\n```\n")
    with pytest.raises(AssertionError, match=r"doc.md:6: the block shown as the output of 'printed' "
                                             r"is stale(.|\n)*-old\n\+new"):
        run_in_process(blocks_in(document))
    assert "not right before an output fence" in stray_not_run_markers(
        _write_doc(tmp_path, "<!-- shows: printed -->\n```python\nx = 1\n```\n"))[0]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="refresh the shown outputs of documents")
    parser.add_argument("--update", nargs="+", type=Path, required=True, metavar="DOCUMENT")
    for path in parser.parse_args().update:
        print(f"{path}: {update_shown_outputs(path.resolve())} shown outputs updated")


# ------------------------------------------------------------------ the docs as a whole

DOCS = ROOT / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    found, fenced = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(_anchor(line.lstrip("#")))
    return found


def test_every_relative_link_reaches_its_file_and_heading():
    wrong = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                wrong.append(f"{page.name}: {target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                wrong.append(f"{page.name}: {target}: no heading with that anchor")
    assert not wrong, "\n".join(wrong)


def test_the_index_lists_every_page():
    index = (DOCS / "index.md").read_text()
    missing = [page.name for page in sorted(DOCS.glob("*.md"))
               if page.name != "index.md" and f"]({page.name})" not in index]
    assert not missing, f"docs/index.md does not list {missing}"


def test_architecture_page_names_every_module():
    page = (DOCS / "architecture.md").read_text()
    package = ROOT / "rasp_compiler"
    missing = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if path.name == "__init__.py" and path.parent != package:
            continue  # a folder's __init__ is the folder, named by its heading
        if path.name == "__main__.py":
            continue
        if f"`{relative}`" not in page:
            missing.append(relative)
    assert not missing, f"docs/architecture.md does not say what these are: {missing}"


def test_cli_reference_is_generated_and_current():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (DOCS / "cli.md").read_text() == module.reference(), (
        "docs/cli.md is stale: run python scripts/cli_reference.py --write docs/cli.md")


def test_anchor_rule():
    assert _anchor(" Exactness on raw activations: `strict=True`") == \
        "exactness-on-raw-activations-stricttrue"
    assert _anchor("In a notebook") == "in-a-notebook"
