"""What `compile_rasp_to_model` returns: tracr's `AssembledTransformerModel`, field by field.

Over 500 lines on purpose: every field a converter reads (the residual order, the
parameters under tracr's names, the encoders, the graph) is built from the one mapping
between our residual and tracr's, which this module owns; split, each part would need it
passed around and the mapping would no longer be in one place.

Public converters (TransformerLens's tracr demo, benchmark code that builds a
`HookedTransformer` from a tracr model) read `model.params` by tracr's haiku
names, rebuild the residual space by sorting `model.residual_labels` the way
tracr's `VectorSpaceWithBasis` sorts its directions, and read the output from
the output SOp's labelled dimensions. `AssembledModel` is a view of a
`CompiledModel` that makes all of that true:

- the residual stream is put in tracr's order: every dimension becomes a
  `BasisDirection(name, value)` (`one`; `tokens:<bos>` for our `bos`, which is
  the BOS token's one-hot as in tracr; `name:value` or `name`), the directions
  are sorted with tracr's rule ((name, value), or `str` when values do not
  compare), and every weight is permuted to that order;
- tracr's full input spaces are there (`tokens:v` for every token, BOS and PAD
  included, `indices:i` for every position), written by the embeddings and read
  by nothing when our model does not use them;
- a numerical output that our model never writes down (a linear form of other
  dimensions) gets its own dimension `name`, written by two ReLU units
  (relu(f) - relu(-f) = f) in the last MLP, or in one more layer when the last
  MLP writes what f reads;
- the input encoder's ids are tracr's (the sorted token directions), the output
  encoder's too, and both carry `basis`.

Everything else a `CompiledModel` offers (run, run_with_cache, reports, export)
is reachable on the view (attribute access falls through to `.compiled`), in
our own residual order: `model.compiled.layout`, `model.compiled.params`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

from rasp_compiler.errors import NotProvidedError
from rasp_compiler.lang import rasp
from rasp_compiler.lang.identity import distinct_values, identity_key, value_dict
from rasp_compiler.model import tracr_view
from rasp_compiler.model.residual import BOS, ONE, Dim

PREFIX = tracr_view.PREFIX

# tracr's node attribute keys (tracr.compiler.nodes), for `model.graph`.
ID, EXPR, VALUE_SET, OUTPUT_BASIS, MODEL_BLOCK = (
    "ID", "EXPR", "VALUE_SET", "OUTPUT_BASIS", "MODEL_BLOCK")


# ---------------------------------------------------------------------------- directions


@dataclass(frozen=True)
class BasisDirection:
    """tracr's `BasisDirection`: a residual dimension's name and (categorical) value.

    Equality and hash are by (name, value), ordering is tracr's: compare
    (name, value), and where Python cannot compare the values, compare the
    printed labels. Equal to tracr's own `BasisDirection` with the same fields,
    so converters may mix the two in one vector space.
    """

    name: str
    value: Any = None

    def __str__(self) -> str:
        return str(self.name) if self.value is None else f"{self.name}:{self.value}"

    def __lt__(self, other) -> bool:
        try:
            return (self.name, self.value) < (other.name, other.value)
        except TypeError:
            return str(self) < str(other)

    def __eq__(self, other) -> bool:
        if not (hasattr(other, "name") and hasattr(other, "value")):
            return NotImplemented
        return (self.name, self.value) == (other.name, other.value)

    def __hash__(self) -> int:
        return hash((self.name, self.value))


def _key(direction: BasisDirection) -> tuple:
    """A direction as this compiler tells them apart: `m:0` and `m:0.0` are two (tracr's
    equality, kept on BasisDirection for converters, takes them for one)."""
    return direction.name, identity_key(direction.value)


def tracr_sorted(directions: Sequence[BasisDirection]) -> list[BasisDirection]:
    """The order tracr's `VectorSpaceWithBasis` puts `directions` in."""
    return sorted(directions)


# ---------------------------------------------------------------------------- encoders


