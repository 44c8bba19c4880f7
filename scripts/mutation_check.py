"""Mutation check: does the test suite notice a wrong compiler?

Applies a fixed list of targeted mutations to selectors.py, mlp.py, encoding.py and
lower.py (flipped comparisons, constants such as 1.0 -> 0.92 or 0.5 -> 0.4, dropped
guards and conditions, off-by-one bounds), one at a time, each in a scratch copy of
the repository (the working tree is never touched), and runs the tests against it:
first the fast files that test these modules closely (TIER_1), and, if they all pass,
the wider set (TIER_2, and TIER_2_EXTRA for the file). A mutant is *killed* when a test fails (or errors, or the run
times out), and *survives* when every test passes. Every survivor must be killed by a
new test or explained (an equivalent mutant, say): docs/verification.md records the
last run's outcome.

    python scripts/mutation_check.py                     # every mutant (~40 min on 2 cores)
    python scripts/mutation_check.py --only lower mlp    # the mutants of some files
    python scripts/mutation_check.py --ids L1 E4         # a few mutants by id
    python scripts/mutation_check.py --skip E1 E2        # all but these
    python scripts/mutation_check.py --list              # list the mutants, run nothing
    python scripts/mutation_check.py --out report.json --workers 2 --timeout 300

Run it with the project's Python (the one whose pytest runs the suite), from anywhere.
It is not part of the test suite. Before the mutants it runs TIER_1 on the unmutated
copy, and stops if that fails (a broken baseline kills every mutant).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("rasp_compiler", "tests", "programs", "pyproject.toml")

TIER_1 = ["tests/verify/test_exactness.py", "tests/model/test_encoding.py", "tests/compiler/test_mlp.py",
          "tests/compiler/test_lower.py", "tests/compiler/test_selectors.py", "tests/diagnostics/test_diagnostics.py"]
TIER_2 = ["tests/compiler/test_compiler.py", "tests/lang/test_causal.py", "tests/compiler/test_precision.py",
          "tests/compiler/test_linear_forms.py", "tests/compiler/test_mlp_linear.py",
          "tests/compiler/test_numerical_copies.py", "tests/verify/test_verify.py", "tests/model/test_model.py",
          "tests/compiler/test_safety.py", "tests/model/test_sparse_forward.py", "tests/verify/test_fuzz.py",
          "tests/compiler/test_size.py"]
TIER_2_EXTRA = {  # what else reads a file's code closely
    "encoding.py": ["tests/compiler/test_values.py", "tests/lang/test_identity.py", "tests/cli/test_cli.py",
                    "tests/model/test_persistence.py", "tests/model/test_tracr_view.py"],
    "selectors.py": ["tests/compiler/test_rewrite.py", "tests/compiler/test_lexicographic.py"],
}
# Left out: a timing test (on a shared machine it fails under load, which would count as a
# kill) and the 64-token random checks (the slowest; 16 and 32 tokens still run).
DESELECT = "not compile_time_is_linear and not (longer_lengths and 64)"


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str  # under rasp_compiler/
    before: str  # exact text, found exactly once (or the `occurrence`-th time)
    after: str
    note: str
    occurrence: int = 0


def M(id, file, before, after, note, occurrence=0):  # noqa: N802 (a table row)
    return Mutant(id, file, before, after, note, occurrence)


MUTANTS = [
    # ------------------------------------------------------------------ encoding.py
    M("E1", "encoding.py", "DECODE_TOLERANCE = 0.1 ", "DECODE_TOLERANCE = 0.3 ",
      "decoder accepts one-hots off by up to 0.3"),
    M("E2", "encoding.py", "clean = (big >= 1 - DECODE_TOLERANCE) & (second <= DECODE_TOLERANCE)",
      "clean = (big >= 1 - DECODE_TOLERANCE)", "decoder ignores a second value's weight"),
    M("E3", "encoding.py", "clean = (big >= 1 - DECODE_TOLERANCE)", "clean = (big >= 0.5)",
      "decoder takes half a one-hot as the value"),
    M("E4", "encoding.py", "empty = big <= DECODE_TOLERANCE", "empty = np.ones_like(clean)",
      "the None threshold check removed (the issue's mutation)"),
    M("E5", "encoding.py", "empty = big <= DECODE_TOLERANCE", "empty = big < 0.5",
      "None up to half a one-hot"),
    M("E6", "encoding.py", "return np.full(shape, EMPTY, dtype=np.int64)",
      "return np.full(shape, UNCLEAN, dtype=np.int64)", "an SOp with no columns is unclean"),
    M("E7", "encoding.py", "if row[i] > DECODE_TOLERANCE)", "if row[i] >= 0)",
      "Unclean lists every value, weight or not"),
    M("E8", "encoding.py", "total += columns[..., i].astype(np.float64) * float(coefficient)",
      "total += columns[..., i].astype(np.float64)", "numerical readout ignores coefficients"),
    M("E9", "encoding.py", "for position in np.flatnonzero(indices == UNCLEAN).tolist():",
      "for position in np.flatnonzero(indices == EMPTY).tolist():",
      "blends decode as None, None as a blend"),
    M("E10", "encoding.py", "        if identity_key(token) != identity_key(keys[token_id]):",
      "        if False:", "lookup_ids takes True for the token 1"),
    M("E11", "encoding.py", "if len(row) > self.max_seq_len:", "if len(row) > self.max_seq_len + 1:",
      "one token too many accepted"),
    M("E12", "encoding.py", "            if not row:\n", "            if False:\n",
      "an empty input accepted"),
    M("E13", "encoding.py", "checked = exact_types is None or exact_types.issuperset(map(type, sequence))",
      "checked = True", "encode takes 1.0 or True for the token 1"),
    M("E14", "encoding.py", "or not 0 <= token_id < len(self.vocab)):",
      "or not 0 <= token_id <= len(self.vocab)):", "token id len(vocab) (BOS) accepted"),
    M("E15", "encoding.py", "if keyed and not keyed.keys().isdisjoint(row):", "if False:",
      "-0.0 taken for the token 0.0"),
    # ------------------------------------------------------------------ lower.py
    M("L1", "lower.py", "        w_o[j, rows[out]] = 1.0\n",
      "        w_o[j, rows[out]] = 0.92 if (op.kind == 'aggregate' and op.encoding is "
      "rasp.Encoding.CATEGORICAL) else 1.0\n",
      "categorical Aggregate heads write 0.92 (the issue's mutation)"),
    M("L2", "lower.py", "        w_o[j, rows[out]] = 1.0\n", "        w_o[j, rows[out]] = 0.9999\n",
      "every head writes 0.9999"),
    M("L3", "lower.py", "bos_k[rows[BOS], 0] = c * (clauses - 0.5)",
      "bos_k[rows[BOS], 0] = c * (clauses - 0.4)", "BOS key scored closer to the selected keys"),
    M("L4", "lower.py", "bos_k[rows[BOS], 0] = c * clauses + math.log(op.bos_share)",
      "bos_k[rows[BOS], 0] = c * clauses", "width heads ignore BOS's share (N > 16)"),
    M("L5", "lower.py", "bos_k[rows[BOS], 1] = c * (clauses + 1)",
      "bos_k[rows[BOS], 1] = c * clauses", "BOS query of an atomless head ties BOS"),
    M("L6", "lower.py", "return 2.0 * math.log((max_seq_len + 1) / eps)",
      "return 1.5 * math.log((max_seq_len + 1) / eps)", "heads less cold than the leak needs"),
    M("L7", "lower.py", "leak_bound=(n + 1) * math.exp(-c / 2),", "leak_bound=n * math.exp(-c / 2),",
      "leak bound understated"),
    M("L8", "lower.py", "w_k[key_rows[keys], column] = c", "w_k[key_rows[keys], column] = 0.92 * c",
      "selected keys score 0.92 c"),
    M("L9", "lower.py", "if span * eps > LEAK_SHARE_OF_TOLERANCE * ATOL:",
      "if span * eps < LEAK_SHARE_OF_TOLERANCE * ATOL:", "wide numerical averages not colder"),
    M("L10", "lower.py", "eps = min(eps, budgets[op.label] / (2.0 * magnitude))",
      "eps = eps", "heads ignore their readers' noise budget"),
    M("L11", "lower.py", "    if eps < FLOAT32_PRECISION_FLOOR:\n", "    if False:\n",
      "no refusal below float32's softmax resolution"),
    M("L12", "lower.py", "if len(live_queries) <= len(live_keys):",
      "if len(live_queries) < len(live_keys):", "stars on keys when the sides tie"),
    M("L13", "lower.py", "    if not np.all(sets[1:] >= sets[:-1]):\n", "    if False:\n",
      "staircase taken for relations that are not nested"),
    M("L14", "lower.py", "bicliques.append((rows[m:hi], keys[k0:t[m]]))",
      "bicliques.append((rows[m + 1:hi], keys[k0:t[m]]))", "staircase drops its middle row"),
    M("L15", "lower.py", "        if t[m] > k0:\n", "        if t[m] >= k0:\n",
      "staircase adds empty bicliques"),
    M("L16", "lower.py", "                w_1[layout.index[dim], column] += weight",
      "                w_1[layout.index[dim], column] = weight", "MLP input weights overwrite"),
    M("L17", "lower.py", "    table[bos_row, index[BOS]] = 1.0", "    table[bos_row, index[BOS]] = 0.92",
      "BOS embedding 0.92"),
    M("L18", "lower.py", "    table[pad_row, index[ONE]] = 1.0", "    table[pad_row, index[ONE]] = 0.0",
      "PAD has no `one`"),
    M("L19", "lower.py", "            if position < n:", "            if position < n - 1:",
      "the last position embedding left out"),
    M("L20", "lower.py", "        table[row, index[Dim(label)]] = float(value)",
      "        table[row, index[Dim(label)]] = 0.92 * float(value)", "numerical embeddings 0.92"),
    M("L21", "lower.py", "        if unit is not None and unit.feature is not None:\n            continue",
      "        if False:\n            continue", "clause features get readouts"),
    M("L22", "lower.py", "    bos_q[rows[ONE], 0] = 1.0", "    bos_q[rows[ONE], 0] = 0.92",
      "BOS column scaled on the query side"),
    M("L23", "lower.py", "        w_v[rows[read], outputs.index(out)] += weight",
      "        w_v[rows[read], outputs.index(out)] = weight", "value weights overwrite"),
    M("L24", "lower.py", "budgets[sop] = min(budget, budgets.get(sop, math.inf))",
      "budgets[sop] = max(budget, budgets.get(sop, 0.0))", "loosest noise budget wins"),
    M("L25", "lower.py", "        table[row, index[ONE]] = 1.0", "        table[row, index[ONE]] = 0.92",
      "token embeddings' `one` 0.92"),
    # ------------------------------------------------------------------ mlp.py
    M("M1", "mlp.py", "BOS_GATE = 2.0 ", "BOS_GATE = 0.0 ", "lookups not gated at BOS"),
    M("M2", "mlp.py", "MIN_RELATIVE_GAP = 2e-5 ", "MIN_RELATIVE_GAP = 2e-6 ",
      "steps placed between values float32 cannot tell apart"),
    M("M3", "mlp.py", "CATEGORICAL_NOISE_BUDGET = 0.01 ", "CATEGORICAL_NOISE_BUDGET = 0.5 ",
      "lookups tolerate (and heads feeding them may leak) 0.5"),
    M("M4", "mlp.py", "    _add(w_in, {ONE: -(constrained - 1.0)})",
      "    _add(w_in, {ONE: -(constrained - 0.5)})", "lookup neurons fire at 1/2"),
    M("M5", "mlp.py", "            if len(allowed) == len(every):\n                continue",
      "            if False:\n                continue", "lookups constrain unconstrained inputs"),
    M("M6", "mlp.py", "if v is not None and identity_key(v) not in kept})",
      "if v is not None and identity_key(v) not in kept and v != v})",
      "a lookup's None test ignores the other values"),
    M("M7", "mlp.py", "            indicator[Dim(leaf, v)] = -1.0", "            indicator[Dim(leaf, v)] = -0.92",
      "None's indicator is 1 - 0.92 x the dims"),
    M("M8", "mlp.py", "slope = (-2.0 if plan.descending else 2.0) / gap",
      "slope = (-1.0 if plan.descending else 1.0) / gap", "shared steps ramp over the whole gap"),
    M("M9", "mlp.py", "for half, sign in ((0.5, 1.0), (-0.5, -1.0)):",
      "for half, sign in ((0.5, 1.0), (-0.4, -1.0)):", "shared steps climb to 0.9"),
    M("M10", "mlp.py", "b0 = min(0.0, -0.5 - highest) if categorical else 0.0",
      "b0 = min(0.0, -0.4 - highest) if categorical else 0.0",
      "a shared step pair not quite off for other values"),
    M("M11", "mlp.py", "gate = slope * (zs[-1] - theta) + 1.0", "gate = slope * (zs[-1] - theta)",
      "combination steps fire for unmatched combinations"),
    M("M12", "mlp.py", "            _add(linear, {BOS: -(slope * (z_bound + abs(theta)) + 1.0)})\n",
      "", "combination steps not gated at BOS"),
    M("M13", "mlp.py", "                _add(w_in, {ONE: -(k - 1.0)})", "                _add(w_in, {ONE: -(k - 0.5)})",
      "combination anchors fire at 1/2"),
    M("M14", "mlp.py", "    if high - low < MIN_RELATIVE_GAP * z_bound:", "    if False:",
      "no refusal of steps float32 cannot place"),
    M("M15", "mlp.py", "        if largest_slope * z_bound / scale > PIECEWISE_MAX_GAIN:\n            return None",
      "        if False:\n            return None", "piecewise-linear however steep"),
    M("M16", "mlp.py", "candidates = [(i, 1.0, changes[i] if i > pivot else slopes[pivot])",
      "candidates = [(i, 1.0, changes[i] if i >= pivot else slopes[pivot])",
      "hinge at the pivot takes the slope change"),
    M("M17", "mlp.py", "        _add(w_in, {ONE: -side * float(zs[i]), BOS: -(z_bound + abs(float(zs[i])) + 1.0)})",
      "        _add(w_in, {ONE: -side * float(zs[i])})", "hinges not gated at BOS"),
    M("M18", "mlp.py", "pivot = int(np.argmin(np.abs(outs).sum(axis=1)))",
      "pivot = int(np.argmax(np.abs(outs).sum(axis=1)))", "pivot where |f| is largest"),
    M("M19", "mlp.py", "return smooth if smooth is not None and smooth.width < steps.width else steps",
      "return smooth if smooth is not None and smooth.width > steps.width else steps",
      "the wider construction kept"),
    M("M20", "mlp.py", "    gate = len(spec.terms) + 1.0", "    gate = 1.0",
      "clause features gated too weakly at BOS"),
    M("M21", "mlp.py", "        _add(lowered, {ONE: -1.0})", "        _add(lowered, {ONE: -0.92})",
      "clause features clamp at 0.92"),
    M("M22", "mlp.py", "                if relation[row, index]:", "                if not relation[row, index]:",
      "clause features accept what their atoms reject"),
    M("M23", "mlp.py", "                                  if d != BOS) <= 0.0:",
      "                                  if d != BOS) <= 0.5:", "ungate drops gates still needed"),
    M("M24", "mlp.py", "        margin = dim_bound(ops, dim) + 1.0", "        margin = 0.5",
      "BOS cleanup fires at token positions"),
    M("M25", "mlp.py", "neurons.append(_neuron({dim: sign, ONE: -margin, BOS: margin}, {dim: -sign}))",
      "neurons.append(_neuron({dim: sign, ONE: -margin, BOS: margin}, {dim: -0.92 * sign}))",
      "BOS cleanup removes 0.92 of a write"),
    M("M26", "mlp.py", "            if not unit.none_aware and any(a is None for a in args):",
      "            if False:", "functions called on None"),
    M("M27", "mlp.py", "                if value != 0:\n                    encoded[Dim(label)] = float(value)",
      "                if value > 0:\n                    encoded[Dim(label)] = float(value)",
      "negative numerical MLP outputs dropped"),
    M("M28", "mlp.py", "return a == b and (not self._exact or same_value(a, b))", "return a == b",
      "0 and 0.0 outputs taken as the same"),
    M("M29", "mlp.py", "descending = _z_at_bos(ops, form) >= zs[-1]",
      "descending = _z_at_bos(ops, form) > zs[-1]", "steps walk up from z's smallest value"),
    M("M30", "mlp.py", "                (value, (low + high) / 2, gap))",
      "                (value, low + (high - low) / 4, gap))", "thresholds a quarter gap off centre"),
    M("M31", "mlp.py", "    return combos * (1 + 2 * max(0, z_values - 1))",
      "    return combos * (2 * max(0, z_values - 1))", "neuron bound one short per combination"),
    M("M32", "mlp.py", "                count += 2\n                if count > stop_after:",
      "                count += 1\n                if count > stop_after:", "step count off by half"),
    M("M33", "mlp.py", "            budget[sop] = smallest_gap / 4 / coefficient_sum",
      "            budget[sop] = smallest_gap / coefficient_sum", "steps' noise budget 4x too loose"),
    M("M34", "mlp.py", "budget[leaf] = min(CATEGORICAL_NOISE_BUDGET, 1.0 / (4.0 * max(leaf_weight, 1.0)))",
      "budget[leaf] = 1.0 / (4.0 * max(leaf_weight, 1.0))", "steps' one-hot budget not capped"),
    M("M35", "mlp.py", "    return sum(abs(c) * dim_bound(ops, dim) for dim, c in form.terms)",
      "    return sum(c * dim_bound(ops, dim) for dim, c in form.terms)", "form bound signed"),
    M("M36", "mlp.py", "            gate = abs(slope) * z_bound + max((abs(w) for w in w_in.values()), default=0.0) + 1.0",
      "            gate = 1.0", "shared steps gated too weakly at BOS"),
    M("M37", "mlp.py", "            _check_gap(block.label, z_label, zs[i], zs[i + 1], z_bound)\n",
      "", "combination steps never refuse a close gap"),
    # ------------------------------------------------------------------ selectors.py
    M("S1", "selectors.py", "if node.relation.all() and not nullable(node.query) and not nullable(node.key):",
      "if node.relation.all():", "the None guard dropped (the issue's mutation)"),
    M("S2", "selectors.py", "        if not node.relation.any():\n            return FALSE",
      "        if False:\n            return FALSE", "all-false atoms kept"),
    M("S3", "selectors.py", "            if nullable(label):\n                raise",
      "            if False:\n                raise", "NOT of a None-able atom accepted"),
    M("S4", "selectors.py", "conjunction = isinstance(selector, rasp.SelectorAnd) != negate",
      "conjunction = isinstance(selector, rasp.SelectorAnd) == negate", "De Morgan backwards"),
    M("S5", "selectors.py", "old.with_relation(old.relation & atom.relation,",
      "old.with_relation(old.relation | atom.relation,", "AND of atoms over one pair merged as OR"),
    M("S6", "selectors.py", "clauses = [merge_group(clause, conjunctive_group=False) for clause in clauses]",
      "clauses = [merge_group(clause, conjunctive_group=True) for clause in clauses]",
      "OR clauses merged as AND"),
    M("S7", "selectors.py", "            if len(combined) > limit:\n                return None",
      "            if len(combined) > limit + 100:\n                return None",
      "CNF distribution past its bound"),
    M("S8", "selectors.py", "        return [] if conjunctive else [[]]\n    if node is FALSE:",
      "        return [[]] if conjunctive else []\n    if node is FALSE:", "TRUE as FALSE's normal form"),
    M("S9", "selectors.py", "        key_size = 1 if clauses else 2  # the BOS columns (lower.bos_columns)",
      "        key_size = 1  # the BOS columns (lower.bos_columns)", "cost of an atomless head"),
    M("S10", "selectors.py", "            elif len(keys) == 1 or len(queries) == 1:",
      "            elif len(keys) == 1:", "no key-side clause features"),
    M("S11", "selectors.py", "kinds.append(\"query\" if len(keys) == 1 else \"key\")",
      "kinds.append(\"key\" if len(keys) == 1 else \"query\")", "clause feature on the wrong side"),
    M("S12", "selectors.py", "terms = tuple((a.key, a.key_values, a.relation.T) for a in clause)",
      "terms = tuple((a.key, a.key_values, a.relation) for a in clause)",
      "key-side feature relation not transposed"),
    M("S13", "selectors.py", "                accepted |= relation[row]", "                accepted &= relation[row]",
      "a feature accepts the AND of its atoms"),
    M("S14", "selectors.py", "if same_value(values[i], value)), None)", "if True), None)",
      "feature rows found by equality, not identity"),
    M("S15", "selectors.py", "out = (out & part) if isinstance(node, And) else (out | part)",
      "out = (out | part) if isinstance(node, And) else (out & part)", "product relation backwards"),
    M("S16", "selectors.py", "signs.append(1 if size % 2 else -1)", "signs.append(-1 if size % 2 else 1)",
      "inclusion-exclusion signs flipped"),
    M("S17", "selectors.py", "if terms is not None and 1 < len(terms) <= MAX_INCLUSION_EXCLUSION_TERMS:",
      "if terms is not None and 1 <= len(terms) <= MAX_INCLUSION_EXCLUSION_TERMS:",
      "inclusion-exclusion offered for one term"),
    M("S18", "selectors.py", "if o[0].cost.dims <= self.max_dims and o[0].cost.heads <= self.max_heads]",
      "if o[0].cost.dims <= self.max_dims]", "max_heads_per_selector ignored"),
    M("S19", "selectors.py", "return (LAYER_COST * self.needs_mlp + HEAD_COST * (self.heads - 1)",
      "return (HEAD_COST * (self.heads - 1)", "an extra layer costs nothing"),
    M("S20", "selectors.py", "return min(int(atom.relation.any(axis=1).sum()), int(atom.relation.any(axis=0).sum()))",
      "return max(int(atom.relation.any(axis=1).sum()), int(atom.relation.any(axis=0).sum()))",
      "an atom's key size overstated"),
    M("S21", "selectors.py", "absorbing, neutral = (FALSE, TRUE) if is_and else (TRUE, FALSE)",
      "absorbing, neutral = (TRUE, FALSE) if is_and else (FALSE, TRUE)", "constants fold backwards"),
    M("S22", "selectors.py", "        if any(not clause for clause in clauses):  # FALSE",
      "        if all(not clause for clause in clauses):  # FALSE", "a FALSE clause in a CNF ignored"),
    M("S23", "selectors.py", "    if valid_q and valid_k:", "    if valid_q:", "lift with no valid key"),
    M("S24", "selectors.py", "            return sum(v is not None for v in self.atoms.values(inputs[0]))",
      "            return len(self.atoms.values(inputs[0]))", "a side's size counts None"),
]


@dataclass
class Result:
    id: str
    file: str
    note: str
    outcome: str  # killed, survived, timeout, not-applied
    tier: int  # the tier that killed it (0: not run)
    seconds: float
    first_failure: str


def apply(source: str, mutant: Mutant) -> str:
    count = source.count(mutant.before)
    if count == 0 or (mutant.occurrence == 0 and count != 1) or mutant.occurrence >= count:
        raise ValueError(f"{mutant.id}: {mutant.before!r} occurs {count} times in {mutant.file}")
    index = -1
    for _ in range(mutant.occurrence + 1):
        index = source.index(mutant.before, index + 1)
    return source[:index] + mutant.after + source[index + len(mutant.before):]


def run_tests(copy: Path, files: list[str], workers: int, timeout: float) -> tuple[str, str]:
    """('passed' | 'failed' | 'timeout', the first failing test or error line)."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "-n", str(workers), "--no-header", "-k", DESELECT, *files]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    process = subprocess.Popen(command, cwd=copy, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return "timeout", f"no result within {timeout:.0f}s"
    except BaseException:  # interrupted: take the test run down too
        os.killpg(process.pid, signal.SIGKILL)
        raise
    if process.returncode == 0:
        return "passed", ""
    lines = [line for line in out.splitlines() if re.match(r"(FAILED|ERROR) ", line)]
    return "failed", (lines[0] if lines else out.strip().splitlines()[-1] if out.strip() else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="files: encoding, lower, mlp, selectors")
    parser.add_argument("--ids", nargs="*", help="mutant ids (E1, L3, ...)")
    parser.add_argument("--skip", nargs="*", default=[], help="mutant ids to leave out")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (2)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per tier (300)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    mutants = [m for m in MUTANTS
               if (not args.only or m.file.removesuffix(".py") in args.only)
               and (not args.ids or m.id in args.ids) and m.id not in args.skip]
    for m in mutants:  # every mutant applies to the source as it is now
        apply((ROOT / "rasp_compiler" / m.file).read_text(), m)
    if args.list:
        for m in mutants:
            print(f"{m.id:<4} {m.file:<13} {m.note}")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="mutation_check_"))
    results: list[Result] = []
    started = time.perf_counter()
    try:
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, scratch / name,
                                ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
            else:
                shutil.copy2(source, scratch / name)
        if not args.no_baseline:
            verdict, first = run_tests(scratch, TIER_1, args.workers, args.timeout)
            print(f"baseline (unmutated) tier 1: {verdict} {first}", flush=True)
            if verdict != "passed":
                return 2
        for m in mutants:
            path = scratch / "rasp_compiler" / m.file
            original = path.read_text()
            path.write_text(apply(original, m))
            began = time.perf_counter()
            outcome, tier, first = "survived", 0, ""
            try:
                tiers = ((1, TIER_1), (2, TIER_2 + TIER_2_EXTRA.get(m.file, [])))
                for tier_index, files in tiers:
                    verdict, first = run_tests(scratch, files, args.workers, args.timeout)
                    if verdict != "passed":
                        outcome = "killed" if verdict == "failed" else "timeout"
                        tier = tier_index
                        break
            finally:
                path.write_text(original)
            result = Result(m.id, m.file, m.note, outcome, tier,
                            round(time.perf_counter() - began, 1), first)
            results.append(result)
            print(f"{m.id:<4} {outcome:<8} tier {tier} {result.seconds:6.1f}s  {m.note}"
                  + (f"\n       {first}" if first else ""), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    total = time.perf_counter() - started
    counts = {k: sum(r.outcome == k for r in results) for k in ("killed", "timeout", "survived")}
    print(f"\n{len(results)} mutants: {counts['killed']} killed, {counts['timeout']} timed out, "
          f"{counts['survived']} survived, in {total / 60:.1f} min")
    for r in results:
        if r.outcome == "survived":
            print(f"  survived: {r.id} ({r.file}) {r.note}")
    if args.out:
        args.out.write_text(json.dumps({"seconds": round(total), "results": [asdict(r) for r in results]},
                                       indent=1))
    return 1 if counts["survived"] else 0


if __name__ == "__main__":
    sys.exit(main())
