"""The package's layers, enforced: every import inside rasp_compiler goes down (or stays
in its own folder), never up, so each folder can be read, tested and changed knowing only
the folders below it (docs/architecture.md draws the picture).

    base (errors, progress) < lang < model < compiler
        < verify < diagnostics < export < superposition < circuits
        < application (cli, explorer, program_files, compiling, the package's __init__)

Imports inside functions count as much as those at the top: a function-level import is
how a cycle hides. The only upward edges allowed are listed in UPWARD_EXCEPTIONS, each
with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rasp_compiler"

LAYERS = ["base", "lang", "model", "compiler", "verify", "diagnostics", "export",
          "superposition", "circuits", "application"]
BASE_MODULES = {"errors", "progress"}
APPLICATION_MODULES = {"__init__", "program_files", "compiling"}
APPLICATION_FOLDERS = {"cli", "explorer"}

# (importing module, imported module): the convenience methods of CompiledModel, which
# let a user write model.check_patterns() or model.circuit() instead of importing the
# tool; each imports its tool inside the method, when called.
UPWARD_EXCEPTIONS = {
    ("model.compiled", "diagnostics.layer_plan"),
    ("model.compiled", "diagnostics.patterns"),
    ("model.compiled", "diagnostics.read_back"),
    ("model.compiled", "diagnostics.pictures"),
    ("model.compiled", "export.transformer_lens"),
    ("model.compiled", "export.safetensors"),
    ("model.compiled", "circuits"),
    ("model.compiled", "circuits.circuit"),
    ("model.compiled", "explorer.notebook"),
    ("model.compiled", "explorer.report"),
    # the same convenience on CompressedModel: model.show(tokens) in a notebook
    ("superposition.compressed_model", "explorer.notebook"),
}


def module_name(path: Path) -> str:
    """`lang/rasp.py` -> `lang.rasp`; a folder's `__init__.py` is the folder's name (the
    package's own is `__init__`)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if len(parts) > 1 and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    head = module.split(".")[0]
    if module in BASE_MODULES:
        return "base"
    if module in APPLICATION_MODULES or head in APPLICATION_FOLDERS:
        return "application"
    if head not in LAYERS:
        raise AssertionError(f"rasp_compiler.{module} is in no layer: put it in a folder "
                             f"or list it in tests/test_layers.py")
    return head


def imports_of(path: Path) -> set[str]:
    """Every rasp_compiler module that `path` imports, at any depth, as names relative to
    the package (`from rasp_compiler.lang import rasp` gives `lang.rasp`)."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(["rasp_compiler", *package[: len(package) - node.level + 1]])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("rasp_compiler."):
                found.add(name.removeprefix("rasp_compiler."))
            elif name == "rasp_compiler":
                found.add("__init__")
    return {name for name in found if _is_module(name)}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:`, whose imports are for annotations
    and never run (records.py names the compiler's types that way)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if (isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _is_module(name: str) -> bool:
    parts = name.split(".")
    return (PACKAGE.joinpath(*parts).with_suffix(".py").is_file()
            or PACKAGE.joinpath(*parts, "__init__.py").is_file())


def all_edges() -> list[tuple[str, str]]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for imported in sorted(imports_of(path)):
            if imported != importer:
                edges.append((importer, imported))
    return edges


def folder_of(module: str) -> str:
    return module.split(".")[0]


def is_allowed(importer: str, imported: str) -> bool:
    if (importer, imported) in UPWARD_EXCEPTIONS:
        return True
    low, high = LAYERS.index(layer_of(imported)), LAYERS.index(layer_of(importer))
    if layer_of(importer) == "base":
        return False  # the base imports nothing of the package
    if low < high:
        return True
    if low > high:
        return False
    if layer_of(importer) == "application":
        return True  # same layer: checked for cycles below
    return folder_of(importer) == folder_of(imported)


def test_every_module_is_in_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


def test_imports_go_down_the_layers():
    wrong = [f"rasp_compiler.{a} imports rasp_compiler.{b} ({layer_of(a)} -> {layer_of(b)})"
             for a, b in all_edges() if not is_allowed(a, b)]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_cycle_between_folders():
    graph = nx.DiGraph()
    for a, b in all_edges():
        if (a, b) not in UPWARD_EXCEPTIONS and folder_of(a) != folder_of(b):
            graph.add_edge(folder_of(a), folder_of(b))
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles between folders: {cycles}"


def test_upward_exceptions_are_real_and_inside_functions():
    """Each listed exception is an import that exists, made inside a function (so loading
    the model layer never loads the tool); a stale entry would hide a future edge."""
    edges = set(all_edges())
    for importer, imported in UPWARD_EXCEPTIONS:
        assert (importer, imported) in edges, f"stale exception: {importer} -> {imported}"
        path = PACKAGE.joinpath(*importer.split(".")).with_suffix(".py")
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                top.add(node.module.removeprefix("rasp_compiler."))
        assert imported not in top, f"{importer} imports {imported} at the top"


@pytest.mark.parametrize("importer, imported, allowed", [
    ("compiler.lower", "model.residual", True),
    ("model.compiled", "compiler.lower", False),
    ("lang.rasp", "model.encoding", False),
    ("errors", "lang.rasp", False),
    ("diagnostics.patterns", "verify.checker", True),
    ("verify.checker", "diagnostics.patterns", False),
    ("compiler.mlp", "compiler.rewrite", True),
    ("explorer.views", "cli.commands", True),
])
def test_the_rule_itself(importer, imported, allowed):
    assert is_allowed(importer, imported) is allowed


# ------------------------------------------------------------------ Slot and hook names
# (model/hooks.py: the one place that converts schedule times and makes hook names)

def test_slot_times_round_trip_and_order():
    from rasp_compiler.model.hooks import EMBEDDINGS, Slot

    slots = [Slot.at(time) for time in range(9)]
    assert slots[0] == EMBEDDINGS and slots[1] == Slot.attention(0) and slots[2] == Slot.mlp(0)
    assert slots[8] == Slot.mlp(3) and [s.time for s in slots] == list(range(9))
    assert slots == sorted(slots)
    assert [s.name for s in slots[:3]] == ["embeddings", "layer 0 attention", "layer 0 MLP"]


@pytest.mark.parametrize("time, attention, mlp", [(0, 1, 2), (1, 3, 2), (2, 3, 4), (5, 7, 6)])
def test_first_slot_after_a_time(time, attention, mlp):
    from rasp_compiler.model.hooks import ATTENTION, MLP, Slot

    assert Slot.first_after(time, ATTENTION).time == attention
    assert Slot.first_after(time, MLP).time == mlp


def test_slot_hooks_are_the_forward_passes():
    from rasp_compiler.model.hooks import EMBEDDINGS, Slot, hook, hook_names

    names = hook_names(2)
    for slot in (Slot.attention(0), Slot.mlp(0), Slot.attention(1), Slot.mlp(1)):
        assert {slot.residual_before, slot.residual_after, slot.output} <= set(names)
        assert names.index(slot.residual_before) < names.index(slot.output) \
            < names.index(slot.residual_after)
    assert EMBEDDINGS.residual_after == "hook_embed+pos"
    assert hook(1, "attn.hook_z") == "blocks.1.attn.hook_z"


def test_a_wrong_slot_is_refused():
    from rasp_compiler.errors import InternalError
    from rasp_compiler.model.hooks import Slot

    with pytest.raises(InternalError, match="no sublayer 'mlp' at layer -1"):
        Slot(-1, "mlp")