class CategoricalEncoder(tracr_view.CategoricalEncoder):
    """tracr's `CategoricalEncoder` with its `basis`: the directions, in id order."""

    def __init__(self, basis: Sequence[BasisDirection], **options):
        super().__init__(value_dict((d.value, i) for i, d in enumerate(basis)), **options)
        self.basis = list(basis)


class NumericalEncoder(tracr_view.NumericalEncoder):
    """tracr's `NumericalEncoder` (identity), with the output's one direction as `basis`."""

    def __init__(self, basis: Sequence[BasisDirection] = ()):
        self.basis = list(basis)


def _register_with_tracr() -> None:
    """Make `isinstance(encoder, tracr...CategoricalEncoder)` true where tracr is imported.

    Converters test the encoder's class to choose argmax or squeeze; tracr's
    encoders are ABCs, so registering ours as virtual subclasses is enough. Done
    only when the user has imported tracr (this package never imports it).
    """
    module = sys.modules.get("tracr.transformer.encoder")
    if module is None:
        return
    for ours, theirs in ((CategoricalEncoder, "CategoricalEncoder"),
                         (NumericalEncoder, "NumericalEncoder")):
        cls = getattr(module, theirs, None)
        if cls is not None and hasattr(cls, "register") and not issubclass(ours, cls):
            cls.register(ours)


# ---------------------------------------------------------------------------- the residual order


@dataclass(frozen=True)
class TracrResidual:
    """Where each of tracr's residual dimensions comes from.

    `directions[i]` is dimension i in tracr's order; `source[i]` is our layout's
    index for it, or -1 for a dimension our model does not have (an unused
    token or position direction, or the written-down numerical output).
    `extra_layer` says whether the output needs one more layer to be written.
    """

    directions: tuple[BasisDirection, ...]
    source: tuple[int, ...]
    token_basis: tuple[BasisDirection, ...]  # tokens:v in tracr's id order, BOS and PAD among them
    output_form: tuple[tuple[int, float], ...]  # (our index, coefficient) to write down, or ()
    extra_layer: bool


def _direction(dim: Dim, bos: Any) -> BasisDirection:
    if dim == ONE:
        return BasisDirection("one")
    if dim == BOS:
        return BasisDirection(rasp.tokens.label, bos)
    return BasisDirection(dim.sop) if dim.is_numerical else BasisDirection(dim.sop, dim.value)


def _needs_writing(model) -> tuple[tuple[int, float], ...]:
    """The output's linear form when it has no dimension of its own, else ()."""
    readout = model.readouts[model.output]
    if not readout.numerical:
        return ()
    own = model.layout.index.get(Dim(model.output))
    if readout.indices == (own,) and readout.coefficients == (1.0,):
        return ()
    return tuple(zip(readout.indices, map(float, readout.coefficients)))


def tracr_residual(model) -> TracrResidual:
    ours = [_direction(dim, model.bos) for dim in model.layout.dims]
    present = set(map(_key, ours))
    tokens = [*model.vocab, model.bos, model.pad]
    token_basis = tracr_sorted([BasisDirection(rasp.tokens.label, t) for t in tokens])
    extra = [d for d in token_basis if _key(d) not in present]
    extra += [BasisDirection(rasp.indices.label, i) for i in range(model.max_seq_len)
              if _key(BasisDirection(rasp.indices.label, i)) not in present]
    form = _needs_writing(model)
    if form:
        extra.append(BasisDirection(model.output))
    everything = ours + extra
    order = _argsort(everything)
    source = tuple(i if i < len(ours) else -1 for i in order)
    extra_layer = False
    if form:
        last = model.shape.layers[-1] if model.shape.layers else None
        if last is None:
            extra_layer = True
        else:
            written = np.flatnonzero(np.any(np.asarray(
                model.params[f"layer_{len(model.shape.layers) - 1}/mlp/linear_2"]["w"]) != 0,
                axis=0))
            extra_layer = bool(set(written.tolist()) & {i for i, _ in form})
    return TracrResidual(
        directions=tuple(everything[i] for i in order),
        source=source,
        token_basis=tuple(token_basis),
        output_form=form,
        extra_layer=extra_layer,
    )


