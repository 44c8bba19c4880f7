import pytest

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
    assert "layer 1:" in out and "reverse <- flip" in out
    assert "output: ['c', 'b', 'a']" in out
    assert (tmp_path / "m" / "params.npz").is_file()


def test_compile_names_heads_as_inspect_does_and_says_what_its_words_mean(capsys):
    """The plan's head lines read like the layout report's (kind, the SOp written), and the
    words of the plan (coldness, steps, bos-cleanup, ...) are explained under it."""
    assert main(["compile", "sort_ties"]) == 0
    out = capsys.readouterr().out
    assert "  L1H0 width target.attn <- before (" in out and "(for target)" in out
    assert "  L2H0 aggregate sort_ties <- fetch (" in out
    terms = out.split("terms:\n")[1].splitlines()
    assert [line.split(":")[0].strip() for line in terms] == [
        "aggregate", "width", "coldness", "lookup", "steps", "bos-cleanup"]
    assert main(["inspect", "sort_ties", "--layer-plan"]) == 0
    assert "  coldness: " in capsys.readouterr().out
    assert main(["compile", "count"]) == 0
    assert "1 layer (lower bound 1)" in capsys.readouterr().out


def test_an_unproven_aggregate_warns_in_short_except_in_inspect(capsys):
    assert main(["verify", "dyck2", "--samples", "20", "-q"]) == 0
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: partner_token: could not prove this categorical "
                              "Aggregate always selects a single value (400 inputs showed no "
                              "mixing).")
    assert warning.endswith("`rasp-compiler inspect dyck2` says why in full")
    assert len(warning) < 300  # it was 700 characters
    assert main(["inspect", "dyck2", "--layout"]) == 0
    full = capsys.readouterr().err
    assert "no proof went through: closes_level matches at most one value" in full


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
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>")  # the explorer's page, for the examples:
    assert '"words":["a","b","c","d"]' in page and '"words":["a","a","b"]' in page


def test_verify_command_and_running_a_saved_model(capsys, tmp_path):
    assert main(["verify", "reverse", "--exhaustive", "3", "-q"]) == 0
    assert capsys.readouterr().out.startswith("OK: 84 inputs")
    assert main(["compile", "histogram", "-o", str(tmp_path / "h")]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "h"), "a", "b", "a"]) == 0
    assert capsys.readouterr().out.strip() == "[2, 1, 2]"
    assert main(["run", str(tmp_path / "h"), "z"]) == 2
    assert "token 'z' is not in the vocab of the saved model: a, b, c" in capsys.readouterr().err


def _heads_scaled(monkeypatch, factor):
    """compile_program, as the CLI calls it, returns models whose last attention output
    weights are scaled by `factor` (reverse: the head that writes the output)."""
    from rasp_compiler.compiler import pipeline as compiler

    real = compiler.compile_program

    def scaled(*args, **kwargs):
        model = real(*args, **kwargs)
        name = f"layer_{model.depth - 1}/attn/linear"
        model.params = {module: dict(weights) for module, weights in model.params.items()}
        model.params[name]["w"] = model.params[name]["w"] * factor
        return model

    monkeypatch.setattr(compiler, "compile_program", scaled)


