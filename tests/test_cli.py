from rasp_compiler.cli import main


def test_list_shows_every_program_with_a_description(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "reverse" in out and "The input read backwards." in out


def test_eval_prints_the_output_and_the_graph(capsys):
    assert main(["eval", "sort", "3", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "output: [1, 2, 3]" in out
    assert "target_pos" in out and "SelectorWidth" in out


def test_unknown_tokens_are_one_clear_line_and_a_nonzero_exit(capsys):
    assert main(["eval", "sort", "3", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "token '9' is not in the vocab of sort" in err