def _argsort(directions: list[BasisDirection]) -> list[int]:
    """Indices of `directions` in tracr's sorted order (a stable sort, as tracr's)."""
    return sorted(range(len(directions)), key=lambda i: _Key(directions[i]))


class _Key:
    __slots__ = ("direction",)

    def __init__(self, direction: BasisDirection):
        self.direction = direction

    def __lt__(self, other: "_Key") -> bool:
        return self.direction < other.direction


# ---------------------------------------------------------------------------- parameters


def _tracr_layout_params(model, residual: TracrResidual):
    """tracr's parameters in tracr's residual order, and the config that sizes them.

    Built from `tracr_view.padded_layers` (our weights, every layer padded to one
    head count, key size and MLP width): rows and columns over the residual are
    permuted to `residual.directions`, the new input directions get their one-hot
    embeddings, the query weights carry sqrt(key_size) (tracr divides the logits
    by it), and a numerical output with no dimension gets two ReLU units writing it.
    """
    config = tracr_view.model_config(model)
    layers = tracr_view.padded_layers(model)
    directions = residual.directions
    width = len(directions)
    at = {_key(d): i for i, d in enumerate(directions)}
    source = np.asarray(residual.source)
    have = source >= 0

    def residual_rows(matrix: np.ndarray) -> np.ndarray:  # [d_ours, ...] -> [width, ...]
        out = np.zeros((width,) + matrix.shape[1:], np.float32)
        out[have] = matrix[source[have]]
        return out

    def residual_columns(matrix: np.ndarray) -> np.ndarray:  # [..., d_ours] -> [..., width]
        out = np.zeros(matrix.shape[:-1] + (width,), np.float32)
        out[..., have] = matrix[..., source[have]]
        return out

    ours_tokens = np.asarray(model.params["token_embed"]["embeddings"], np.float32)
    our_id = value_dict([*((t, i) for i, t in enumerate(model.vocab)),
                         (model.bos, len(model.vocab)), (model.pad, len(model.vocab) + 1)])
    by_tracr_id = [d.value for d in residual.token_basis]
    token_embed = residual_columns(ours_tokens[[our_id[t] for t in by_tracr_id]])
    pos_embed = residual_columns(np.asarray(model.params["pos_embed"]["embeddings"], np.float32))
    for j, token in enumerate(by_tracr_id):
        column = at[_key(BasisDirection(rasp.tokens.label, token))]
        if source[column] < 0:
            token_embed[j, column] = 1.0
    for i in range(model.max_seq_len):
        column = at[_key(BasisDirection(rasp.indices.label, i))]
        if source[column] < 0:
            pos_embed[i + 1, column] = 1.0

    heads, size = config.num_heads, config.key_size
    hidden = [layer.mlp_hidden for layer in model.shape.layers]
    blocks = [dict(q=residual_rows(l.w_q), k=residual_rows(l.w_k), v=residual_rows(l.w_v),
                   o=residual_columns(l.w_o), w1=residual_rows(l.w_1),
                   w2=residual_columns(l.w_2)) for l in layers]
    mlp_width = config.mlp_hidden_size
    if residual.output_form:
        if residual.extra_layer:
            zeros = lambda *shape: np.zeros(shape, np.float32)
            blocks.append(dict(q=zeros(width, heads, size), k=zeros(width, heads, size),
                               v=zeros(width, heads, size), o=zeros(heads, size, width),
                               w1=zeros(width, 0), w2=zeros(0, width)))
            hidden.append(0)
        first = hidden[-1]
        mlp_width = max(mlp_width, first + 2)
        out = at[_key(BasisDirection(model.output))]
        position = {int(s): i for i, s in enumerate(source) if s >= 0}
        reads = np.zeros(width, np.float32)
        for index, coefficient in residual.output_form:
            reads[position[index]] += coefficient
        block = blocks[-1]
        block["w1"] = _widen(block["w1"], 1, first + 2)
        block["w2"] = _widen(block["w2"], 0, first + 2)
        block["w1"][:, first], block["w1"][:, first + 1] = reads, -reads
        block["w2"][first, out], block["w2"][first + 1, out] = 1.0, -1.0
    config = tracr_view.TracrModelConfig(
        num_heads=heads, num_layers=len(blocks), key_size=size, mlp_hidden_size=mlp_width,
        causal=config.causal)

    params = {"token_embed": {"embeddings": token_embed}, "pos_embed": {"embeddings": pos_embed}}
    scale = np.float32(math.sqrt(size))  # cancels tracr's logits / sqrt(key_size)
    for l, block in enumerate(blocks):
        attn = {"query": block["q"] * scale, "key": block["k"], "value": block["v"]}
        attn = {name: w.reshape(width, heads * size) for name, w in attn.items()}
        attn["linear"] = block["o"].reshape(heads * size, width)
        for name, w in attn.items():
            bias = np.zeros(width if name == "linear" else heads * size, np.float32)
            params[f"{PREFIX}/layer_{l}/attn/{name}"] = {"w": w, "b": bias}
        params[f"{PREFIX}/layer_{l}/mlp/linear_1"] = {
            "w": _widen(block["w1"], 1, mlp_width), "b": np.zeros(mlp_width, np.float32)}
        params[f"{PREFIX}/layer_{l}/mlp/linear_2"] = {
            "w": _widen(block["w2"], 0, mlp_width), "b": np.zeros(width, np.float32)}
    params = {module: {name: jnp.asarray(value) for name, value in inner.items()}
              for module, inner in params.items()}
    return params, config


