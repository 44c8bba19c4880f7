import pytest

from rasp_compiler import program_files
from rasp_compiler.errors import LoadError
from rasp_compiler.lang.evaluator import evaluate


@pytest.mark.parametrize("name", program_files.program_names())
def test_every_bundled_program_is_described_and_meets_its_examples(name):
    spec = program_files.load_program(name)
    assert spec.description and spec.description != name
    assert spec.vocab and spec.max_seq_len >= 1 and spec.examples
    program = spec.make()
    for tokens, expected in spec.examples:
        assert set(tokens) <= set(spec.vocab)
        assert len(tokens) <= spec.max_seq_len
        got = evaluate(program, tokens)
        assert got == pytest.approx(expected) if isinstance(expected[0], float) else got == expected


def test_the_documented_example_program_file_meets_its_examples():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "docs" / "examples" / "my_programs.py"
    spec = program_files.load_program(f"{path}:make_thing")
    assert spec.vocab == ("a", "b", "c") and spec.max_seq_len == 5 and spec.options == {}
    assert spec.description.startswith("The input rotated one step")
    program = spec.make()
    for tokens, expected in spec.examples:
        assert evaluate(program, tokens) == expected


def test_programs_load_from_a_path_and_factory(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        '"""Doubles the tokens."""\n'
        "from rasp_compiler import rasp\n"
        "VOCAB = (1, 2)\nMAX_SEQ_LEN = 3\n"
        "def make():\n    return rasp.Map(lambda x: 2 * x, rasp.tokens)\n"
    )
    spec = program_files.load_program(f"{path}:make")
    assert spec.description == "Doubles the tokens."
    assert evaluate(spec.make(), [1, 2]) == [2, 4]
    with pytest.raises(LoadError, match="no function 'program'"):
        program_files.load_program(str(path))


@pytest.mark.parametrize("reference, message", [
    ("no_such_program", "no bundled program named 'no_such_program'"),
    ("missing/file.py:make", "does not exist"),
])
def test_loading_errors_are_clear(reference, message):
    with pytest.raises(LoadError, match=message):
        program_files.load_program(reference)


def test_a_factory_must_return_an_sop(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def program():\n    return 3\n")
    with pytest.raises(LoadError, match="not an SOp"):
        program_files.load_program(f"{path}:program").make()


def _dyck_ok(word, pairs):
    closing = {p[1]: p[0] for p in pairs}
    stack = []
    for c in word:
        if c in closing:
            if not stack or stack.pop() != closing[c]:
                return False
        else:
            stack.append(c)
    return not stack


@pytest.mark.parametrize("name, pairs", [("dyck1", ["()"]), ("dyck2", ["()", "[]"])])
def test_dyck_programs_agree_with_a_stack_based_checker(name, pairs):
    import itertools

    from rasp_compiler.lang.batch_evaluator import evaluate_batch

    spec = program_files.load_program(name)
    program = spec.make()
    for n in range(1, 7):
        words = list(itertools.product(range(len(spec.vocab)), repeat=n))
        batch = evaluate_batch(program, words, spec.vocab)  # every word of n tokens at once
        assert not batch.undefined.any()
        for ids, got in zip(words, batch.lists(batch.output)):
            word = [spec.vocab[i] for i in ids]
            assert got == [_dyck_ok(word, pairs)] * n, word
