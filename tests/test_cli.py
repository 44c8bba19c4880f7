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


def test_compile_prints_the_layer_plan_and_runs(capsys, tmp_path):
    assert main(["compile", "reverse", "--run", "a", "b", "c", "-o", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "2 layers (lower bound 2)" in out
    assert "layer 2:" in out and "reverse <- flip" in out
    assert "output: ['c', 'b', 'a']" in out
    assert (tmp_path / "m" / "params.npz").is_file()


def test_run_with_another_vocab_and_length(capsys):
    assert main(["run", "histogram", "--vocab", "x,y", "--max-seq-len", "4", "x", "y", "x"]) == 0
    assert capsys.readouterr().out.strip() == "[2, 1, 2]"


def test_compile_errors_are_one_line(capsys):
    assert main(["compile", "no_such_program"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no bundled program named" in err


def test_inspect_shows_layout_residual_selectors_and_checks(capsys, tmp_path):
    import json

    assert main(["inspect", "sort_ties", "--input", "3", "1", "2"]) == 0
    out = capsys.readouterr().out
    for text in ("depth 3 (lower bound 3)", "residual stream:", "FLAG exponential",
                 "attention pattern check (tolerance 0.001): PASS",
                 "value read-back: every SOp agrees"):
        assert text in out
    assert main(["inspect", "reverse", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["depth"] == 2
    assert main(["inspect", "reverse", "--check"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["inspect", "reverse", "--layout", "--html", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_verify_command_and_running_a_saved_model(capsys, tmp_path):
    assert main(["verify", "reverse", "--exhaustive", "3", "-q"]) == 0
    assert capsys.readouterr().out.startswith("OK: 84 inputs")
    assert main(["compile", "histogram", "-o", str(tmp_path / "h")]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "h"), "a", "b", "a"]) == 0
    assert capsys.readouterr().out.strip() == "[2, 1, 2]"
    assert main(["run", str(tmp_path / "h"), "z"]) == 2
    assert "token 'z' is not in the vocab of the saved model: a, b, c" in capsys.readouterr().err


def test_every_command_has_help(capsys):
    import pytest

    for command in ("list", "eval", "compile", "run", "inspect", "verify"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: rasp-compiler" in capsys.readouterr().out