def _widen(matrix: np.ndarray, axis: int, size: int) -> np.ndarray:
    """`matrix` with zeros appended along `axis` up to `size` (a copy either way)."""
    if matrix.shape[axis] >= size:
        return matrix.copy()
    pad = [(0, 0)] * matrix.ndim
    pad[axis] = (0, size - matrix.shape[axis])
    return np.pad(matrix, pad)


# ---------------------------------------------------------------------------- forward


@dataclass(frozen=True)
class CompiledTransformerModelOutput:
    """tracr's output of `forward`: the transformer's activations and the unembedding."""

    transformer_output: tracr_view.TransformerOutput
    unembedded_output: jax.Array  # [B, T]: output ids (categorical) or numbers


jax.tree_util.register_dataclass(CompiledTransformerModelOutput,
                                 data_fields=["transformer_output", "unembedded_output"],
                                 meta_fields=[])


def make_forward(config: tracr_view.TracrModelConfig, pad_id: int | None,
                 output_columns: Sequence[int], categorical: bool) -> Callable:
    """tracr's `forward(params, token_ids)`: a jax function (jit and grad go through it)."""
    columns = jnp.asarray(list(output_columns), dtype=jnp.int32)

    def forward(params, token_ids) -> CompiledTransformerModelOutput:
        out = tracr_view.forward(params, config, jnp.asarray(token_ids), pad_id, xp=jnp)
        read = out.output[..., columns]
        if categorical:
            unembedded = jnp.argmax(read, axis=-1)
        else:
            unembedded = read.squeeze(-1) if read.shape[-1] == 1 else read
        return CompiledTransformerModelOutput(transformer_output=out,
                                              unembedded_output=unembedded)

    return forward


# ---------------------------------------------------------------------------- graph


@dataclass(frozen=True)
class ModelBlock:
    """Where an expression lives in the model: tracr's `MODEL_BLOCK`, named, not a craft block.

    `kind` is "embedding", "attention", "mlp", "linear form" (a numerical SOp read
    as a weighted sum of other dimensions, never written) or "fused" (computed
    inside another SOp's MLP, never written); `names` are the TransformerLens
    names of the heads (`blocks.{l}.attn.{h}`) or MLPs (`blocks.{l}.mlp`).
    """

    kind: str
    names: tuple[str, ...] = ()


