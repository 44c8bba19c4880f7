"""The input rotated one step: each position takes the next token, the last the first.

An example of a program file (README, "Your own programs"). Run it with

    rasp-compiler run docs/examples/my_programs.py:make_thing a b c

A program file is plain Python: the names below are what rasp-compiler reads.
"""

from rasp_compiler import lib, rasp

# The tokens the model accepts, and the longest input: what the model is compiled for
# (--vocab and --max-seq-len override them).
VOCAB = ("a", "b", "c")
MAX_SEQ_LEN = 5

# (input, expected output) pairs: `inspect --check`, `inspect --html` and `explore` start
# from these inputs; the project's tests hold the bundled programs to the outputs.
EXAMPLES = [
    (["a", "b", "c"], ["b", "c", "a"]),
    (["c", "a", "a", "b"], ["a", "a", "b", "c"]),
]

# Optional: keyword options of compile_program, e.g. {"causal": True}.
COMPILE_OPTIONS = {}


# The factory returns the program's output SOp. It takes no argument, or one named
# max_seq_len (given the length the model is compiled for) when the program depends on it,
# as tracr's make_sort does: def make_sorted(max_seq_len): ...
def make_thing():
    length = lib.make_length()
    following = rasp.SequenceMap(lambda i, n: (i + 1) % n, rasp.indices, length).named("following")
    fetch = rasp.Select(rasp.indices, following, rasp.Comparison.EQ).named("fetch")
    return rasp.Aggregate(fetch, rasp.tokens).named("rotated")