def test_verify_exits_1_on_a_mismatch(monkeypatch, capsys):
    _heads_scaled(monkeypatch, 0.0)  # the output head writes nothing: every position None
    assert main(["verify", "reverse", "--exhaustive", "2", "-q"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("36 MISMATCHED positions: 20 inputs, 36 positions")
    assert "expected 'a', got None" in out


def test_verify_strict_exits_1_past_the_raw_bound_where_decoding_passes(monkeypatch, capsys):
    _heads_scaled(monkeypatch, 0.92)  # one-hots of 0.92: decoded right (within 0.1)
    assert main(["verify", "reverse", "--exhaustive", "2", "-q"]) == 0
    assert capsys.readouterr().out.startswith("OK: 20 inputs")
    assert main(["verify", "reverse", "--exhaustive", "2", "-q", "--strict"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("36 positions PAST THE RAW BOUND 1e-03: 20 inputs")
    assert "strict: max raw deviation 8.00e-02 (bound 1e-03 on one-hot columns; worst at" in out


def test_verify_strict_passes_an_exact_model(capsys):
    assert main(["verify", "reverse", "--exhaustive", "2", "-q", "--strict"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 20 inputs") and "strict: max raw deviation" in out


def test_every_command_has_help(capsys):
    for command in ("list", "eval", "compile", "run", "inspect", "verify"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: rasp-compiler" in capsys.readouterr().out


# ---------------------------------------------------------------------------- failures: one line

GOOD_FILE = '''"""A test program."""
from rasp_compiler import rasp
VOCAB = ("a", "b")
MAX_SEQ_LEN = 3
'''


def write_program(tmp_path, text, factory="def program():\n    return rasp.Map(lambda x: x, rasp.tokens)\n"):
    path = tmp_path / "prog.py"
    path.write_text(GOOD_FILE + text + "\n" + factory)
    return str(path)


def one_line_error(capsys, *texts):
    """The command failed the way a user mistake should: one line, no traceback."""
    err = capsys.readouterr().err
    assert err.startswith("rasp-compiler: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in texts:
        assert text in err, err
    return err


@pytest.mark.parametrize("factory, texts", [
    ("def program():\n    raise ValueError('boom')\n",
     ["the factory program() raised ValueError: boom"]),
    ("def program(n, width):\n    return rasp.tokens\n",
     ["the factory program(n, width) needs arguments", "def program(max_seq_len)"]),
    ("def program():\n    return program()\n", ["the factory program() recursed without end"]),
])
def test_a_broken_factory_is_one_line(tmp_path, capsys, factory, texts):
    path = write_program(tmp_path, "", factory)
    for command in (["eval", path, "a"], ["compile", path]):
        assert main(command) == 2
        one_line_error(capsys, path, *texts)


@pytest.mark.parametrize("text, message", [
    ("import sys\nsys.exit(7)\n", "failed: it called sys.exit(7) (SystemExit) at import"),
    ("def program():\n    raise SystemExit('bye')\n",
     "the factory program() called sys.exit('bye') (SystemExit)"),
    ("import sys\ndef program():\n    return rasp.Map(lambda x: sys.exit(3), rasp.tokens)\n",
     "prog: one of the program's functions called sys.exit(3) (SystemExit) while it was "
     "evaluated"),
])
def test_a_program_that_exits_is_one_line_and_status_2(tmp_path, capsys, text, message):
    path = write_program(tmp_path, "", text)
    for command in (["run", path, "a"], ["eval", path, "a"], ["compile", path]):
        assert main(command) == 2, command
        one_line_error(capsys, message, *([path] if "prog:" not in message else []))


AMBIGUOUS = '''"""Ambiguous words."""
from rasp_compiler import rasp
VOCAB = (1, "1", 2, False, "False")
MAX_SEQ_LEN = 4
def program():
    return rasp.Map(lambda x: x, rasp.tokens)
'''


def test_a_word_that_could_be_two_tokens_is_refused_naming_both(tmp_path, capsys):
    path = tmp_path / "ambig.py"
    path.write_text(AMBIGUOUS)
    # The word 1 used to be read as the string "1", silently (the int 1 could not be typed).
    assert main(["run", str(path), "1", "2"]) == 2
    one_line_error(capsys, "the word '1' is ambiguous in the vocab of ambig: it can be the int "
                           "1 or the str '1', which print alike",
                   "type the str as '1', quotes included (in a shell: \"'1'\")",
                   "the int 1 cannot be typed apart")
    assert main(["run", str(path), "'1'", "2", "'False'"]) == 0
    assert capsys.readouterr().out.strip() == "['1', 2, 'False']"
    assert main(["eval", str(path), "-q", "False"]) == 2
    one_line_error(capsys, "it can be the bool False or the str 'False'")
    assert main(["run", "reverse", "'a'", "b"]) == 0  # a repr is a way to type any token
    assert capsys.readouterr().out.strip() == "['b', 'a']"


def test_a_function_that_recurses_forever_is_one_line_in_eval_and_compile(tmp_path, capsys):
    path = write_program(tmp_path, "def f(x):\n    return f(x)\n",
                         "def program():\n    return rasp.Map(f, rasp.tokens).named('loop')\n")
    assert main(["eval", path, "a"]) == 2
    one_line_error(capsys, "loop", "RecursionError")
    assert main(["compile", path]) == 2
    one_line_error(capsys, "loop", "RecursionError")


@pytest.mark.parametrize("settings, text", [
    ("VOCAB = 5", "VOCAB must be a collection of tokens"),
    ("VOCAB = 'ab'", "VOCAB must be a collection of tokens"),
    ("VOCAB = ('a', 'a')", "VOCAB lists the token 'a' twice"),
    ("MAX_SEQ_LEN = 'x'", "MAX_SEQ_LEN must be a positive int, got str 'x'"),
    ("MAX_SEQ_LEN = 0", "MAX_SEQ_LEN must be a positive int"),
    ("COMPILE_OPTIONS = {'bogus': 1}",
     "COMPILE_OPTIONS has unknown option 'bogus'; compile_program accepts bos, pad, "
     "allow_unsafe_aggregates"),
    ("COMPILE_OPTIONS = ['bos']", "COMPILE_OPTIONS must be a dict"),
    ("EXAMPLES = 3", "EXAMPLES must be a list of (input, expected output) pairs"),
    ("EXAMPLES = [('ab', ['a', 'b'])]", "EXAMPLES[0] must be a pair (input tokens, expected"),
    ("EXAMPLES = [(['a'], ['a', 'b'])]", "EXAMPLES[0] needs a non-empty input and one expected"),
    ("EXAMPLES = [(['z'], ['z'])]", "EXAMPLES[0] uses 'z', which is not in VOCAB"),
])
def test_malformed_program_settings_are_one_line(tmp_path, capsys, settings, text):
    assert main(["compile", write_program(tmp_path, settings)]) == 2
    one_line_error(capsys, text)


def test_every_compile_option_is_accepted_in_a_program_file(tmp_path):
    import inspect

    from rasp_compiler.compiler.pipeline import compile_program
    from rasp_compiler.program_files import compile_option_names, load_program

    keyword_only = [name for name, p in inspect.signature(compile_program).parameters.items()
                    if p.kind is p.KEYWORD_ONLY]
    assert compile_option_names() == keyword_only and "max_selector_dims" in keyword_only
    spec = load_program(write_program(tmp_path, "COMPILE_OPTIONS = {'bos': 'START'}"))
    assert spec.options == {"bos": "START"}


def test_compile_output_onto_a_file_or_a_folder_of_other_things_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["compile", "reverse", "-o", str(tmp_path / "file")]) == 2
    one_line_error(capsys, "it is a file")
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    assert main(["compile", "reverse", "-o", str(tmp_path / "stuff")]) == 2
    one_line_error(capsys, "holds other files (notes.txt) and no saved model")
    assert main(["compile", "reverse", "-o", str(tmp_path / "file" / "below")]) == 2
    one_line_error(capsys, "cannot save the model to", f"{tmp_path / 'file'} is a file, not a folder")


def test_inspect_html_into_a_missing_folder_or_onto_a_folder_is_refused(tmp_path, capsys):
    assert main(["inspect", "reverse", "--html", str(tmp_path / "nowhere" / "r.html")]) == 2
    one_line_error(capsys, "the folder", "does not exist")
    assert main(["inspect", "reverse", "--html", str(tmp_path)]) == 2
    one_line_error(capsys, "it is a folder; name a file")
    (tmp_path / "file").write_text("x")
    assert main(["inspect", "reverse", "--html", str(tmp_path / "file" / "r.html")]) == 2
    one_line_error(capsys, f"{tmp_path / 'file'} is a file, not a folder")


def test_compress_names_the_picture_it_cannot_write(tmp_path, capsys):
    # Every one of --picture, --norms and --html said "cannot write the HTML report".
    assert main(["compress", "reverse", "--dim", "3", "--picture", str(tmp_path)]) == 2
    one_line_error(capsys, f"cannot write the interference picture (--picture) to {tmp_path}: "
                           f"it is a folder; name a file, e.g. {tmp_path / 'interference.png'}")
    assert main(["compress", "reverse", "--dim", "3", "--norms",
                 str(tmp_path / "no" / "n.png")]) == 2
    one_line_error(capsys, "cannot write the feature norms picture (--norms) to")
    assert main(["compress", "reverse", "--dim", "3", "--html", str(tmp_path)]) == 2
    one_line_error(capsys, "cannot write the HTML page (--html) to")


def test_a_report_the_disk_refuses_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    # An OSError while writing (a full disk, /proc/version) used to print only
    # "[Errno 28] No space left on device", without the file.
    from pathlib import Path

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    target = tmp_path / "r.html"
    assert main(["inspect", "reverse", "--max-seq-len", "3", "--html", str(target)]) == 2
    one_line_error(capsys, f"cannot write the HTML page to {target}: No space left on device")


def test_inspect_html_takes_the_examples_that_fit_a_shorter_model(tmp_path, capsys):
    # reverse's first example has 4 tokens: at --max-seq-len 3 the page used to fail with
    # "input 0 has 4 tokens"; it shows the examples that fit (else the vocab).
    target = tmp_path / "r.html"
    assert main(["inspect", "reverse", "--max-seq-len", "3", "--selectors", "--html",
                 str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().out and target.stat().st_size > 0
    assert main(["inspect", "reverse", "--max-seq-len", "2", "--vocab", "x,y", "--selectors",
                 "--html", str(target)]) == 0


def test_a_corrupt_saved_model_is_one_line(tmp_path, capsys):
    import json

    folder = tmp_path / "m"
    argv = ["compile", "reverse", "--max-seq-len", "3", "-o", str(folder)]
    assert main(argv) == 0
    assert main(argv) == 0  # saving again over an earlier save replaces it
    capsys.readouterr()
    good_npz = (folder / "params.npz").read_bytes()
    (folder / "params.npz").write_bytes(good_npz[:1000])
    assert main(["run", str(folder), "a", "b"]) == 2
    one_line_error(capsys, f"cannot load the model saved in {folder}", "params.npz")
    (folder / "params.npz").write_bytes(good_npz)
    data = json.loads((folder / "model.json").read_text())
    data["vocab"].reverse()
    (folder / "model.json").write_text(json.dumps(data))
    assert main(["run", str(folder), "a", "b"]) == 2
    one_line_error(capsys, "was the vocab edited?")
    (folder / "model.json").unlink()
    assert main(["run", str(folder), "a"]) == 2
    one_line_error(capsys, "model.json missing")
    assert main(["verify", str(folder)]) == 2
    one_line_error(capsys, "is a folder, not a program")


def test_a_saved_array_declaring_a_huge_shape_is_one_line(tmp_path, capsys):
    # An .npy header declaring (10**13,) used to end in numpy's _ArrayMemoryError traceback.
    import io
    import zipfile

    import numpy as np

    folder = tmp_path / "m"
    assert main(["compile", "reverse", "--max-seq-len", "3", "-o", str(folder)]) == 0
    capsys.readouterr()
    with np.load(folder / "params.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    with zipfile.ZipFile(folder / "params.npz", "w") as archive:
        for key, value in arrays.items():
            entry = io.BytesIO()
            if key == "pos_embed::embeddings":
                np.lib.format.write_array_header_1_0(
                    entry, {"descr": "<f4", "fortran_order": False, "shape": (10**13,)})
                entry.write(value.tobytes())
            else:
                np.lib.format.write_array(entry, value)
            archive.writestr(f"{key}.npy", entry.getvalue())
    assert main(["run", str(folder), "a", "b"]) == 2
    one_line_error(capsys, f"cannot load the model saved in {folder}: params.npz: "
                           f"pos_embed::embeddings has shape [10000000000000], expected")


def test_a_saved_model_keeps_its_vocab_and_length(tmp_path, capsys):
    assert main(["compile", "reverse", "--max-seq-len", "3", "-o", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "m"), "--vocab", "a,b", "a"]) == 2
    one_line_error(capsys, "its vocab and max_seq_len were fixed")


@pytest.mark.parametrize("argv, text", [
    (["compile", "reverse", "--max-seq-len", "0"], "argument --max-seq-len: must be at least 1"),
    (["run", "reverse", "--max-seq-len", "-2", "a"], "must be at least 1, got -2"),
    (["compile", "reverse", "--max-seq-len", "x"], "expected a positive whole number, got 'x'"),
    (["compile", "reverse", "--vocab", ""], "argument --vocab: the vocab is empty"),
    (["compile", "reverse", "--vocab", ","], "',' has an empty token"),
    (["compile", "reverse", "--vocab", "a,b,a"], "the token 'a' appears twice"),
    (["verify", "reverse", "--samples", "0"], "argument --samples: must be at least 1"),
    (["verify", "reverse", "--samples", "-5"], "must be at least 1, got -5"),
    (["verify", "reverse", "--exhaustive", "0"], "argument --exhaustive: must be at least 1"),
    # An OverflowError traceback from JAX (and 2**32 silently seed 0), before compiling:
    (["compress", "reverse", "--dim", "5", "--seed", "99999999999999999999999"],
     "argument --seed: must be 0 to 4,294,967,295 (JAX's random keys keep 32 bits of a seed)"),
    (["compress", "reverse", "--dim", "5", "--seed", "-1"], "argument --seed: must be at least 0"),
    (["compress", "reverse", "--dim", "5", "--seed", "nan"],
     "argument --seed: expected a whole number >= 0, got 'nan'"),
    (["verify", "reverse", "--seed", "-3"], "argument --seed: must be at least 0, got -3"),
    (["verify", "reverse", "--seed", "1.5"], "expected a whole number >= 0, got '1.5'"),
])
def test_bad_option_values_are_refused_not_defaulted(capsys, argv, text):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err


def test_verify_takes_any_whole_seed_from_zero_up(capsys):
    assert main(["verify", "reverse", "--max-seq-len", "3", "--samples", "20",
                 "--seed", "99999999999999999999999", "-q"]) == 0
    assert capsys.readouterr().out.startswith("OK: 20 inputs")


def test_the_default_exhaustive_length_is_found_without_summing_every_power():
    import time

    from rasp_compiler.cli.commands import default_exhaustive

    for vocab_size, max_seq_len in [(1, 5), (2, 20), (4, 6), (10, 3), (100_001, 4), (3, 1)]:
        old = max((n for n in range(1, max_seq_len + 1)
                   if sum(vocab_size ** k for k in range(1, n + 1)) <= 100_000), default=1)
        assert default_exhaustive(vocab_size, max_seq_len) == old
    started = time.perf_counter()  # the old sum took time quadratic in max_seq_len
    assert default_exhaustive(4, 10**7) == 8 and default_exhaustive(1, 10**5) == 10**5
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("command", ["compile", "verify", "compress", "inspect"])
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, command):
    from rasp_compiler.cli import commands as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"cmd_{command}", interrupted)
    argv = [command, "reverse"] + (["--dim", "3"] if command == "compress" else [])
    assert main(argv) == 130
    assert capsys.readouterr().err == f"rasp-compiler: interrupted (Ctrl-C) during {command}\n"


@pytest.mark.slow
def test_ctrl_c_during_a_real_verify_run_is_one_line_and_exit_130(tmp_path):
    """A real SIGINT to `rasp-compiler verify` in its own process, once the progress bar has
    said how long the run would take; bounded to a minute."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu")
    process = subprocess.Popen(
        [sys.executable, "-m", "rasp_compiler.cli", "verify", "reverse", "--samples",
         "100000000"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timer = threading.Timer(60, process.kill)
    timer.start()
    try:
        err = b""
        while b"take about" not in err and process.poll() is None:
            err += process.stderr.read1(4096)
        process.send_signal(signal.SIGINT)
        out, rest = process.communicate(timeout=30)
    finally:
        timer.cancel()
        process.kill()
    err = (err + rest).decode()
    assert process.returncode == 130, err[-2000:]
    assert "verify: 100,000,000 inputs at about" in err and "Traceback" not in err
    assert err.endswith("\nrasp-compiler: interrupted (Ctrl-C) during verify\n"), err[-500:]
    assert out == b""


def test_os_errors_are_one_line_but_bugs_still_show_a_traceback(monkeypatch, capsys):
    from rasp_compiler.cli import commands as cli

    def denied(args):
        raise PermissionError(13, "Permission denied", "/somewhere/report.html")

    monkeypatch.setattr(cli, "cmd_list", denied)
    assert main(["list"]) == 2
    one_line_error(capsys, "Permission denied", "/somewhere/report.html")

    def bug(args):
        raise RuntimeError("internal bug")

    monkeypatch.setattr(cli, "cmd_list", bug)
    with pytest.raises(RuntimeError, match="internal bug"):
        main(["list"])


@pytest.mark.xdist_group("export")  # one worker imports torch and TransformerLens
def test_export_writes_safetensors_and_a_transformer_lens_checkpoint(capsys, tmp_path):
    import warnings

    import torch
    from transformer_lens import HookedTransformer

    assert main(["export", "sort_ties", "--format", "safetensors", "-o",
                 str(tmp_path / "st")]) == 0
    out = capsys.readouterr().out
    assert f"exported sort_ties to {tmp_path / 'st'} (safetensors): 3 layers, 1 head per layer" in out
    assert "attention bidirectional" in out and "logits: one logit per value of sort_ties" in out
    assert sorted(p.name for p in (tmp_path / "st").iterdir()) == [
        "config.json", "model.safetensors"]
    assert main(["compile", "frac_prevs", "-o", str(tmp_path / "saved")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "saved"), "--format", "transformerlens", "-o",
                 str(tmp_path / "frac.pt")]) == 0
    assert "not a logit" in capsys.readouterr().out
    checkpoint = torch.load(tmp_path / "frac.pt")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        hooked = HookedTransformer(checkpoint["config"])
    hooked.load_state_dict(checkpoint["state_dict"])
    ids = dict((token, i) for token, i in checkpoint["encoding"]["input_encoding"])
    tokens = torch.tensor([[ids["BOS"], ids["x"], ids["a"], ids["x"], ids["x"]]])
    with torch.no_grad():
        numbers = hooked(tokens)[0, 1:, 0].tolist()
    assert numbers == pytest.approx([1, 1 / 2, 2 / 3, 3 / 4], abs=1e-5)


def test_export_mistakes_are_one_line_before_compiling(capsys, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    assert main(["export", "no_such_program", "--format", "safetensors", "-o",
                 str(tmp_path / "busy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds other files (notes.txt) and no export" in err
    assert main(["export", "reverse", "--format", "transformerlens", "-o", str(tmp_path)]) == 2
    assert "it is a folder; name a file" in capsys.readouterr().err
    assert main(["compile", "reverse", "-o", str(tmp_path / "saved")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "saved"), "--causal", "--format", "safetensors",
                 "-o", str(tmp_path / "out")]) == 2
    assert "drop --vocab / --max-seq-len / --causal" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "reverse", "-o", str(tmp_path / "out")])  # --format is required
    assert "the following arguments are required: --format" in capsys.readouterr().err


def test_list_and_help_start_fast_without_jax():
    """`list`, `--help` and `eval` need no model: they must not import jax (it took ~3.5 s
    before every command). Run in a fresh interpreter, as the console script is."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = (
        "import sys\n"
        "from rasp_compiler.cli import main\n"
        "for argv in (['list'], ['--help'], ['compile', '--help'], ['eval', 'sort', '3', '1']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'haiku', 'optax', 'tqdm'})\n"
        "print('HEAVY', heavy)\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                            text=True, timeout=60)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "HEAVY []"
    assert seconds < 5, seconds  # about 0.3 s on a quiet 2-core machine; generous for CI load