def _blocks(model) -> dict[str, ModelBlock]:
    """Each expression's `ModelBlock`, from the info records (which head computes what,
    which MLP part writes what); a selector inside a combination gets its head's."""
    heads_of: dict[str, list[str]] = {}
    mlps_of: dict[str, list[str]] = {}
    for layer in model.info.layers:
        for head in layer.heads:
            name = f"blocks.{layer.index}.attn.{head.index}"
            heads_of.setdefault(head.source, []).append(name)
            heads_of.setdefault(head.selector, []).append(name)
        for part in layer.mlp:
            for label in (*part.units, *part.outputs):
                mlps_of.setdefault(label, []).append(f"blocks.{layer.index}.mlp")
    ops = model.compilation.ops
    blocks: dict[str, ModelBlock] = {}
    for label in dict.fromkeys((*ops.order, *ops.graph.order)):
        heads, mlps = heads_of.get(label, []), mlps_of.get(label, [])
        if heads or mlps:
            kind = " and ".join(k for k, n in (("attention", heads), ("mlp", mlps)) if n)
            blocks[label] = ModelBlock(kind, tuple(dict.fromkeys(heads + mlps)))
        elif label in ops.embeddings:
            blocks[label] = ModelBlock("embedding")
        elif label in ops.forms:
            blocks[label] = ModelBlock("linear form")
    for label, heads in ops.folded.items():
        names = tuple(n for h in heads for n in heads_of.get(h, ()))
        blocks.setdefault(label, ModelBlock("attention", names))
    for label in reversed(ops.graph.order):  # users first: a selector inside a combination
        if label not in blocks and isinstance(ops.graph.expr(label), rasp.Selector):
            names = tuple(dict.fromkeys(
                n for user in ops.graph.users(label)
                if isinstance(ops.graph.expr(user), rasp.Selector) and user in blocks
                for n in blocks[user].names))
            if names:
                blocks[label] = ModelBlock("attention", names)
    return blocks


def program_graph(model) -> nx.DiGraph:
    """tracr's program graph: one node per expression label, edges from inputs to users,
    node attributes under tracr's keys (ID, EXPR, VALUE_SET, OUTPUT_BASIS, MODEL_BLOCK)."""
    record = model.compilation
    ops = record.ops
    blocks = _blocks(model)
    graph = nx.DiGraph()
    for expr in ops.graph.exprs():
        label = expr.label
        node = {ID: label, EXPR: expr}
        if isinstance(expr, rasp.SOp):
            values = [v for v in ops.values.get(label, ()) if v is not None]
            node[VALUE_SET] = distinct_values(values)  # a list where 0 and 0.0 both occur
            node[OUTPUT_BASIS] = ([BasisDirection(label)] if rasp.is_numerical(expr) else
                                  tracr_sorted([BasisDirection(label, v) for v in values]))
        node[MODEL_BLOCK] = blocks.get(label, ModelBlock("fused") if isinstance(expr, rasp.SOp)
                                       else None)
        graph.add_node(label, **node)
    for child, parent in ops.graph.graph.edges:
        graph.add_edge(child, parent)
    return graph


# ---------------------------------------------------------------------------- the model


