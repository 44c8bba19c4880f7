"""`rasp-compiler circuit`: each format against the Python API's circuit, and every mistake
one line with status 2.

The png and dot-parsing tests need Graphviz's `dot`; where it is missing they are skipped
saying how to install it (conftest.system_tool), and CI turns that skip into a failure.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from rasp_compiler import compile_program
from rasp_compiler.cli import main
from rasp_compiler.cli import parser as cli_parser
from rasp_compiler.circuits import ABLATIONS, GRANULARITIES
from rasp_compiler.model.compiled import CompiledModel
from rasp_compiler.program_files import load_program

from picture_checks import assert_picture

pytestmark = pytest.mark.filterwarnings("ignore::rasp_compiler.errors.CompileWarning")

REVERSE = ["reverse", "--max-seq-len", "4"]


@pytest.fixture(scope="module")
def reverse():
    """What `rasp-compiler circuit reverse --max-seq-len 4` compiles."""
    spec = load_program("reverse")
    return compile_program(spec.make(4), spec.vocab, 4)


def run(capsys, *argv) -> str:
    assert main(["circuit", *argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def one_line_error(capsys, *texts) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rasp-compiler: error: ") and err.count("\n") == 1, err
    for text in texts:
        assert text in err, err
    return err


def json_round_trip(data):
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("functional", [False, True])
def test_json_is_the_python_apis_circuit(capsys, reverse, granularity, functional):
    argv = [*REVERSE, "--granularity", granularity, "--format", "json"]
    data = json.loads(run(capsys, *argv, *(["--functional"] if functional else [])))
    circuit = reverse.circuit(granularity, functional=functional)
    assert data == json_round_trip(circuit.to_dict())
    kept = [e["name"] for e in data["edges"] if e["in_circuit"]]
    assert kept == list(circuit.edge_names) and kept  # never empty for reverse


def test_the_pair_options_reach_the_functional_circuit(capsys, reverse, tmp_path):
    path = tmp_path / "zero.json"
    out = run(capsys, *REVERSE, "--functional", "--ablation", "zero", "--samples", "40",
              "--seed", "7", "--format", "json", "-o", str(path))
    assert out.startswith(f"wrote {path} (reverse: functional circuit at head granularity")
    circuit = reverse.circuit(functional=True, ablation="zero", samples=40, seed=7)
    data = json.loads(path.read_text())
    assert data == json_round_trip(circuit.to_dict())
    assert data["ablation"] == "zero" and data["pairs"] == "40 random inputs (lengths uniform " \
        "in 1..max_seq_len, tokens uniform; seed 7)"
    assert data != json_round_trip(reverse.circuit(functional=True).to_dict())


def test_the_text_summary_lists_nodes_edges_pairs_and_one_example_each(capsys, reverse):
    structural = reverse.circuit()
    text = run(capsys, *REVERSE)
    assert text.startswith("reverse: structural circuit at head granularity, 6 nodes, "
                           f"{len(structural.edges)} edges\n")
    assert f"{len(structural.edges)} of the {len(structural.candidates)} candidate" in text
    for edge in structural.edges:
        assert f"\n  {edge.source} -> {edge.destination} [{edge.input}]\n" in text + "\n"
    assert "  blocks.1.attn.0  L1H0      computes reverse, flip, opp_index_minus_1" in text

    functional = reverse.circuit(functional=True)
    text = run(capsys, *REVERSE, "--functional")
    assert f"pairs: resample ablation on {functional.pairs.describe()}" in text
    for edge in functional.edges:
        effect = functional.effects[edge]
        example = effect.example
        assert (f"  {edge.source} -> {edge.destination} [{edge.input}]  changes "
                f"{effect.share:.0%} of pairs ({effect.changed:,} of {effect.tried:,})") in text
        assert (f"e.g. clean {' '.join(example.clean)}, corrupt {' '.join(example.corrupt)}:\n"
                f"      output {' '.join(example.clean_output)}, with this edge patched "
                f"{' '.join(example.patched_output)}") in text
    dropped = set(functional.structural_edges) - set(functional.edges)
    assert dropped and not any(f"{e.source} -> {e.destination} [{e.input}]" in text
                               for e in dropped)


def test_dot_is_the_python_apis_and_graphviz_reads_it(capsys, reverse, tmp_path):
    from conftest import system_tool

    text = run(capsys, *REVERSE, "--functional", "--format", "dot")
    assert text == reverse.circuit(functional=True).to_dot() + "\n"
    (dot,) = system_tool("dot")
    result = subprocess.run([dot, "-Tsvg"], input=text, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "<svg" in result.stdout and "blocks.1.attn.0" in result.stdout


def test_png_is_a_real_picture_drawn_by_graphviz(capsys, reverse, tmp_path):
    from conftest import system_tool

    system_tool("dot")
    path = tmp_path / "circuit.png"
    out = run(capsys, *REVERSE, "--granularity", "matrix", "--format", "png", "-o", str(path))
    circuit = reverse.circuit("matrix")
    assert out == (f"wrote {path} (reverse: structural circuit at matrix granularity, "
                   f"{len(circuit.nodes)} nodes, {len(circuit.edges)} edges)\n")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_picture(path, 200, 200)


def test_png_without_graphviz_says_how_to_install_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    assert main(["circuit", *REVERSE, "--format", "png", "-o", str(tmp_path / "c.png")]) == 2
    one_line_error(capsys, "needs Graphviz's `dot` on PATH", "apt-get install graphviz",
                   "--format dot")
    assert not (tmp_path / "c.png").exists()


def test_a_saved_model_folder_has_its_circuit(capsys, reverse, tmp_path):
    folder = reverse.save(tmp_path / "saved")
    data = json.loads(run(capsys, str(folder), "--format", "json"))
    assert data == json_round_trip(CompiledModel.load(folder).circuit().to_dict())
    assert [e["name"] for e in data["edges"]] == list(reverse.circuit().edge_names)
    assert main(["circuit", str(folder), "--max-seq-len", "3"]) == 2
    one_line_error(capsys, "is a saved model", "drop --vocab / --max-seq-len / --causal")


@pytest.mark.parametrize("argv, text", [
    (["--granularity", "layer"], "argument --granularity: invalid choice: 'layer'"),
    (["--ablation", "noise", "--functional"], "argument --ablation: invalid choice: 'noise'"),
    (["--format", "svg"], "argument --format: invalid choice: 'svg'"),
    (["--samples", "0", "--functional"], "argument --samples: must be at least 1, got 0"),
    (["--seed", "-1", "--functional"], "argument --seed: must be at least 0, got -1"),
])
def test_bad_option_values_are_argparse_errors_with_status_2(capsys, argv, text):
    with pytest.raises(SystemExit) as exit_info:
        main(["circuit", *REVERSE, *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err


@pytest.mark.parametrize("argv, texts", [
    (["--seed", "3"], ["--seed chooses the pairs of a functional circuit; add --functional"]),
    (["--ablation", "zero", "--samples", "5"],
     ["--ablation, --samples choose the pairs", "add --functional"]),
    (["--format", "png"], ["--format png writes a picture file: give its path with -o"]),
    (["--format", "json", "-o", "/nonexistent-folder/c.json"],
     ["the folder /nonexistent-folder does not exist"]),
])
def test_mistakes_are_one_line_with_status_2(capsys, argv, texts):
    assert main(["circuit", *REVERSE, *argv]) == 2
    one_line_error(capsys, *texts)


def test_unknown_program_is_one_line(capsys):
    assert main(["circuit", "no_such_program"]) == 2
    one_line_error(capsys, "no_such_program")


def test_the_parsers_choices_are_the_circuits_own():
    """The parser spells the choices out so that `--help` loads no numpy or JAX; they must
    stay rasp_compiler.circuits' own."""
    assert cli_parser.GRANULARITIES == GRANULARITIES
    assert cli_parser.ABLATIONS == ABLATIONS