class AssembledModel:
    """tracr's `AssembledTransformerModel` over a `CompiledModel` (see the module doc).

    tracr's fields: `params`, `model_config`, `residual_labels`, `input_encoder`,
    `output_encoder`, `forward(params, token_ids)`, `get_compiled_model()`,
    `apply(tokens)`, and the program's `graph`. `compiled` is the `CompiledModel`;
    any other attribute (run, run_with_cache, selector_report, save, ...) is its.
    """

    def __init__(self, compiled):
        self.compiled = compiled
        self._residual = tracr_residual(compiled)
        self.params, self.model_config = _tracr_layout_params(compiled, self._residual)
        self.residual_labels = [str(d) for d in self._residual.directions]
        at = {_key(d): i for i, d in enumerate(self._residual.directions)}
        readout = compiled.readouts[compiled.output]
        if readout.numerical:
            self._output_basis = [BasisDirection(compiled.output)]
        else:
            self._output_basis = tracr_sorted(
                [BasisDirection(compiled.output, v) for v in readout.values])
        self._output_columns = [at[_key(d)] for d in self._output_basis]
        self._input_basis = list(self._residual.token_basis)
        pad_id = [_key(d) for d in self._input_basis].index(
            _key(BasisDirection(rasp.tokens.label, compiled.pad)))
        self.forward = make_forward(self.model_config, pad_id,
                                    self._output_columns, not readout.numerical)
        self._graph = None

    # tracr's fields ------------------------------------------------------------------

    @property
    def input_encoder(self) -> CategoricalEncoder:
        """tracr's ids: the token directions (BOS and PAD among them) in tracr's order."""
        _register_with_tracr()
        model = self.compiled
        return CategoricalEncoder(self._input_basis, enforce_bos=True, bos_token=model.bos,
                                  pad_token=model.pad, max_seq_len=model.max_seq_len + 1)

    @property
    def output_encoder(self) -> CategoricalEncoder | NumericalEncoder:
        """Ids are positions in the output's sorted directions (`basis`), as in tracr."""
        _register_with_tracr()
        if self.compiled.readouts[self.compiled.output].numerical:
            return NumericalEncoder(self._output_basis)
        return CategoricalEncoder(self._output_basis)

    @property
    def graph(self) -> nx.DiGraph:
        """The program graph with tracr's node keys (`MODEL_BLOCK` holds a `ModelBlock`)."""
        if self._graph is None:
            from rasp_compiler.model.records import require_compilation

            require_compilation(self.compiled, "model.graph", "describes the RASP program")
            self._graph = program_graph(self.compiled)
        return self._graph

    def get_compiled_model(self):
        """tracr's haiku module is not built here: say what to use instead."""
        raise NotProvidedError(
            "get_compiled_model(): this compiler builds no haiku module in tracr's layout. "
            "For tracr's forward pass use model.forward(model.params, token_ids) (a jax "
            "function: jit and grad go through it); for our haiku model and its hooks use "
            "model.compiled.run_with_cache(...), or model.to_hooked_transformer() for "
            "TransformerLens (docs/tracr.md)"
        )

    def apply(self, tokens: Sequence) -> tracr_view.TracrOutput:
        """tracr's `apply([bos, t1, ...])`: this view's forward, our exact decoding.

        `unembedded` is the argmax over the output's directions (ids of
        `output_encoder`), or the output number; `decoded` is our decoder's reading
        (`Unclean`/None where the output is not one clean value), BOS first and PAD
        at PAD positions.
        """
        encoder = self.input_encoder
        ids, n_tokens = tracr_view.encode_for_apply(encoder, tokens)
        out = tracr_view.forward(self.params, self.model_config, np.asarray([ids]),
                                 encoder.pad_encoding)
        final = np.asarray(out.output)
        read = final[..., self._output_columns]
        if self.compiled.readouts[self.compiled.output].numerical:
            unembedded = read[..., 0]
        elif read.shape[-1]:
            unembedded = read.argmax(axis=-1)
        else:  # an output with no possible value: no id to point at
            unembedded = np.full(read.shape[:-1], -1)
        source = np.asarray(self._residual.source)
        ours = np.zeros(final.shape[:-1] + (self.compiled.layout.width,), final.dtype)
        ours[..., source[source >= 0]] = final[..., source >= 0]
        model = self.compiled
        decoded = ([model.bos] + model.decode(model.output, ours[0], n_tokens)
                   + [model.pad] * (len(ids) - 1 - n_tokens))
        return tracr_view.TracrOutput(
            decoded=decoded, unembedded=unembedded, layer_outputs=out.layer_outputs,
            residuals=out.residuals, attn_logits=out.attn_logits, transformer_output=final,
            input_embeddings=out.input_embeddings)

    def tracr_params(self) -> dict:
        """A fresh copy of `params` (tracr's names, tracr's residual order)."""
        return {module: {name: jnp.array(value) for name, value in inner.items()}
                for module, inner in self.params.items()}

    # the rest is the compiled model's ----------------------------------------------

    @property
    def model(self) -> "AssembledModel":
        """Itself: code written for a `TracrOutput`-style result reads `.model`."""
        return self

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("compiled", "_residual", "_graph"):
            raise AttributeError(name)
        return getattr(self.compiled, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(dir(self.compiled)))

    def __repr__(self) -> str:
        c = self.model_config
        return (f"AssembledModel(output={self.compiled.output!r}, layers={c.num_layers}, "
                f"heads={c.num_heads}, d_model={len(self.residual_labels)}, "
                f"compiled={self.compiled!r})")
